"""Box IoU and per-class precision / recall with one-to-one greedy matching.

Matching rules (``precision_recall``), applied per image:

* only predictions with ``score >= score_threshold`` count;
* predictions are visited by descending score (ties keep their original order);
* a prediction may only match a ground-truth (GT) box of the **same class**;
* among the still-unmatched GT boxes of that class, it takes the one with the highest
  IoU, provided that IoU is ``>= iou_threshold``; otherwise it is a false positive;
* each GT box is matched at most once, so a second prediction on an already matched
  GT box is a false positive (one-to-one), and unmatched GT boxes are false negatives.

Undefined values are reported as ``None`` per class and ``nan`` in the aggregates; see
``precision_recall`` for the exact conventions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from mlkit.data.dataset import Dataset
from mlkit.detections import Detections
from mlkit.errors import MlkitError


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` ([N, 4]) with every box in ``b`` ([M, 4]) as an [N, M] float array.

    Boxes are ``[xmin, ymin, xmax, ymax]`` in continuous coordinates (area = w * h, no "+1"),
    the same convention pycocotools uses. Pairs whose union is empty have IoU 0.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    # np.maximum rather than np.clip: same values, a fraction of the call overhead (the joint worker's reuse
    # calls this on a few dozen boxes per frame, on the edge's core).
    wa, wb = np.maximum(a[:, 2:] - a[:, :2], 0), np.maximum(b[:, 2:] - b[:, :2], 0)
    area_a, area_b = wa[:, 0] * wa[:, 1], wb[:, 0] * wb[:, 1]
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.maximum(rb - lt, 0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    out = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def check_predictions(dataset: Dataset, predictions: Sequence[Detections]) -> None:
    """Raise ``MlkitError`` unless there is one ``Detections`` per image with valid class ids."""
    if len(predictions) != len(dataset):
        raise MlkitError(
            f"got {len(predictions)} predictions for {len(dataset)} images in dataset "
            f"{dataset.name!r}; pass exactly one Detections per image, in dataset order"
        )
    k = len(dataset.class_names)
    for i, det in enumerate(predictions):
        if not isinstance(det, Detections):
            raise MlkitError(f"prediction {i} is a {type(det).__name__}, expected mlkit.Detections")
        if len(det) and (det.labels.min() < 0 or det.labels.max() >= k):
            bad = int(det.labels.min()) if det.labels.min() < 0 else int(det.labels.max())
            raise MlkitError(
                f"prediction {i} has class id {bad} outside 0..{k - 1} for classes "
                f"{list(dataset.class_names)}; does the model match the dataset?"
            )


def match_image(
    gt_boxes: np.ndarray,
    gt_labels: np.ndarray,
    pred: Detections,
    iou_threshold: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy one-to-one matching for one image.

    Returns ``(is_tp, matched_gt)`` aligned with ``pred``: ``is_tp[j]`` is True when prediction
    ``j`` matched a GT box, and ``matched_gt[j]`` is that GT index (or -1). No score filtering.
    """
    n = len(pred)
    is_tp = np.zeros(n, bool)
    matched_gt = np.full(n, -1, np.int64)
    if n == 0 or len(gt_boxes) == 0:
        return is_tp, matched_gt
    iou = box_iou(pred.boxes, gt_boxes)
    iou[pred.labels[:, None] != gt_labels[None, :]] = -1.0  # class-aware: other classes never match
    taken = np.zeros(len(gt_boxes), bool)
    for j in np.argsort(-pred.scores, kind="stable"):
        cand = np.where(taken, -1.0, iou[j])
        g = int(np.argmax(cand))
        if cand[g] >= iou_threshold:
            taken[g] = True
            is_tp[j] = True
            matched_gt[j] = g
    return is_tp, matched_gt


def precision_recall(
    dataset: Dataset,
    predictions: Sequence[Detections],
    iou_threshold: float = 0.5,
    score_threshold: float = 0.3,
) -> dict:
    """Per-class precision and recall at one score threshold, with one-to-one greedy matching.

    See the module docstring for the matching rules. Per class ``c``:

    * ``tp`` / ``fp`` / ``fn`` are counts over the whole dataset;
    * ``precision = tp / (tp + fp)``; when the class has **no predictions** it is ``0.0`` if the
      class has GT boxes (nothing was found) and ``None`` if it has none (undefined);
    * ``recall = tp / (tp + fn)``; ``None`` when the class has no GT boxes.

    Aggregates: ``"precision"`` and ``"recall"`` are macro means over the classes that have at
    least one GT box (classes without GT are excluded, as COCO does for AP — so false positives of
    such a class show only in its own ``fp``); ``"f1" = 2PR / (P + R)`` of those macro means
    (0.0 when both are 0). When the dataset has no GT box at all the aggregates are ``nan``.

    Returns ``{"per_class": {name: {"precision", "recall", "tp", "fp", "fn"}},
    "precision": float, "recall": float, "f1": float}``.
    """
    check_predictions(dataset, predictions)
    k = len(dataset.class_names)
    tp = np.zeros(k, np.int64)
    fp = np.zeros(k, np.int64)
    n_gt = np.zeros(k, np.int64)
    for rec, det in zip(dataset, predictions, strict=True):
        det = det.filter(score_threshold)
        is_tp, _ = match_image(rec.boxes, rec.labels, det, iou_threshold)
        n_gt += np.bincount(rec.labels, minlength=k)
        tp += np.bincount(det.labels[is_tp], minlength=k)
        fp += np.bincount(det.labels[~is_tp], minlength=k)
    fn = n_gt - tp

    per_class: dict[str, dict] = {}
    for c, name in enumerate(dataset.class_names):
        n_pred = int(tp[c] + fp[c])
        if n_pred:
            precision: float | None = float(tp[c]) / n_pred
        else:
            precision = 0.0 if n_gt[c] else None
        recall = float(tp[c]) / float(n_gt[c]) if n_gt[c] else None
        per_class[name] = {
            "precision": precision,
            "recall": recall,
            "tp": int(tp[c]),
            "fp": int(fp[c]),
            "fn": int(fn[c]),
        }

    with_gt = [per_class[name] for c, name in enumerate(dataset.class_names) if n_gt[c]]
    if with_gt:
        p = float(np.mean([v["precision"] for v in with_gt]))
        r = float(np.mean([v["recall"] for v in with_gt]))
        f1 = 2 * p * r / (p + r) if (p + r) > 0 else 0.0
    else:
        p = r = f1 = math.nan
    return {"per_class": per_class, "precision": p, "recall": r, "f1": f1}
