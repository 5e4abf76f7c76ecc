"""Run a predictor over a dataset and collect accuracy and speed into one result."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence

import numpy as np

from mlkit.data.dataset import Dataset
from mlkit.detections import Detections
from mlkit.errors import MlkitError
from mlkit.evaluation.coco_map import coco_map
from mlkit.evaluation.matching import precision_recall

PredictFn = Callable[[list[np.ndarray]], Sequence[Detections]]


def _json_float(x: float | None) -> float | None:
    """NaN/inf/None → None so ``to_dict()`` is valid JSON."""
    return None if x is None or not math.isfinite(float(x)) else float(x)


def _nan_if_none(x: float | None) -> float:
    return math.nan if x is None else float(x)


@dataclasses.dataclass
class EvaluationResult:
    """Accuracy and speed of a detector on one dataset.

    Per-class dicts map class name → value, with ``None`` where undefined (e.g. no GT boxes).
    Aggregates are ``nan`` when undefined (``None`` in ``to_dict()``).
    """

    map50: float
    map: float
    ap50_per_class: dict[str, float | None]
    precision_per_class: dict[str, float | None]
    recall_per_class: dict[str, float | None]
    images_per_second: float
    num_images: int
    precision: float = math.nan
    recall: float = math.nan
    f1: float = math.nan
    iou_threshold: float = 0.5
    score_threshold: float = 0.3

    def to_dict(self) -> dict:
        """JSON-safe dict (NaN and inf written as ``None``)."""
        out: dict = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, dict):
                out[f.name] = {k: _json_float(x) for k, x in v.items()}
            elif f.name == "num_images":
                out[f.name] = int(v)
            else:
                out[f.name] = _json_float(v)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> EvaluationResult:
        """Inverse of ``to_dict``; unknown keys are ignored, missing required keys raise ``MlkitError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        missing = sorted(required - set(data))
        if missing:
            raise MlkitError(f"evaluation result is missing keys {missing}")
        kwargs: dict = {}
        for key in names & set(data):
            v = data[key]
            if key.endswith("_per_class"):
                kwargs[key] = {str(k): (None if x is None else float(x)) for k, x in dict(v).items()}
            elif key == "num_images":
                kwargs[key] = int(v)
            else:
                kwargs[key] = _nan_if_none(v)
        return cls(**kwargs)

    def table(self) -> str:
        """A plain-text summary: overall metrics, then one row per class."""

        def fmt(x: float | None, digits: int = 3) -> str:
            return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"

        lines = [
            f"images: {self.num_images}   speed: {fmt(self.images_per_second, 1)} img/s",
            f"mAP@0.5: {fmt(self.map50)}   mAP@[.5:.95]: {fmt(self.map)}",
            f"precision: {fmt(self.precision)}   recall: {fmt(self.recall)}   f1: {fmt(self.f1)}"
            f"   (IoU >= {self.iou_threshold:g}, score >= {self.score_threshold:g})",
            "",
        ]
        classes = list(dict.fromkeys([*self.ap50_per_class, *self.precision_per_class,
                                      *self.recall_per_class]))
        width = max([len("class"), *(len(c) for c in classes)])
        header = f"{'class':<{width}}  {'AP@0.5':>7}  {'P':>7}  {'R':>7}"
        lines += [header, "-" * len(header)]
        for c in classes:
            lines.append(
                f"{c:<{width}}  {fmt(self.ap50_per_class.get(c)):>7}  "
                f"{fmt(self.precision_per_class.get(c)):>7}  {fmt(self.recall_per_class.get(c)):>7}"
            )
        return "\n".join(lines)


def evaluate(
    dataset: Dataset,
    predict_fn: PredictFn,
    batch_size: int = 1,
    show_progress: bool = True,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.3,
    max_dets: int = 100,
) -> EvaluationResult:
    """Predict every image of ``dataset`` and score the results.

    ``predict_fn`` takes a list of RGB uint8 images (``dataset.load_image(i)``) and returns one
    ``Detections`` per image, in original-image pixels. Only the ``predict_fn`` calls are timed for
    ``images_per_second`` (image loading is not). mAP comes from ``coco_map``; precision/recall from
    ``precision_recall`` at ``iou_threshold`` / ``score_threshold``.
    """
    if len(dataset) == 0:
        raise MlkitError(f"dataset {dataset.name!r} has no images to evaluate")
    if batch_size < 1:
        raise MlkitError(f"batch_size must be >= 1, got {batch_size}")
    from tqdm.auto import tqdm

    predictions: list[Detections] = []
    seconds = 0.0
    with tqdm(total=len(dataset), desc=f"evaluate {dataset.name}", unit="img",
              disable=not show_progress) as bar:
        for start in range(0, len(dataset), batch_size):
            idx = range(start, min(start + batch_size, len(dataset)))
            images = [dataset.load_image(i) for i in idx]
            t0 = time.perf_counter()
            out = predict_fn(images)
            seconds += time.perf_counter() - t0
            out = list(out)
            if len(out) != len(images):
                raise MlkitError(
                    f"predict_fn returned {len(out)} results for a batch of {len(images)} images; "
                    "it must return one Detections per image"
                )
            predictions.extend(out)
            bar.update(len(images))

    maps = coco_map(dataset, predictions, max_dets=max_dets)
    pr = precision_recall(dataset, predictions, iou_threshold, score_threshold)
    return EvaluationResult(
        map50=maps["map50"],
        map=maps["map"],
        ap50_per_class=maps["ap50_per_class"],
        precision_per_class={k: v["precision"] for k, v in pr["per_class"].items()},
        recall_per_class={k: v["recall"] for k, v in pr["per_class"].items()},
        images_per_second=len(dataset) / seconds if seconds > 0 else math.inf,
        num_images=len(dataset),
        precision=pr["precision"],
        recall=pr["recall"],
        f1=pr["f1"],
        iou_threshold=iou_threshold,
        score_threshold=score_threshold,
    )
