"""Tests for mlkit.evaluation: COCO mAP via pycocotools, one-to-one P/R, IoU, speed, reports."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from mlkit.data.dataset import Dataset, ImageRecord, write_rgb
from mlkit.detections import Detections
from mlkit.errors import MlkitError
from mlkit.evaluation import (
    EvaluationResult,
    box_iou,
    coco_map,
    evaluate,
    measure_throughput,
    precision_recall,
)
from mlkit.evaluation.coco_map import coco_map_of, evaluate_image

CLASSES = ("person", "helmet")


def _ds(tmp_path, per_image, classes=CLASSES):
    """per_image: list of (boxes, labels); images need not exist for the metric functions."""
    recs = [
        ImageRecord(path=tmp_path / f"{i}.jpg", width=100, height=100, boxes=b, labels=lab)
        for i, (b, lab) in enumerate(per_image)
    ]
    return Dataset(recs, classes, name="tiny")


def _det(boxes, scores, labels):
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), scores, labels)


def _perfect(ds):
    return [Detections(r.boxes, np.full(len(r.labels), 0.9), r.labels) for r in ds]


@pytest.fixture
def two_images(tmp_path):
    return _ds(tmp_path, [
        ([[10, 10, 60, 60], [50, 20, 90, 80]], [0, 1]),
        ([[5, 5, 40, 45]], [1]),
    ])


def test_perfect_predictions(two_images):
    preds = _perfect(two_images)
    m = coco_map(two_images, preds)
    assert m["map50"] == pytest.approx(1.0)
    assert m["map"] == pytest.approx(1.0)
    assert m["ap50_per_class"] == {"person": pytest.approx(1.0), "helmet": pytest.approx(1.0)}
    pr = precision_recall(two_images, preds)
    assert pr["precision"] == pytest.approx(1.0) and pr["recall"] == pytest.approx(1.0)
    assert pr["f1"] == pytest.approx(1.0)
    assert pr["per_class"]["helmet"] == {"precision": 1.0, "recall": 1.0, "tp": 2, "fp": 0, "fn": 0}


def test_shifted_boxes_iou_06(tmp_path):
    ds = _ds(tmp_path, [([[10, 10, 60, 60]], [0])])
    shifted = [[22, 10, 72, 60]]  # IoU = 38*50 / (5000 - 1900) = 0.6129
    assert box_iou(np.array(shifted), ds[0].boxes)[0, 0] == pytest.approx(1900 / 3100)
    m = coco_map(ds, [_det(shifted, [0.9], [0])])
    assert m["map50"] == pytest.approx(1.0)
    # matches at IoU thresholds .50, .55, .60 only → 3 of 10
    assert m["map"] == pytest.approx(0.3)
    assert precision_recall(ds, [_det(shifted, [0.9], [0])])["recall"] == 1.0
    only50 = coco_map(ds, [_det(shifted, [0.9], [0])], iou_thresholds=(0.5,))  # mAP@0.5 alone, less matching
    assert only50["map50"] == pytest.approx(1.0) and only50["map"] == pytest.approx(1.0)
    with pytest.raises(MlkitError, match="iou_thresholds must include 0.5"):
        coco_map(ds, [_det(shifted, [0.9], [0])], iou_thresholds=(0.75,))


def test_false_positive_first_lowers_ap(tmp_path):
    gt = [[10, 10, 30, 30], [60, 60, 90, 90]]
    ds = _ds(tmp_path, [(gt, [0, 0])])
    fp = [40, 0, 55, 15]  # overlaps no GT
    # FP(0.9), TP(0.8), TP(0.7): (R, P) = (0, 0), (.5, .5), (1, 2/3); the precision envelope is
    # 2/3 at every recall, so all 101 interpolation points give 2/3.
    preds = [_det([fp, gt[0], gt[1]], [0.9, 0.8, 0.7], [0, 0, 0])]
    assert coco_map(ds, preds)["map50"] == pytest.approx(2 / 3)
    # TP(0.9), FP(0.8), TP(0.7): (R, P) = (.5, 1), (.5, .5), (1, 2/3) → envelope 1 for the
    # 51 points r <= 0.5 and 2/3 for the 50 points r > 0.5.
    preds = [_det([gt[0], fp, gt[1]], [0.9, 0.8, 0.7], [0, 0, 0])]
    m = coco_map(ds, preds)
    assert m["map50"] == pytest.approx((51 * 1.0 + 50 * 2 / 3) / 101)
    assert m["ap50_per_class"]["person"] == pytest.approx(m["map50"])
    assert m["ap50_per_class"]["helmet"] is None  # no GT for helmet: excluded


def test_one_to_one_matching(tmp_path):
    ds = _ds(tmp_path, [([[10, 10, 60, 60]], [0])])
    # Two predictions on the same GT. Sedna's metric is not one-to-one and would count 2 TP;
    # here each GT is matched at most once → 1 TP + 1 FP.
    preds = [_det([[10, 10, 60, 60], [11, 11, 61, 61]], [0.9, 0.8], [0, 0])]
    pc = precision_recall(ds, preds)["per_class"]["person"]
    assert (pc["tp"], pc["fp"], pc["fn"]) == (1, 1, 0)
    assert pc["precision"] == 0.5 and pc["recall"] == 1.0


def test_greedy_picks_highest_iou_unmatched_gt(tmp_path):
    ds = _ds(tmp_path, [([[0, 0, 50, 50], [20, 0, 70, 50]], [0, 0])])
    # The top prediction overlaps GT0 (IoU .54) and GT1 (IoU .82) and must take GT1; taking the
    # first GT above threshold would leave the second prediction (IoU .43 with GT1) a FP.
    preds = [_det([[15, 0, 65, 50], [0, 0, 50, 50]], [0.9, 0.8], [0, 0])]
    pc = precision_recall(ds, preds)["per_class"]["person"]
    assert (pc["tp"], pc["fp"], pc["fn"]) == (2, 0, 0)


def test_score_threshold_and_conventions(tmp_path):
    ds = _ds(tmp_path, [([[10, 10, 60, 60]], [0])])
    pr = precision_recall(ds, [_det([[10, 10, 60, 60]], [0.2], [0])], score_threshold=0.3)
    # person has GT but no kept prediction → precision 0, recall 0; helmet has neither → None
    assert pr["per_class"]["person"] == {"precision": 0.0, "recall": 0.0, "tp": 0, "fp": 0, "fn": 1}
    assert pr["per_class"]["helmet"]["precision"] is None and pr["per_class"]["helmet"]["recall"] is None
    assert pr["precision"] == 0.0 and pr["f1"] == 0.0


def test_no_predictions_and_empty_images(tmp_path):
    ds = _ds(tmp_path, [([[10, 10, 60, 60]], [0]), ([], [])])
    m = coco_map(ds, [Detections(), Detections()])
    assert m["map50"] == 0.0 and m["map"] == 0.0
    assert m["ap50_per_class"] == {"person": 0.0, "helmet": None}
    # a detection on the image without GT is a false positive (ranked above the TP)
    m = coco_map(ds, [_det([[10, 10, 60, 60]], [0.5], [0]), _det([[0, 0, 20, 20]], [0.9], [0])])
    assert m["map50"] == pytest.approx(0.5)
    # no GT anywhere: undefined, not a crash
    empty = _ds(tmp_path, [([], [])])
    assert math.isnan(coco_map(empty, [_det([[0, 0, 5, 5]], [0.9], [0])])["map50"])
    assert math.isnan(precision_recall(empty, [Detections()])["precision"])


def test_wrong_number_of_predictions(two_images):
    with pytest.raises(MlkitError, match=r"1 predictions for 2 images"):
        coco_map(two_images, [Detections()])
    with pytest.raises(MlkitError, match=r"3 predictions for 2 images"):
        precision_recall(two_images, [Detections()] * 3)
    with pytest.raises(MlkitError, match="class id 5"):
        coco_map(two_images, [_det([[0, 0, 5, 5]], [0.9], [5]), Detections()])


def test_class_aware(tmp_path):
    ds = _ds(tmp_path, [([[10, 10, 60, 60]], [0])])
    preds = [_det([[10, 10, 60, 60]], [0.9], [1])]  # right box, wrong class
    pr = precision_recall(ds, preds)
    assert pr["per_class"]["person"]["tp"] == 0 and pr["per_class"]["person"]["fn"] == 1
    assert pr["per_class"]["helmet"]["fp"] == 1
    m = coco_map(ds, preds)
    assert m["map50"] == 0.0 and m["ap50_per_class"]["helmet"] is None


def test_box_iou_hand_values():
    a = np.array([[0, 0, 10, 10], [0, 0, 2, 2]])
    b = np.array([[0, 0, 10, 10], [5, 5, 15, 15], [20, 20, 30, 30], [0, 0, 0, 0]])
    iou = box_iou(a, b)
    assert iou.shape == (2, 4)
    np.testing.assert_allclose(iou[0], [1.0, 25 / 175, 0.0, 0.0])
    np.testing.assert_allclose(iou[1], [4 / 100, 0.0, 0.0, 0.0])
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 4)


def test_measure_throughput():
    calls = []
    r = measure_throughput(calls.append, [1, 2], warmup=2, min_seconds=0.0, max_iters=5)
    assert r["iterations"] == 1 and len(calls) == 3
    r = measure_throughput(calls.append, [1, 2], warmup=0, min_seconds=10.0, max_iters=5)
    assert r["iterations"] == 5
    assert r["images_per_second"] > 0 and r["ms_per_image_p50"] <= r["ms_per_image_p95"] + 1e-9
    with pytest.raises(MlkitError):
        measure_throughput(calls.append, [])


def test_evaluate_and_result_roundtrip(tmp_path, two_images):
    for rec in two_images:
        write_rgb(rec.path, np.zeros((rec.height, rec.width, 3), np.uint8))
    seen = []

    def predict(images):
        seen.append(len(images))
        assert all(im.dtype == np.uint8 and im.shape == (100, 100, 3) for im in images)
        start = sum(seen) - len(images)
        return _perfect(two_images)[start:start + len(images)]

    res = evaluate(two_images, predict, batch_size=2, show_progress=False)
    assert seen == [2]
    assert res.num_images == 2 and res.map50 == pytest.approx(1.0) and res.images_per_second > 0
    assert res.recall_per_class == {"person": 1.0, "helmet": 1.0}
    d = json.loads(json.dumps(res.to_dict()))
    back = EvaluationResult.from_dict(d)
    assert back.to_dict() == d
    table = res.table()
    assert "mAP@0.5: 1.000" in table and "helmet" in table

    with pytest.raises(MlkitError, match="returned 0 results"):
        evaluate(two_images, lambda imgs: [], show_progress=False)


def test_result_nan_to_none():
    res = EvaluationResult(math.nan, math.nan, {"a": None}, {"a": None}, {"a": None}, math.inf, 0)
    d = res.to_dict()
    assert d["map50"] is None and d["images_per_second"] is None
    assert math.isnan(EvaluationResult.from_dict(d).map)
    assert "-" in res.table()
    with pytest.raises(MlkitError, match="missing"):
        EvaluationResult.from_dict({"map50": 1.0})


def test_import_is_light():
    code = (
        "import sys, mlkit.evaluation; "
        "print(sorted(m for m in ('tensorflow', 'pycocotools', 'keras') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("iou_thresholds", [None, (0.5,)])
def test_pooled_image_evaluations_equal_coco_map(tmp_path, iou_thresholds):
    ds = _ds(tmp_path, [
        ([[10, 10, 60, 60], [50, 20, 90, 80]], [0, 1]),
        ([[5, 5, 40, 45]], [1]),
        (np.zeros((0, 4)), []),  # no GT: its detections are false positives
        ([[20, 20, 50, 70]], [0]),  # no detection: a miss
    ])
    preds = [_det([[12, 10, 60, 62], [52, 25, 90, 80], [0, 0, 20, 20]], [0.9, 0.6, 0.7], [0, 1, 0]),
             _det([[5, 5, 30, 45]], [0.8], [1]),
             _det([[1, 1, 9, 9]], [0.95], [1]),
             _det([], [], [])]
    evals = [evaluate_image(Dataset([rec], CLASSES), p, iou_thresholds=iou_thresholds)
             for rec, p in zip(ds, preds, strict=True)]
    for idx in ([0, 1, 2, 3], [1, 3], [3], [2], [2, 3]):
        want = coco_map(Dataset([ds[i] for i in idx], CLASSES), [preds[i] for i in idx],
                        iou_thresholds=iou_thresholds)
        got = coco_map_of([evals[i] for i in idx])
        assert got["ap50_per_class"] == want["ap50_per_class"]
        for key in ("map50", "map"):
            assert (math.isnan(got[key]) and math.isnan(want[key])) or got[key] == want[key]
    with pytest.raises(MlkitError, match="same classes, max_dets and iou_thresholds"):
        coco_map_of([evals[0], evaluate_image(Dataset([ds[0]], CLASSES), preds[0], iou_thresholds=(0.5, 0.75))])
    with pytest.raises(MlkitError, match="a dataset of one image"):
        evaluate_image(ds, preds[0])
