"""COCO box mAP computed with pycocotools from an in-memory ``Dataset``.

pycocotools is imported inside the function, so importing this module stays cheap and works
on installs without it (the edge extra).
"""

from __future__ import annotations

import contextlib
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
    if int(max_dets) < 1:
        raise MlkitError(f"max_dets must be >= 1, got {max_dets}")
    if iou_thresholds is not None and not any(math.isclose(float(t), 0.5) for t in iou_thresholds):
        raise MlkitError(f"iou_thresholds must include 0.5 (mAP@0.5 is always reported), got {list(iou_thresholds)}")
    names = dataset.class_names
    has_gt = np.zeros(len(names), bool)
    for rec in dataset:
        has_gt[np.unique(rec.labels)] = True
    results = _results(predictions)

    if not results or not has_gt.any():
        # loadRes cannot take an empty list; the answer is known: AP 0 where GT exists.
        per_class = {n: (0.0 if has_gt[c] else None) for c, n in enumerate(names)}
        value = 0.0 if has_gt.any() else math.nan
        return {"map50": value, "map": value, "ap50_per_class": per_class}

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = _gt_coco_dict(dataset)
        gt.createIndex()
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.params.maxDets = [int(max_dets)]
        if iou_thresholds is not None:
            ev.params.iouThrs = np.asarray(sorted(float(t) for t in iou_thresholds), np.float64)
        ev.params.areaRng = [[0.0, 1e10]]
        ev.params.areaRngLbl = ["all"]
        ev.evaluate()
        ev.accumulate()

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
