"""A joint run's results with late answers from the offline queue read as one record per frame."""

from __future__ import annotations

import json

from mlkit.viz.records import load_joint_records

BOX = [{"label": "person", "class_id": 0, "score": 0.9, "box": [1, 2, 30, 40]}]


def frame(i: int, cloud=None) -> dict:
    return {"frame": i, "timestamp": i / 10, "is_hard": cloud is not None or i == 1, "hem_score": 0.5, "source": "edge",
            "fallback": "connection" if i == 1 else None, "edge": [], "cloud": cloud, "final": cloud or []}


def test_a_late_answer_completes_its_frame_and_an_earlier_run_s_is_left_out(tmp_path):
    late = {**frame(1, BOX), "source": "cloud-late", "cloud_ms": 12.5, "earlier_run": False}
    other = {**frame(2, BOX), "source": "cloud-late", "earlier_run": True}  # frame 2 of another results file
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in (frame(0), frame(1), frame(2), late, other)))
    records = load_joint_records(path)
    assert [r.frame for r in records] == [0, 1, 2]
    assert records[1].late and records[1].cloud_ms == 12.5 and len(records[1].final) == 1
    assert not records[2].late and records[2].cloud is None and len(records[2].final) == 0
