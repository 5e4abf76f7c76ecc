"""download: a dataset URI (local, file://, s3://, https://) -> Dataset (an mlkit dataset folder)."""

# No `from __future__ import annotations` here: KFP reads the real annotation objects (Input[Dataset], ...).

from kfp.dsl import Dataset, Output
from kfp.dsl.python_component import PythonComponent

from mlkit.components.common import MLKIT_IMAGE, mlkit_component, with_base_image


@mlkit_component
def download(uri: str, dataset: Output[Dataset], val_fraction: float = 0.1, test_fraction: float = 0.2,
             seed: int = 0) -> str:
    """Fetch ``uri`` and import it as an mlkit dataset folder with train/val/test splits.

    ``uri`` is either a seed bucket (``datasets/``, ``cfg/``, ``pretrained weights/``: only its
    ``datasets/`` folder is used) or one dataset: an mlkit dataset folder (copied as it is) or a
    single COCO/YOLO/VOC set (split at random with ``seed``). An https archive is unpacked.
    Returns the artifact's URI (see generate_dataset for why).
    """
    import logging
    import os
    import tempfile

    from mlkit.data.layout import import_dataset, read_manifest
    from mlkit.data.storage import download as fetch
    from mlkit.data.storage import download_bucket_layout, redact
    from mlkit.errors import StorageError

    if not uri.strip():
        raise ValueError("uri is empty: pass a local path, file://, s3:// or https:// URI of a dataset")
    log = logging.getLogger("mlkit.components")
    with tempfile.TemporaryDirectory() as work:
        try:
            src = download_bucket_layout(uri, os.path.join(work, "bucket"), show_progress=False).datasets_dir
        except StorageError as exc:  # not a seed bucket; a real access problem shows again just below
            log.info("%s is not a seed bucket layout (%s); downloading it as one dataset", redact(uri), exc)
            src = fetch(uri, os.path.join(work, "plain"), show_progress=False, extract=True)
        os.makedirs(dataset.path, exist_ok=True)
        import_dataset(src, dataset.path, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    manifest = read_manifest(dataset.path)
    dataset.metadata.update(source=redact(uri), counts=manifest.get("counts", {}),
                            class_names=manifest.get("class_names", []))
    return dataset.uri


def make_component(base_image: str = MLKIT_IMAGE) -> PythonComponent:
    """``download`` built on ``base_image``."""
    return with_base_image(download, base_image)
