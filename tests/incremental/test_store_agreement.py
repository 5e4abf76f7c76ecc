"""The worker's agreement.json in the hard-example store: read as trigger metrics, never taken for a hard example."""

from __future__ import annotations

import json

import numpy as np

from mlkit.detections import Detections
from mlkit.incremental.store import read_agreement, read_store
from mlkit.joint.agreement import AGREEMENT_FILE, AgreementConfig, AgreementMonitor, write_agreement

CLASSES = ("person", "helmet", "helmet-on", "helmet-off")


def _snapshot(frames: int, kind: str = "audit") -> dict:
    m = AgreementMonitor(CLASSES, AgreementConfig(window=4, min_frames=3))
    cloud = Detections(np.array([[0, 0, 30, 80], [40, 0, 60, 20]], np.float32), [0.9, 0.8], [0, 1])
    for i in range(frames):
        m.add(i, Detections(cloud.boxes[:1], [0.9], [0]), cloud, kind)
    return m.snapshot()


def test_read_agreement_gives_per_class_lists_once_enough_frames(tmp_path):
    assert read_agreement(tmp_path, CLASSES)[0] == {}
    write_agreement(tmp_path, _snapshot(2))
    metrics, note = read_agreement(tmp_path, CLASSES)
    assert metrics == {} and "only 2 audit frames" in note
    write_agreement(tmp_path, _snapshot(3))
    metrics, note = read_agreement(tmp_path, CLASSES)
    assert metrics == {"agreement": [1.0, 0.0, None, None]} and "agreement 0.500 over 3 audit frames" in note
    assert "agreement_hard: not measured yet" in note


def test_a_window_older_than_the_last_round_is_not_used(tmp_path):
    write_agreement(tmp_path, {**_snapshot(3), "audit_since": "2026-05-01T10:00:00+00:00"})
    assert read_agreement(tmp_path, CLASSES, after="2026-05-01T09:00:00+00:00")[0]
    metrics, note = read_agreement(tmp_path, CLASSES, after="2026-05-01T11:00:00+00:00")
    assert metrics == {} and "began before the last round ended" in note


def test_an_unreadable_file_waits_and_read_store_skips_it(tmp_path):
    (tmp_path / AGREEMENT_FILE).write_text("{not json")
    metrics, note = read_agreement(tmp_path, CLASSES)
    assert metrics == {} and "unreadable" in note
    (tmp_path / AGREEMENT_FILE).write_text(json.dumps({"width": 4, "height": 4, "image": "x.jpg"}))
    (tmp_path / "x.jpg").write_bytes(b"\xff\xd8")
    assert read_store(tmp_path) == []  # the agreement record is not a hard example, whatever it holds


def test_a_malformed_record_is_not_measured(tmp_path):
    (tmp_path / AGREEMENT_FILE).write_text(json.dumps({"agreement": "high", "agreement_per_class": {"person": 1},
                                                       "agreement_hard": 0.2, "agreement_hard_per_class": [],
                                                       "audit_frames": "4"}))
    metrics, note = read_agreement(tmp_path, CLASSES)
    assert metrics == {} and "agreement: not measured yet" in note and "agreement_hard: not measured yet" in note
