"""evaluate: converted Model folder + Dataset -> Metrics + ClassificationMetrics, returns mAP@0.5."""

# No `from __future__ import annotations` here: KFP reads the real annotation objects (Input[Dataset], ...).

from kfp.dsl import ClassificationMetrics, Dataset, Input, Metrics, Model, Output
from kfp.dsl.python_component import PythonComponent

from mlkit.components.common import MLKIT_IMAGE, mlkit_component, with_base_image


@mlkit_component
def evaluate(model: Input[Model], dataset: Input[Dataset], metrics: Output[Metrics],
             confusion: Output[ClassificationMetrics], variant: str = "int8", split: str = "test",
             score_threshold: float = 0.3, num_threads: int = 2) -> float:
    """Run ``<model>/<variant>/model.tflite`` over a split; return its mAP@0.5 for the pipeline's gate.

    ``metrics``: map50, map, precision, recall, f1, images_per_second and per-class ap50_/precision_/
    recall_<class>. ``confusion``: the class-agnostic-matched confusion matrix over the classes plus
    "background" (rows true, columns predicted; mlkit.evaluation.confusion). The return value is a
    plain float (not a NamedTuple field): kfp.local 2.17 resolves only ``Output`` in dsl.If conditions.
    """
    import math
    import os

    from mlkit.data.layout import load_split
    from mlkit.evaluation import evaluate as score
    from mlkit.evaluation.confusion import confusion_matrix
    from mlkit.models.predict import TFLiteDetector

    path = os.path.join(model.path, variant, "model.tflite")
    if not os.path.isfile(path):
        found = sorted(d for d in os.listdir(model.path)
                       if os.path.isfile(os.path.join(model.path, d, "model.tflite")))
        raise ValueError(f"no TFLite variant {variant!r} in {model.path}; it has {found}")
    detector = TFLiteDetector(path, num_threads=num_threads)
    ds = load_split(dataset.path, split)
    predictions = []

    def predict(images):  # keep the predictions for the confusion matrix; mAP wants a low threshold
        out = detector.predict(images, score_threshold=0.05)
        predictions.extend(out)
        return out

    result = score(ds, predict, batch_size=1, show_progress=False, score_threshold=score_threshold)
    matrix, categories = confusion_matrix(ds, predictions, score_threshold=score_threshold)
    confusion.log_confusion_matrix(categories, matrix)
    values = {k: getattr(result, k)
              for k in ("map50", "map", "precision", "recall", "f1", "images_per_second")}
    for prefix, per_class in (("ap50", result.ap50_per_class), ("precision", result.precision_per_class),
                              ("recall", result.recall_per_class)):
        values.update({f"{prefix}_{c}": v for c, v in per_class.items()})
    for key, value in values.items():
        if value is not None and math.isfinite(value):  # undefined (no GT of a class) is left out
            metrics.log_metric(key, float(value))
    if not math.isfinite(result.map50):
        raise ValueError(f"mAP@0.5 is undefined: the {split!r} split of {dataset.path} has no labelled boxes")
    return float(result.map50)


def make_component(base_image: str = MLKIT_IMAGE) -> PythonComponent:
    """``evaluate`` built on ``base_image``."""
    return with_base_image(evaluate, base_image)
