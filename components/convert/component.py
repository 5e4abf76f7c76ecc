"""convert: trained Model + Dataset -> TFLite Model folder (one sub-folder per variant) + fidelity Metrics."""

# No `from __future__ import annotations` here: KFP reads the real annotation objects (Input[Dataset], ...).

from kfp.dsl import Dataset, Input, Metrics, Model, Output
from kfp.dsl.python_component import PythonComponent

from mlkit.components.common import MLKIT_IMAGE, mlkit_component, with_base_image


@mlkit_component
def convert(model: Input[Model], dataset: Input[Dataset], tflite: Output[Model], fidelity: Output[Metrics],
            variants: str = "fp32,fp16,dynamic,int8", profile: str = "test", num_threads: int = 2):
    """Export ``<variant>/model.tflite`` + ``metadata.json`` for each comma-separated variant.

    int8 calibrates on the profile's number of train-split images; fidelity (mAP@0.5 of each variant,
    its delta to the Keras model in points, file size, ms per image) is measured on the test split.
    """
    import json
    import math
    import os

    from mlkit.data.layout import load_split
    from mlkit.models.export import VARIANTS, export_tflite, fidelity_report
    from mlkit.profiles import get_profile

    chosen = [v.strip() for v in variants.split(",") if v.strip()]
    unknown = sorted(set(chosen) - set(VARIANTS))
    if not chosen or unknown:
        raise ValueError(f"variants {variants!r}: give a comma-separated subset of {','.join(VARIANTS)}"
                         + (f" (unknown: {unknown})" if unknown else ""))
    calibration_count = get_profile(profile).calibration_images
    os.makedirs(tflite.path, exist_ok=True)
    paths = export_tflite(model.path, tflite.path, chosen, calibration=load_split(dataset.path, "train"),
                          calibration_count=calibration_count)
    rows = fidelity_report(model.path, paths, load_split(dataset.path, "test"), num_threads=num_threads,
                           show_progress=False)
    for row in rows:
        for key in ("map50", "delta_map50", "size_mb", "ms_per_image"):
            value = getattr(row, key)
            if math.isfinite(value):
                fidelity.log_metric(f"{row.variant}_{key}", float(value))
    with open(os.path.join(tflite.path, "fidelity.json"), "w") as f:
        json.dump([r.to_dict() for r in rows], f, indent=2, default=str)
    tflite.framework = "tflite"
    tflite.metadata.update(variants=chosen, source=model.metadata.get("name", ""))


def make_component(base_image: str = MLKIT_IMAGE) -> PythonComponent:
    """``convert`` built on ``base_image``."""
    return with_base_image(convert, base_image)
