"""JointInferenceViewer over a joint run's results.jsonl and its video; StreamMonitor over a real stream."""

from __future__ import annotations

import json

import cv2
import numpy as np


def _shape(png: bytes) -> tuple[int, int]:
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR).shape[:2]


def test_joint_viewer_side_by_side_and_hard_only(joint_results, clip):
    from mlkit.viz import JointInferenceViewer

    records = [json.loads(line) for line in joint_results.read_text().splitlines()]
    hard = [r for r in records if r["is_hard"]]
    assert 2 <= len(hard) < len(records), "the fixture should have both easy and hard frames"
    v = JointInferenceViewer.from_results(joint_results, clip, score_threshold=0.3)
    assert v.message == "" and len(v.visible) == len(records)
    assert f"{len(records)} frames, {len(hard)} hard" in v.summary

    v.hard_only.value = True
    assert [r.frame for r in v.visible] == [r["frame"] for r in hard] and v.index.max == len(hard) - 1
    for k, rec in enumerate(hard):
        v.index.value = k
        assert v.current.frame == rec["frame"] and "hard" in v.info.value
        assert len(v.shown["edge"]) == sum(d["score"] >= 0.3 for d in rec["edge"])
        assert _shape(v.edge_image.value) == _shape(v.cloud_image.value) == (240, 320)
        if rec["cloud"] is None:  # the fixture's timeout fallback
            assert v.shown["cloud"] is None and "timeout" in v.cloud_caption.value
        else:
            assert len(v.shown["cloud"]) == sum(d["score"] >= 0.3 for d in rec["cloud"])
    v.score.value = 0.05
    assert len(v.shown["edge"]) == len(v.current.edge.filter(0.05))

    v.hard_only.value = False
    easy = next(i for i, r in enumerate(v.visible) if not r.is_hard)
    v.index.value = easy
    assert v.shown["cloud"] is None and "not sent" in v.cloud_caption.value


def test_joint_viewer_messages(tmp_path, clip, joint_results):
    from mlkit.viz import JointInferenceViewer

    assert "not found" in JointInferenceViewer.from_results(tmp_path / "none.jsonl", clip).message
    (tmp_path / "empty.jsonl").write_text("")
    assert "no frames yet" in JointInferenceViewer.from_results(tmp_path / "empty.jsonl", clip).message
    (tmp_path / "stream.jsonl").write_text('{"frame": 0, "detections": []}\n')
    assert "joint-inference" in JointInferenceViewer.from_results(tmp_path / "stream.jsonl", clip).message
    v = JointInferenceViewer.from_results(joint_results, [])  # no frames for these records
    assert "no image 0" in v.message


def test_stream_monitor_follows_a_real_stream(little_server, clip):
    from mlkit.client.stream import StreamConfig
    from mlkit.client.video import open_source
    from mlkit.viz import StreamMonitor

    monitor = StreamMonitor(refresh=0.0)
    result = monitor.run(open_source(clip), StreamConfig(little_server.url, "little", mode="client", batch_size=2))
    assert result is not None and monitor.message == ""
    assert monitor.stats.completed == result.stats.completed == 12
    assert len(monitor.series) >= 12 and monitor.series[-1].completed == 12  # a point per result, plus the final
    assert monitor.last_frame == 11 and "done:" in monitor.line.value
    h, w = _shape(monitor.chart.value)
    assert (w, h) == monitor.size


def test_stream_monitor_endpoint_down(closed_url, clip):
    from mlkit.client.stream import StreamConfig
    from mlkit.client.video import open_source
    from mlkit.viz import StreamMonitor

    monitor = StreamMonitor()
    assert monitor.run(open_source(clip), StreamConfig(closed_url, "little")) is None
    assert "cannot reach the model server" in monitor.message and monitor.stats.completed == 0
    assert monitor.chart.value == b""
