"""Edge-vs-cloud agreement: 1.0 when they agree, falls as the edge misses, per class; the alarm fires once and
clears only with margin; the audit sampler's share and spread; the agreement file."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from mlkit.detections import Detections
from mlkit.errors import MlkitError
from mlkit.joint.agreement import AGREEMENT_FILE, AgreementConfig, AgreementMonitor, AuditSampler, write_agreement

CLASSES = ("person", "helmet", "helmet-on", "helmet-off")


def scene(seed: int, n: int = 6) -> Detections:
    """``n`` confident, well separated boxes of classes 0..3 (the cloud's answer)."""
    rng = np.random.default_rng(seed)
    x = np.arange(n) * 60.0 + rng.uniform(0, 5, n)
    boxes = np.stack([x, np.full(n, 20.0), x + 40, np.full(n, 100.0)], 1)
    return Detections(boxes, rng.uniform(0.6, 0.99, n), np.arange(n) % 4)


def drop(det: Detections, keep) -> Detections:
    keep = np.asarray(keep)
    return Detections(det.boxes[keep], det.scores[keep], det.labels[keep])


def test_agreement_is_one_when_edge_equals_cloud_and_falls_when_edge_misses():
    m = AgreementMonitor(CLASSES, AgreementConfig(window=4, min_frames=1))
    assert m.agreement() is None and m.snapshot()["agreement"] is None
    for i in range(4):
        cloud = scene(i)
        m.add(i, cloud, cloud)
    assert m.agreement() == 1.0 and set(m.per_class().values()) == {1.0}
    for i in range(4, 8):  # the edge now finds only half of the cloud's boxes
        cloud = scene(i)
        m.add(i, drop(cloud, [0, 1, 2]), cloud)
    assert m.agreement() == pytest.approx(0.5, abs=0.01)
    assert m.frames() == 4  # the window forgot the frames where they agreed


def test_per_class_agreement_and_low_cloud_scores_are_not_labels():
    m = AgreementMonitor(CLASSES, AgreementConfig(window=5, min_frames=1, label_score=0.5))
    for i in range(5):
        cloud = scene(i, n=4)  # one box of each class
        # the edge misses every helmet-off; the cloud's extra low-score box is not a label the edge must find
        low = Detections(np.vstack([cloud.boxes, [[400, 20, 440, 100]]]), np.append(cloud.scores, 0.2),
                         np.append(cloud.labels, 1))
        m.add(i, drop(cloud, [0, 1, 2]), low)
    per = m.per_class()
    assert per["person"] == per["helmet"] == per["helmet-on"] == 1.0
    assert per["helmet-off"] == 0.0
    assert m.agreement() == pytest.approx(0.75, abs=0.01)


def test_a_class_the_cloud_did_not_see_is_undefined_not_zero():
    m = AgreementMonitor(CLASSES, AgreementConfig(window=2, min_frames=1))
    cloud = drop(scene(0), [0, 4])  # two persons
    m.add(0, cloud, cloud)
    assert m.per_class() == {"person": 1.0, "helmet": None, "helmet-on": None, "helmet-off": None}
    lines = "\n".join(m.prometheus_lines())
    assert 'mlkit_joint_agreement_class{source="audit",class="person"} 1.0' in lines
    assert 'class="helmet"' not in lines  # undefined values are left out
    assert 'mlkit_joint_agreement{source="audit"} 1.0' in lines and "mlkit_joint_agreement_alarm 0" in lines


def test_alarm_waits_for_min_frames_fires_once_and_does_not_flap():
    events = []
    cfg = AgreementConfig(window=3, threshold=0.6, min_frames=3, clear_margin=0.2)
    m = AgreementMonitor(CLASSES, cfg, on_alarm=events.append)
    for i in range(2):  # bad from the start, but too few frames to judge
        m.add(i, drop(scene(i), [0]), scene(i))
    assert not m.alarm
    m.add(2, drop(scene(2), [0]), scene(2))
    assert m.alarm and m.alarm_frame == 2 and [e.raised for e in events] == [True]
    # agreement hovering just above the threshold does not clear it (hysteresis) ...
    half_plus = [0, 1, 2, 3]  # half the persons and helmets, all the rest: 0.75 < 0.6 + 0.2
    for i in range(3, 9):
        m.add(i, drop(scene(i), half_plus), scene(i))
        assert m.alarm
    assert m.alarms == 1 and len(events) == 1
    # ... full agreement does, once
    for i in range(9, 12):
        m.add(i, scene(i), scene(i))
    assert not m.alarm and [e.raised for e in events] == [True, False] and events[1].frame_index == 9
    assert m.alarm_frame == 2  # the last raise is kept for the record


def test_patience_needs_consecutive_bad_evaluations(caplog):
    m = AgreementMonitor(CLASSES, AgreementConfig(window=1, min_frames=1, patience=2))
    caplog.set_level(logging.WARNING, "mlkit.joint.agreement")
    m.add(0, drop(scene(0), [0]), scene(0))
    m.add(1, scene(1), scene(1))
    m.add(2, drop(scene(2), [0]), scene(2))
    assert not m.alarm
    m.add(3, drop(scene(3), [0]), scene(3))
    assert m.alarm and m.alarm_frame == 3
    assert "agreement alarm at frame 3" in caplog.text and "stale" in caplog.text


def test_hard_frames_have_their_own_window_and_threshold():
    cfg = AgreementConfig(window=4, min_frames=2, hard_window=4, hard_min_frames=2, hard_threshold=0.4)
    m = AgreementMonitor(CLASSES, cfg)
    for i in range(4):  # hard frames agree on half the boxes: low, but above the hard threshold
        m.add(i, drop(scene(i), [0, 1, 2]), scene(i), kind="hard")
    assert not m.alarm and m.agreement("hard") == pytest.approx(0.5, abs=0.01) and m.agreement() is None
    for i in range(4, 6):
        m.add(i, drop(scene(i), [0]), scene(i), kind="hard")
    assert m.alarm and m.alarm_stream == "hard"
    snap = m.snapshot()
    assert snap["hard_frames"] == 4 and snap["audit_frames"] == 0 and snap["agreement"] is None
    assert snap["alarm"] and snap["alarm_frame"] == 5
    json.dumps(snap)  # the record is plain JSON

    off = AgreementMonitor(CLASSES, AgreementConfig(use_hard=False, hard_min_frames=1))
    for i in range(6):
        off.add(i, drop(scene(i), [0]), scene(i), kind="hard")
    assert not off.alarm and off.agreement("hard") is not None  # still reported


def test_reset_forgets_frames_and_alarm():
    m = AgreementMonitor(CLASSES, AgreementConfig(window=1, min_frames=1))
    m.add(0, Detections(), scene(0))
    assert m.alarm and m.agreement() == 0.0
    m.reset()
    assert not m.alarm and m.agreement() is None and m.snapshot()["alarms"] == 0


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"window": 0}, "window must be an integer >= 1"),
    ({"window": 2, "min_frames": 3}, "must not exceed window"),
    ({"threshold": 1.5}, "threshold must be in [0, 1]"),
    ({"label_score": -0.1}, "label_score must be in [0, 1]"),
])
def test_bad_config_is_refused_with_the_reason(kwargs, needle):
    with pytest.raises(MlkitError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        AgreementConfig(**kwargs)


def test_bad_frames_are_refused():
    m = AgreementMonitor(CLASSES)
    with pytest.raises(MlkitError, match="unknown frame kind 'easy'"):
        m.add(0, scene(0), scene(0), kind="easy")
    with pytest.raises(MlkitError, match="cloud class id is outside 0..3"):
        m.add(0, scene(0), Detections([[0, 0, 5, 5]], [0.9], [7]))


@pytest.mark.parametrize("share", [0.02, 0.1, 0.5])
def test_audit_sampler_share_is_met_and_spread_evenly(share):
    sampler = AuditSampler(share, seed=3)
    picked = np.flatnonzero([sampler.audit(i) for i in range(5000)])
    assert len(picked) / 5000 == pytest.approx(share, abs=0.002)
    gaps = np.diff(picked)
    assert gaps.max() <= 2 / share and len(set(gaps.tolist())) <= 3  # three-gap theorem: no long droughts


def test_audit_sampler_is_deterministic_seedable_and_not_the_keyframe_sequence():
    a, b = AuditSampler(0.05, seed=1), AuditSampler(0.05, seed=2)
    first = [i for i in range(2000) if a.audit(i)]
    assert first == [i for i in range(2000) if AuditSampler(0.05, seed=1).audit(i)]
    assert first != [i for i in range(2000) if b.audit(i)]
    keyframes = {i for i in range(2000) if (i * 0.6180339887498949) % 1.0 < 0.25}  # Keyframe at 25 %
    overlap = len(set(first) & keyframes) / len(first)
    assert 0.1 < overlap < 0.4  # about the keyframe ratio: the audits do not follow the uploads
    assert not any(AuditSampler(0.0).audit(i) for i in range(500))
    assert all(AuditSampler(1.0).audit(i) for i in range(500))
    with pytest.raises(MlkitError, match="audit share must be in"):
        AuditSampler(2)


def test_write_agreement_is_atomic_json_in_the_store(tmp_path):
    m = AgreementMonitor(CLASSES, AgreementConfig(window=2, min_frames=1))
    m.add(7, scene(7), scene(7))
    path = write_agreement(tmp_path / "store", m.snapshot(), model="little v3")
    assert path == tmp_path / "store" / AGREEMENT_FILE
    data = json.loads(path.read_text())
    assert data["agreement"] == 1.0 and data["model"] == "little v3" and data["last_frame"] == 7
    assert data["written"] and [p.name for p in path.parent.iterdir()] == [AGREEMENT_FILE]  # no temp left


def test_good_hard_frames_alone_do_not_clear_an_alarm_until_a_fresh_audit_window_agrees():
    cfg = AgreementConfig(window=2, min_frames=2, threshold=0.5, hard_window=2, hard_min_frames=2, hard_threshold=0.3)
    m = AgreementMonitor(CLASSES, cfg)
    m.add(0, drop(scene(0), [0]), scene(0))
    m.add(50, drop(scene(1), [0]), scene(1))
    assert m.alarm and m.alarm_stream == "audit"
    for i in range(51, 60):  # the hard frames agree again, but no audit has been seen since the alarm
        m.add(i, scene(i), scene(i), kind="hard")
    assert m.alarm
    m.add(100, scene(100), scene(100))  # one good audit: the audit window still holds one from before
    assert m.alarm
    m.add(150, scene(150), scene(150))
    assert not m.alarm and m.alarms == 1
