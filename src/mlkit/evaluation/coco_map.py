"""COCO box mAP computed with pycocotools from an in-memory ``Dataset``.

pycocotools is imported inside the function, so importing this module stays cheap and works
on installs without it (the edge extra).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import math
from collections.abc import Sequence

import numpy as np

from mlkit.data.dataset import Dataset
from mlkit.detections import Detections
from mlkit.errors import MlkitError
from mlkit.evaluation.matching import check_predictions


def _gt_coco_dict(dataset: Dataset) -> dict:
    """COCO-format ground truth: image ids 1..N (dataset order), category ids 1..K."""
    images, annotations = [], []
    ann_id = 1
    for i, rec in enumerate(dataset):
        images.append({"id": i + 1, "width": int(rec.width), "height": int(rec.height),
                       "file_name": str(rec.path)})
        for box, label in zip(rec.boxes.astype(np.float64), rec.labels, strict=True):
            x1, y1, x2, y2 = (float(v) for v in box)
            w, h = max(x2 - x1, 0.0), max(y2 - y1, 0.0)
            annotations.append({"id": ann_id, "image_id": i + 1, "category_id": int(label) + 1,
                                "bbox": [x1, y1, w, h], "area": w * h, "iscrowd": 0})
            ann_id += 1
    categories = [{"id": c + 1, "name": name} for c, name in enumerate(dataset.class_names)]
    return {"info": {}, "images": images, "annotations": annotations, "categories": categories}


def _results(predictions: Sequence[Detections]) -> list[dict]:
    out = []
    for i, det in enumerate(predictions):
        for box, score, label in zip(det.boxes.astype(np.float64), det.scores, det.labels, strict=True):
            x1, y1, x2, y2 = (float(v) for v in box)
            out.append({"image_id": i + 1, "category_id": int(label) + 1,
                        "bbox": [x1, y1, max(x2 - x1, 0.0), max(y2 - y1, 0.0)], "score": float(score)})
    return out


def coco_map(dataset: Dataset, predictions: Sequence[Detections], max_dets: int = 100,
             iou_thresholds: Sequence[float] | None = None) -> dict:
    """COCO mAP@0.5, mAP@[.5:.95] and per-class AP@0.5 via pycocotools (area range "all").

    ``predictions[i]`` are the detections for ``dataset[i]``, boxes in absolute pixels
    ``[xmin, ymin, xmax, ymax]``, labels 0-based; at most ``max_dets`` top-scoring boxes per image
    count. ``iou_thresholds`` replaces COCO's 0.5:0.95 for ``map`` (it must hold 0.5); ``(0.5,)`` skips the
    other thresholds' matching when only mAP@0.5 is wanted. Images without GT are evaluated too (their
    detections are false positives).

    Returns ``{"map50": float, "map": float, "ap50_per_class": {class_name: float | None}}``.
    A class without GT boxes gets ``None`` and is left out of the means, as COCO does. With no
    predictions at all every class with GT scores 0.0. When the dataset has no GT box at all,
    ``map50`` and ``map`` are ``nan`` (undefined). Raises ``MlkitError`` when the number of
    predictions differs from the number of images or a class id is out of range.
    """
    check_predictions(dataset, predictions)
    _check_options(max_dets, iou_thresholds)
    names = dataset.class_names
    has_gt = _has_gt(dataset)
    results = _results(predictions)
    if not results or not has_gt.any():
        return _known(names, has_gt)

    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = _gt_coco_dict(dataset)
        gt.createIndex()
        ev = _evaluator(gt, gt.loadRes(results), max_dets, iou_thresholds)
        ev.evaluate()
        ev.accumulate()
    return _summary(ev, names, has_gt)


def _check_options(max_dets: int, iou_thresholds: Sequence[float] | None) -> None:
    if int(max_dets) < 1:
        raise MlkitError(f"max_dets must be >= 1, got {max_dets}")
    if iou_thresholds is not None and not any(math.isclose(float(t), 0.5) for t in iou_thresholds):
        raise MlkitError(f"iou_thresholds must include 0.5 (mAP@0.5 is always reported), got {list(iou_thresholds)}")


def _has_gt(dataset: Dataset) -> np.ndarray:
    has_gt = np.zeros(len(dataset.class_names), bool)
    for rec in dataset:
        has_gt[np.unique(rec.labels)] = True
    return has_gt


def _known(names: Sequence[str], has_gt: np.ndarray) -> dict:
    # No prediction (loadRes cannot take an empty list) or no GT: the answer is known, AP 0 where GT exists.
    per_class = {n: (0.0 if has_gt[c] else None) for c, n in enumerate(names)}
    value = 0.0 if has_gt.any() else math.nan
    return {"map50": value, "map": value, "ap50_per_class": per_class}


def _evaluator(gt, dt, max_dets: int, iou_thresholds: Sequence[float] | None):
    from pycocotools.cocoeval import COCOeval

    ev = COCOeval(gt, dt, iouType="bbox")
    ev.params.maxDets = [int(max_dets)]
    if iou_thresholds is not None:
        ev.params.iouThrs = np.asarray(sorted(float(t) for t in iou_thresholds), np.float64)
    ev.params.areaRng = [[0.0, 1e10]]
    ev.params.areaRngLbl = ["all"]
    return ev


def _summary(ev, names: Sequence[str], has_gt: np.ndarray) -> dict:
    # precision: [T iou thresholds, R recall points, K classes, A=1 area, M=1 maxDets]; -1 = no GT
    prec = ev.eval["precision"][:, :, :, 0, 0]
    t50 = int(np.argmin(np.abs(np.asarray(ev.params.iouThrs) - 0.5)))
    cat_index = {cat_id: k for k, cat_id in enumerate(ev.params.catIds)}

    per_class: dict[str, float | None] = {}
    for c, name in enumerate(names):
        k = cat_index.get(c + 1)
        p = prec[t50, :, k] if k is not None else np.array([-1.0])
        per_class[name] = float(np.mean(p)) if has_gt[c] and (p > -1).any() else None

    def _mean(x: np.ndarray) -> float:
        valid = x[x > -1]
        return float(np.mean(valid)) if valid.size else math.nan

    return {"map50": _mean(prec[t50]), "map": _mean(prec), "ap50_per_class": per_class}


@dataclasses.dataclass(frozen=True)
class ImageEvaluation:
    """pycocotools' matching of one image's predictions (``evaluate_image``), kept to be pooled later."""

    class_names: tuple[str, ...]
    has_gt: np.ndarray  # per class
    has_predictions: bool
    evals: tuple  # COCOeval.evalImgs of the image, one per class (None: neither GT nor prediction)
    max_dets: int
    iou_thresholds: tuple[float, ...] | None


def evaluate_image(dataset: Dataset, prediction: Detections, max_dets: int = 100,
                   iou_thresholds: Sequence[float] | None = None) -> ImageEvaluation:
    """Match one image's predictions (``dataset`` holds that one image) as ``coco_map`` would.

    ``coco_map_of`` pools any number of them into the same figures ``coco_map`` gives for the images together,
    so a rolling window of images costs one image's matching per new image instead of the whole window's.
    """
    if len(dataset) != 1:
        raise MlkitError(f"evaluate_image takes a dataset of one image, got {len(dataset)}")
    check_predictions(dataset, [prediction])
    _check_options(max_dets, iou_thresholds)
    names, has_gt = dataset.class_names, _has_gt(dataset)
    thresholds = None if iou_thresholds is None else tuple(sorted(float(t) for t in iou_thresholds))
    if len(prediction) == 0:
        # What evaluateImg gives for an image without detections: its GT boxes, none matched (none ignored: the
        # area range is "all" and mlkit has no crowd boxes).
        t = len(thresholds) if thresholds is not None else 10
        labels = dataset[0].labels
        evals = tuple({"dtScores": np.zeros(0), "dtMatches": np.zeros((t, 0)), "dtIgnore": np.zeros((t, 0)),
                       "gtIgnore": np.zeros(int((labels == c).sum()))} if has_gt[c] else None
                      for c in range(len(names)))
        return ImageEvaluation(names, has_gt, False, evals, int(max_dets), thresholds)

    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = _gt_coco_dict(dataset)
        gt.createIndex()
        ev = _evaluator(gt, gt.loadRes(_results([prediction])), max_dets, thresholds)
        ev.evaluate()
    return ImageEvaluation(names, has_gt, True, tuple(ev.evalImgs), int(max_dets), thresholds)


def coco_map_of(evaluations: Sequence[ImageEvaluation]) -> dict:
    """``coco_map``'s figures for the images of ``evaluations`` together (``evaluate_image`` of each, in order)."""
    if not evaluations:
        raise MlkitError("coco_map_of needs at least one image evaluation")
    first = evaluations[0]
    for e in evaluations:
        if (e.class_names, e.max_dets, e.iou_thresholds) != (first.class_names, first.max_dets, first.iou_thresholds):
            raise MlkitError("coco_map_of pools image evaluations made with the same classes, max_dets and "
                             "iou_thresholds only")
    names, n = first.class_names, len(evaluations)
    has_gt = np.logical_or.reduce([e.has_gt for e in evaluations])
    if not any(e.has_predictions for e in evaluations) or not has_gt.any():
        return _known(names, has_gt)

    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        ev = _evaluator(None, None, first.max_dets, first.iou_thresholds)
        ev.params.imgIds = list(range(1, n + 1))
        ev.params.catIds = list(range(1, len(names) + 1))
        ev._paramsEval = copy.deepcopy(ev.params)
        # evalImgs is ordered by class, then image (one area range), as COCOeval.evaluate leaves it
        ev.evalImgs = [e.evals[k] for k in range(len(names)) for e in evaluations]
        COCOeval.accumulate(ev)
    return _summary(ev, names, has_gt)
