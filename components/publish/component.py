"""publish: the converted little and big Models -> a model repository (``<name>/<version>/model.tflite``)."""

# No `from __future__ import annotations` here: KFP reads the real annotation objects (Input[Dataset], ...).

from kfp.dsl import Input, Model, Output
from kfp.dsl.python_component import PythonComponent

from mlkit.components.common import MLKIT_IMAGE, mlkit_component, with_base_image


@mlkit_component
def publish(little: Input[Model], big: Input[Model], repository: Output[Model], variant: str = "int8",
            version: int = 1):
    """Copy one TFLite variant of each model into ``repository/<name>/<version>/``.

    Each version folder holds ``model.tflite`` and its ``metadata.json``; ``<name>`` is the model's
    name from that metadata (``little``, ``big``), the layout a serving step loads.
    """
    import os
    import shutil

    from mlkit.models.predict import DetectorMeta

    if version < 1:
        raise ValueError(f"version must be >= 1, got {version}")
    published = {}
    for source in (little, big):
        src = os.path.join(source.path, variant)
        if not os.path.isfile(os.path.join(src, "model.tflite")):
            raise ValueError(f"no TFLite variant {variant!r} in {source.path}: convert it first")
        name = DetectorMeta.load(os.path.join(src, "metadata.json")).name
        if name in published:
            raise ValueError(f"both models are named {name!r}; a repository needs distinct names")
        dest = os.path.join(repository.path, name, str(version))
        os.makedirs(dest, exist_ok=True)
        for file in ("model.tflite", "metadata.json"):
            shutil.copy2(os.path.join(src, file), os.path.join(dest, file))
        published[name] = f"{name}/{version}"
    repository.framework = "tflite"
    repository.metadata.update(variant=variant, version=version, models=published)


def make_component(base_image: str = MLKIT_IMAGE) -> PythonComponent:
    """``publish`` built on ``base_image``."""
    return with_base_image(publish, base_image)
