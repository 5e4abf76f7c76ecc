"""Reusing cloud answers on nearby frames: the rules (mlkit.joint.reuse) and the worker against a real server."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from mlkit.cli import main
from mlkit.detections import Detections
from mlkit.errors import MlkitError
from mlkit.joint import reuse as reuse_module
from mlkit.joint.cloud import CloudClient, CloudConfig
from mlkit.joint.reuse import UNMATCHED_WEIGHT, PairCache, final_sequence, interpolate, match, merge, reused
from mlkit.joint.worker import JointWorker, WorkerConfig
from mlkit.mining import build_filter
from mlkit.serving.server import free_port
from tests.joint.conftest import first_result_timing, joint_spec, run_worker


def det(*rows) -> Detections:
    """Rows of (xmin, ymin, xmax, ymax, score, label)."""
    arr = np.array(rows, np.float32).reshape(-1, 6)
    return Detections(arr[:, :4], arr[:, 4], arr[:, 5].astype(np.int64))


# --- the rules ------------------------------------------------------------------------------------------------


def test_match_pairs_the_nearest_box_of_the_same_class():
    a = det((10, 10, 20, 20, 0.9, 1), (100, 10, 110, 20, 0.8, 1), (50, 50, 60, 60, 0.7, 2))
    b = det((104, 10, 114, 20, 0.9, 1), (13, 10, 23, 20, 0.9, 1), (50, 50, 60, 60, 0.7, 3))
    # 2 -> class 3 is another class; a head that moved 3-4 px is still paired although its IoU fell to 0.4-0.5
    assert sorted(match(a, b)) == [(0, 1), (1, 0)]


def test_match_refuses_a_box_too_far_away():
    assert match(det((10, 10, 20, 20, 0.9, 1)), det((40, 10, 50, 20, 0.9, 1))) == []
    assert match(det(), det((40, 10, 50, 20, 0.9, 1))) == []


def _walk_every_pair(a: Detections, b: Detections, max_distance: float = 1.0) -> list[tuple[int, int]]:
    """The plain rule ``match`` implements: every same-class pair by centre distance over mean size, nearest
    first (ties in row-major order), each box used once."""
    ca, cb = (a.boxes[:, :2] + a.boxes[:, 2:]) / 2, (b.boxes[:, :2] + b.boxes[:, 2:]) / 2
    sa = np.sqrt(np.prod(np.maximum(a.boxes[:, 2:] - a.boxes[:, :2], 0), axis=1))
    sb = np.sqrt(np.prod(np.maximum(b.boxes[:, 2:] - b.boxes[:, :2], 0), axis=1))
    d = np.linalg.norm(ca[:, None] - cb[None], axis=2) / np.maximum((sa[:, None] + sb[None]) / 2, 1e-6)
    candidates = sorted((float(d[i, j]), i, j) for i in range(len(a)) for j in range(len(b))
                        if a.labels[i] == b.labels[j] and d[i, j] <= max_distance)
    pairs, used_a, used_b = [], set(), set()
    for _, i, j in candidates:
        if i not in used_a and j not in used_b:
            pairs.append((i, j))
            used_a.add(i)
            used_b.add(j)
    return pairs


def test_match_agrees_with_walking_every_pair_on_random_boxes():
    rng = np.random.default_rng(7)
    for _ in range(200):
        sides = []
        for n in rng.integers(0, 14, 2):
            # boxes of a few sizes (empty ones too) on a small grid: exact distance ties that share a box happen
            xy = rng.integers(0, 12, (n, 2)).astype(np.float32)
            wh = rng.choice([0, 4, 6], (n, 2)).astype(np.float32)
            sides.append(Detections(np.concatenate([xy, xy + wh], 1), rng.uniform(0, 1, n), rng.integers(0, 2, n)))
        assert match(*sides) == _walk_every_pair(*sides)


def test_pair_cache_matches_once_for_the_frames_between_two_uploads(monkeypatch):
    calls = []
    monkeypatch.setattr(reuse_module, "match", lambda a, b: calls.append((a, b)) or match(a, b))
    a, b, c = det((10, 10, 20, 20, 0.8, 1)), det((14, 10, 24, 20, 0.8, 1)), det((18, 10, 28, 20, 0.8, 1))
    cache = PairCache()
    assert cache((4, a), (8, b)) == cache((4, a), (8, b)) == [(0, 0)] and len(calls) == 1
    assert cache((8, b), (12, c)) == [(0, 0)] and len(calls) == 2
    assert cache((4, a), None) is None and cache(None, (8, b)) is None and len(calls) == 2
    # the pairs handed in give what interpolate finds by itself
    mid = interpolate(a, c, 0.5, cache((4, a), (12, c)))
    np.testing.assert_array_equal(mid.boxes, interpolate(a, c, 0.5).boxes)
    given, found = reused(det(), (4, a), (12, c), 6, [(0, 0)]), reused(det(), (4, a), (12, c), 6)
    np.testing.assert_array_equal(given.boxes, found.boxes)


def test_interpolate_moves_matched_boxes_in_time_and_keeps_the_rest_from_the_nearer_answer():
    before = det((10, 10, 20, 20, 0.6, 1), (200, 200, 210, 210, 0.5, 0))
    after = det((16, 10, 26, 20, 0.9, 1), (300, 300, 310, 310, 0.7, 2))
    mid = interpolate(before, after, 0.25)
    np.testing.assert_allclose(mid.boxes[0], [11.5, 10, 21.5, 20])
    assert mid.scores[0] == pytest.approx(0.675) and mid.labels[0] == 1
    # w < 0.5: the unmatched box comes from `before`, less sure of itself
    np.testing.assert_allclose(mid.boxes[1], [200, 200, 210, 210])
    assert mid.scores[1] == pytest.approx(0.5 * UNMATCHED_WEIGHT) and len(mid) == 2
    late = interpolate(before, after, 0.75)
    assert late.labels.tolist() == [1, 2]
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        interpolate(before, after, 1.5)


def test_merge_puts_cloud_boxes_first_and_adds_what_only_the_edge_saw():
    cloud = det((10, 10, 20, 20, 0.9, 1))
    edge = det((11, 10, 21, 20, 0.4, 1), (11, 10, 21, 20, 0.6, 2), (80, 80, 90, 90, 0.5, 1))
    out = merge(edge, cloud)
    # the same-class box over the cloud's is dropped; another class in the same place and a new object stay
    assert out.labels.tolist() == [1, 2, 1] and out.scores.tolist() == pytest.approx([0.9, 0.6, 0.5])
    assert merge(det(), cloud) is cloud and merge(edge, det()) is edge


def test_reused_picks_the_rule_from_the_answers_it_has():
    edge = det((80, 80, 90, 90, 0.5, 1))
    a, b = det((10, 10, 20, 20, 0.8, 1)), det((20, 10, 30, 20, 0.8, 1))
    assert reused(edge, None, None, 5) is edge
    np.testing.assert_allclose(reused(edge, (4, a), None, 5).boxes, merge(edge, a).boxes)
    both = reused(edge, (4, a), (8, b), 5)
    np.testing.assert_allclose(both.boxes[0], [12.5, 10, 22.5, 20])
    with pytest.raises(ValueError, match="not between"):
        reused(edge, (4, a), (8, b), 9)


def test_final_sequence_follows_the_rule_within_reach_and_clip():
    edge = [det((50, 50, 60, 60, 0.4, 2)) for _ in range(7)]
    cloud = [det((10 + t, 10, 20 + t, 20, 0.9, 1)) for t in range(7)]
    hard = [True, False, False, True, False, False, False]
    clips = [0, 0, 0, 0, 0, 1, 1]
    assert final_sequence(edge, cloud, hard) == [cloud[0], edge[1], edge[2], cloud[3], edge[4], edge[5], edge[6]]
    held = final_sequence(edge, cloud, hard, "hold", reach=1, clips=clips)
    np.testing.assert_allclose(held[1].boxes, merge(edge[1], cloud[0]).boxes)
    assert held[2] is edge[2] and held[5] is edge[5]  # 2 frames away; another clip
    inter = final_sequence(edge, cloud, hard, "interpolate", reach=8, clips=clips)
    np.testing.assert_allclose(inter[2].boxes[0], [12, 10, 22, 20])  # 2/3 of the way from frame 0 to 3
    np.testing.assert_allclose(inter[4].boxes, merge(edge[4], cloud[3]).boxes)  # nothing after it in its clip
    assert inter[6] is edge[6]
    with pytest.raises(ValueError, match="one entry per frame"):
        final_sequence(edge, cloud, hard[:3])
    with pytest.raises(ValueError, match="reuse must be one of"):
        final_sequence(edge, cloud, hard, "always")


def test_worker_config_checks_the_reuse_fields():
    with pytest.raises(MlkitError,
                       match="reuse must be one of none, hold, interpolate, track, track-interpolate; got 'sometimes'"):
        WorkerConfig(reuse="sometimes")
    with pytest.raises(MlkitError, match="reuse_frames must be an integer >= 1"):
        WorkerConfig(reuse="hold", reuse_frames=0)


# --- the worker -----------------------------------------------------------------------------------------------

# Keyframe at 0.34 makes frames 0, 2, 5, 7 and 10 of 12 hard (frac(n * 0.618) < 0.34)
KEYFRAMES = {"method": "Keyframe", "param": {"keyframe_ratio": 0.34}}
UPLOADED = [0, 2, 5, 7, 10]


def run(edge_model, frames, cloud, config, out_dir=None):
    return run_worker(edge_model, frames, cloud, KEYFRAMES, out_dir, config)


def test_interpolate_serves_every_frame_from_the_uploads_around_it(edge_model, frames, cloud_server, tmp_path):
    with CloudClient(CloudConfig(cloud_server.url, "big", timeout_s=60, score_threshold=0.05,
                                 max_in_flight=len(frames))) as cloud:
        results, stats = run(edge_model, frames, cloud, WorkerConfig(report_every_s=0, reuse="interpolate"),
                             tmp_path)
    assert [r.index for r in results] == list(range(len(frames)))
    assert [r.index for r in results if r.source == "cloud"] == UPLOADED
    expected = {1: (0, 2), 3: (2, 5), 4: (2, 5), 6: (5, 7), 8: (7, 10), 9: (7, 10), 11: (10,)}  # 11: no later upload
    assert {r.index: r.reused_from for r in results if r.source == "reused"} == expected
    for i, near in expected.items():
        answers = [(u, results[u].cloud) for u in near]
        want = reused(results[i].edge, answers[0], answers[1] if len(answers) > 1 else None, i)
        np.testing.assert_allclose(results[i].final.boxes, want.boxes)
        np.testing.assert_allclose(results[i].final.scores, want.scores)
    assert stats["reused_frames"] == len(expected) and stats["cloud_results"] == len(UPLOADED)
    # the offline evaluation applies the same rule: the same finals from the same answers
    offline = final_sequence([r.edge for r in results], [r.cloud for r in results],
                             [r.source == "cloud" for r in results], "interpolate", reach=8)
    for r, want in zip(results, offline, strict=True):
        np.testing.assert_allclose(r.final.boxes, want.boxes)
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(len(frames)))
    assert records[3]["source"] == "reused" and records[3]["reused_from"] == [2, 5]
    assert records[3]["final"] == results[3].final.to_list(edge_model.meta.class_names)
    assert len(list((tmp_path / "all_examples_inference_output").glob("*.jpg"))) == len(frames)


def test_a_worker_run_again_does_not_reuse_the_last_run_s_matches(edge_model, frames, cloud_server):
    # Frame indices start at 0 in every run: matches kept from a run over other images must not serve the next.
    import dataclasses

    from mlkit.joint.worker import JointWorker

    # three other images, uploads at 0 and 2: this run's last match is for frames (0, 2), as the next run's first
    others = [dataclasses.replace(f, index=i) for i, f in enumerate(frames[::-1][:3])]
    with CloudClient(CloudConfig(cloud_server.url, "big", timeout_s=60, score_threshold=0.05,
                                 max_in_flight=len(frames))) as cloud:
        worker = JointWorker(edge_model, build_filter(KEYFRAMES), cloud, WorkerConfig(report_every_s=0,
                                                                                        reuse="interpolate"))
        list(worker.run(others))
        worker.hem = build_filter(KEYFRAMES)
        results = list(worker.run(frames))
    want = final_sequence([r.edge for r in results], [r.cloud for r in results],
                          [r.source == "cloud" for r in results], "interpolate", reach=8)
    for r, w in zip(results, want, strict=True):
        np.testing.assert_allclose(r.final.boxes, w.boxes)
        np.testing.assert_allclose(r.final.scores, w.scores)


def test_hold_reuses_only_an_answer_within_reach(edge_model, frames, cloud_server):
    with CloudClient(CloudConfig(cloud_server.url, "big", timeout_s=60, max_in_flight=len(frames))) as cloud:
        results, stats = run(edge_model, frames, cloud,
                             WorkerConfig(report_every_s=0, reuse="hold", reuse_frames=1))
    assert {r.index: r.reused_from for r in results if r.source == "reused"} == {
        1: (0,), 3: (2,), 6: (5,), 8: (7,), 11: (10,)}
    assert all(r.final is r.edge for r in results if r.index in (4, 9))  # two frames after an upload: out of reach
    assert stats["reused_frames"] == 5


def test_interpolate_holds_results_back_but_never_the_edge_loop(edge_model, frames, slow_server):
    """Frame 0 waits for frame 1's answer (held 3 s); meanwhile the edge judges every other frame.

    This asserts an order of events, not a duration (see test_worker's twin for CloudOnly).
    """
    hem = build_filter(KEYFRAMES)
    hem.score()  # skip keyframe 0: the stream's frame 0 is not uploaded, frame 1 is
    with CloudClient(CloudConfig(slow_server.url, "big", timeout_s=60, max_in_flight=len(frames))) as cloud:
        worker = JointWorker(edge_model, hem, cloud, WorkerConfig(report_every_s=0, reuse="interpolate"))
        pulled, first, first_at, rest = first_result_timing(worker, frames)
    assert len(pulled) == len(frames) and pulled[-1] < first_at
    assert first.index == 0 and first.source == "reused" and first.reused_from == (1,)
    assert [r.index for r in [first, *rest]] == list(range(len(frames)))


def test_interpolate_with_the_cloud_down_keeps_edge_results_and_ends(edge_model, frames):
    with CloudClient(CloudConfig(f"http://127.0.0.1:{free_port()}", "big", timeout_s=2,
                                 max_in_flight=len(frames))) as cloud:
        results, stats = run(edge_model, frames, cloud, WorkerConfig(report_every_s=0, reuse="interpolate"))
    assert [r.index for r in results] == list(range(len(frames)))
    assert all(r.final is r.edge and not r.reused_from for r in results)
    assert stats["fallback_reasons"] == {"connection": len(UPLOADED)} and stats["reused_frames"] == 0


def test_spec_reuse_keys_reach_the_worker_and_bad_values_are_usage_errors(video, cloud_server, tmp_path):
    keyframes = {"name": "Keyframe", "parameters": [{"key": "keyframe_ratio", "value": "0.34"}]}
    config = joint_spec(tmp_path, video, cloud_server.url, keyframes, (("reuse", "interpolate"),))
    result = CliRunner().invoke(main, ["joint", "run", str(config), "--no-progress"])
    assert result.exit_code == 0, result.output
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["frames"] == 10 and stats["reused_frames"] == 10 - stats["cloud_results"] > 0
    assert "reused answers" in result.output
    joint_spec(tmp_path, video, cloud_server.url, keyframes, (("reuse", "always"),))
    bad = CliRunner().invoke(main, ["joint", "run", str(config), "--no-progress"])
    assert bad.exit_code == 2
    assert "reuse must be one of none, hold, interpolate, track, track-interpolate; got 'always'" in bad.output
    assert "Traceback" not in bad.output
