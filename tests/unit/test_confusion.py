"""Tests for mlkit.evaluation.confusion: class-agnostic one-to-one matching, background row/column."""

from __future__ import annotations

import numpy as np
import pytest

from mlkit.data.dataset import Dataset, ImageRecord
from mlkit.detections import Detections
from mlkit.errors import MlkitError
from mlkit.evaluation.confusion import confusion_matrix

CLASSES = ("person", "helmet")
P, H, BG = 0, 1, 2  # row/column indices: person, helmet, background


def _ds(tmp_path, per_image, classes=CLASSES):
    """per_image: list of (boxes, labels); the metric never reads the images."""
    recs = [ImageRecord(tmp_path / f"{i}.jpg", 100, 100, boxes=b, labels=lab)
            for i, (b, lab) in enumerate(per_image)]
    return Dataset(recs, classes, name="tiny")


def _det(boxes, scores, labels):
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), scores, labels)


@pytest.fixture
def ds(tmp_path):
    return _ds(tmp_path, [
        ([[10, 10, 60, 60], [50, 20, 90, 80]], [P, H]),
        ([[5, 5, 40, 45]], [H]),
    ])


def test_perfect_predictions_fill_the_diagonal(ds):
    preds = [Detections(r.boxes, np.full(len(r.labels), 0.9), r.labels) for r in ds]
    matrix, categories = confusion_matrix(ds, preds)
    assert categories == ["person", "helmet", "background"]
    assert matrix == [[1, 0, 0], [0, 2, 0], [0, 0, 0]]


def test_misclassified_box_is_off_diagonal(ds):
    preds = [
        _det([[10, 10, 60, 60], [50, 20, 90, 80]], [0.9, 0.8], [H, H]),  # person called helmet
        _det([[5, 5, 40, 45]], [0.9], [P]),  # helmet called person
    ]
    matrix, _ = confusion_matrix(ds, preds)
    assert matrix[P] == [0, 1, 0]
    assert matrix[H] == [1, 1, 0]
    assert matrix[BG] == [0, 0, 0]


def test_missed_gt_goes_to_background_column_and_false_alarm_to_background_row(ds):
    preds = [
        _det([[10, 10, 60, 60], [0, 70, 20, 95]], [0.9, 0.7], [P, H]),  # helmet missed, a false alarm
        _det([], [], []),  # helmet missed
    ]
    matrix, _ = confusion_matrix(ds, preds)
    assert matrix[P] == [1, 0, 0]
    assert matrix[H] == [0, 0, 2]
    assert matrix[BG] == [0, 1, 0]


def test_duplicate_on_a_matched_gt_is_a_false_alarm(ds):
    preds = [
        _det([[10, 10, 60, 60], [11, 11, 60, 60], [50, 20, 90, 80]], [0.9, 0.8, 0.9], [P, P, H]),
        _det([[5, 5, 40, 45]], [0.9], [H]),
    ]
    matrix, _ = confusion_matrix(ds, preds)
    assert matrix == [[1, 0, 0], [0, 2, 0], [1, 0, 0]]


def test_higher_score_takes_the_gt_first(tmp_path):
    one = _ds(tmp_path, [([[0, 0, 50, 50]], [P])])
    # Both overlap the person; the helmet prediction scores higher, so it claims the GT box.
    preds = [_det([[0, 0, 50, 50], [0, 0, 48, 50]], [0.6, 0.9], [P, H])]
    matrix, _ = confusion_matrix(one, preds)
    assert matrix == [[0, 1, 0], [0, 0, 0], [1, 0, 0]]


def test_thresholds(ds):
    preds = [
        _det([[10, 10, 60, 60], [50, 20, 90, 80]], [0.9, 0.1], [P, H]),  # helmet below the score cut
        _det([[5, 5, 40, 30]], [0.9], [H]),  # IoU (35x25)/(35x40) = 0.625
    ]
    matrix, _ = confusion_matrix(ds, preds, iou_threshold=0.5, score_threshold=0.3)
    assert matrix == [[1, 0, 0], [0, 1, 1], [0, 0, 0]]
    strict, _ = confusion_matrix(ds, preds, iou_threshold=0.7, score_threshold=0.05)
    assert strict == [[1, 0, 0], [0, 1, 1], [0, 1, 0]]


def test_totals_add_up(ds):
    rng = np.random.default_rng(0)
    preds = [_det(rng.uniform(0, 50, (5, 2)).repeat(2, axis=1) + [0, 0, 30, 30], rng.uniform(0, 1, 5),
                  rng.integers(0, 2, 5)) for _ in ds]
    matrix, _ = confusion_matrix(ds, preds, score_threshold=0.3)
    m = np.array(matrix)
    n_gt = sum(len(r.labels) for r in ds)
    n_pred = sum(int((p.scores >= 0.3).sum()) for p in preds)
    assert m[:BG].sum() == n_gt  # every GT box lands in exactly one cell of its row
    assert m[:, :BG].sum() == n_pred  # every kept prediction lands in exactly one cell of its column
    assert m[BG, BG] == 0


def test_bad_input(ds, tmp_path):
    with pytest.raises(MlkitError, match="2 images"):
        confusion_matrix(ds, [Detections()])
    with pytest.raises(MlkitError, match="class id 5"):
        confusion_matrix(ds, [_det([[0, 0, 1, 1]], [0.9], [5]), Detections()])
    with pytest.raises(MlkitError, match="iou_threshold"):
        confusion_matrix(ds, [Detections(), Detections()], iou_threshold=1.5)
    reserved = _ds(tmp_path, [([], [])], classes=("person", "background"))
    with pytest.raises(MlkitError, match="reserved"):
        confusion_matrix(reserved, [Detections()])
