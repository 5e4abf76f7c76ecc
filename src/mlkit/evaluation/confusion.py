"""Detection confusion matrix over the K classes plus "background".

Convention (the one KFP's ``ClassificationMetrics.log_confusion_matrix`` draws): **rows are the
true category, columns the predicted category**, both indexed by ``categories`` =
``class_names + ("background",)``; ``matrix[i][j]`` counts boxes of true category ``i`` predicted
as category ``j``.

Matching, per image:

* only predictions with ``score >= score_threshold`` count;
* predictions are matched to GT boxes **ignoring class**, one-to-one and greedily: visited by
  descending score (ties keep their order), each takes the still-free GT box with the highest IoU,
  provided that IoU is ``>= iou_threshold`` (the same greedy order as
  :func:`mlkit.evaluation.matching.precision_recall`, minus the class check);
* a matched pair adds 1 to ``matrix[gt_class][predicted_class]`` (the diagonal when the class is
  right, off the diagonal when the box was found but misclassified);
* an unmatched GT box (missed) adds 1 to ``matrix[gt_class][background]``;
* an unmatched prediction (false alarm, or a duplicate on an already matched GT box) adds 1 to
  ``matrix[background][predicted_class]``;
* ``matrix[background][background]`` is always 0: true negatives are not countable in detection.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mlkit.data.dataset import Dataset
from mlkit.detections import Detections
from mlkit.errors import MlkitError
from mlkit.evaluation.matching import check_predictions, match_image

BACKGROUND = "background"


def confusion_matrix(
    dataset: Dataset,
    predictions: Sequence[Detections],
    iou_threshold: float = 0.5,
    score_threshold: float = 0.3,
) -> tuple[list[list[int]], list[str]]:
    """Count true vs predicted categories over ``dataset``; see the module docstring for the rules.

    ``predictions[i]`` are the detections for ``dataset[i]`` (absolute pixels, 0-based labels).
    Returns ``(matrix, categories)``: a (K+1) x (K+1) list of int lists, rows = true category,
    columns = predicted category, and ``categories = [*dataset.class_names, "background"]``.
    Raises ``MlkitError`` on a prediction count or class id that does not fit the dataset, or a
    threshold outside [0, 1].
    """
    if not 0.0 <= iou_threshold <= 1.0:
        raise MlkitError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    if not 0.0 <= score_threshold <= 1.0:
        raise MlkitError(f"score_threshold must be in [0, 1], got {score_threshold}")
    check_predictions(dataset, predictions)
    categories = [*dataset.class_names, BACKGROUND]
    if BACKGROUND in dataset.class_names:
        raise MlkitError(f"the dataset has a class named {BACKGROUND!r}; rename it, the name is reserved "
                         "for the confusion matrix's background row and column")
    k = len(dataset.class_names)
    matrix = np.zeros((k + 1, k + 1), np.int64)
    for rec, det in zip(dataset, predictions, strict=True):
        det = det.filter(score_threshold)
        # Class-agnostic matching: give every box the same label, keep the real ones for counting.
        agnostic = Detections(det.boxes, det.scores, np.zeros(len(det), np.int64))
        one_class = np.zeros(len(rec.labels), np.int64)
        is_tp, matched_gt = match_image(rec.boxes, one_class, agnostic, iou_threshold)
        gt_found = np.zeros(len(rec.labels), bool)
        for j in range(len(det)):
            if is_tp[j]:
                g = int(matched_gt[j])
                gt_found[g] = True
                matrix[int(rec.labels[g]), int(det.labels[j])] += 1
            else:
                matrix[k, int(det.labels[j])] += 1
        for g in np.flatnonzero(~gt_found):
            matrix[int(rec.labels[g]), k] += 1
    return matrix.tolist(), categories
