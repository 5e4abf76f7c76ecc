"""Tracked reuse (mlkit.joint.track): cloud boxes carried by the optical flow, offline and in the worker."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mlkit.detections import Detections
from mlkit.joint.cloud import CloudClient, CloudConfig
from mlkit.joint.reuse import final_sequence
from mlkit.joint.track import CloudTracks, box_flow, track_back
from mlkit.joint.worker import JointWorker, WorkerConfig
from mlkit.mining import build_filter
from tests.joint.conftest import first_result_timing, run_worker

SIZE = 40
VELOCITY = np.array([3.0, 2.0], np.float32)
START = np.array([30.0, 20.0], np.float32)


def moving_square(n: int) -> tuple[list[np.ndarray], np.ndarray]:
    """``n`` gray frames of a textured square moving at ``VELOCITY`` over a textured still background, and the
    square's true box on each frame."""
    rng = np.random.default_rng(0)
    background = cv2.GaussianBlur(rng.integers(0, 256, (160, 220), dtype=np.uint8), (5, 5), 1.5)
    patch = cv2.GaussianBlur(rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8), (5, 5), 1.5)
    frames, boxes = [], []
    for t in range(n):
        x, y = START + VELOCITY * t
        shift = np.float32([[1, 0, x], [0, 1, y]])
        moved = cv2.warpAffine(patch, shift, (220, 160))
        mask = cv2.warpAffine(np.full_like(patch, 255), shift, (220, 160)) > 127
        frame = background.copy()
        frame[mask] = moved[mask]
        frames.append(frame)
        boxes.append([x, y, x + SIZE, y + SIZE])
    return frames, np.array(boxes, np.float32)


def one(box, score=0.9, label=0) -> Detections:
    return Detections(np.array([box], np.float32), np.array([score], np.float32), np.array([label]))


NONE = Detections()


def test_box_flow_measures_the_displacement_of_a_moving_square():
    frames, truth = moving_square(2)
    flow, ok = box_flow(frames[0], frames[1], truth[:1])
    assert ok.all()
    np.testing.assert_allclose(flow[0], VELOCITY, atol=0.3)


def test_tracked_boxes_follow_the_object_with_images_and_its_velocity_without():
    frames, truth = moving_square(12)
    tracks = CloudTracks(reach=8)
    assert tracks.step(0, one(truth[0]), frames[0]) is None  # an answered frame keeps its own answer
    for t in range(1, 8):
        boxes = tracks.step(t, None, frames[t])
        np.testing.assert_allclose(boxes.boxes[0], truth[t], atol=1.0)
        assert boxes.scores[0] < 0.9  # fades with age
    assert tracks.answer_index == 0
    # Without images, two answers give the velocity: constant motion is extrapolated exactly.
    blind = CloudTracks(reach=8)
    blind.step(0, one(truth[0]))
    assert blind.step(1, None).boxes[0].tolist() == truth[0].tolist()  # no velocity yet: held
    blind.step(4, one(truth[4]))
    np.testing.assert_allclose(blind.step(7, None).boxes[0], truth[7], atol=1e-4)


def test_an_answer_older_than_the_reach_is_dropped_and_frames_must_come_in_order():
    frames, truth = moving_square(5)
    tracks = CloudTracks(reach=2)
    tracks.step(0, one(truth[0]), frames[0])
    assert tracks.step(2, None, frames[2]) is not None
    assert tracks.step(3, None, frames[3]) is None and tracks.answer_index is None
    with pytest.raises(ValueError, match="frames must come in order, each once: frame 3 after frame 3"):
        tracks.step(3, None, frames[3])


def test_track_back_carries_a_later_answer_to_earlier_frames():
    frames, truth = moving_square(8)
    back = track_back(one(truth[7]), [frames[7], frames[6], frames[5], frames[4]])
    assert len(back) == 3
    for k, det in enumerate(back, start=1):
        np.testing.assert_allclose(det.boxes[0], truth[7 - k], atol=1.0)
    assert back[0].scores[0] > back[2].scores[0]


def test_track_is_causal_and_track_interpolate_uses_the_next_answer():
    frames, truth = moving_square(12)
    edge = [NONE] * 12
    cloud = [one(b) for b in truth]
    hard = np.zeros(12, bool)
    hard[[0, 6]] = True
    tracked = final_sequence(edge, cloud, hard, "track", 8, images=frames)
    for t in range(1, 12):
        np.testing.assert_allclose(tracked[t].boxes[0], truth[t], atol=1.5)
    # What comes after a frame never changes its result: drop the later upload, or answer it with another box.
    later = list(cloud)
    later[6] = one(truth[6] + 30, label=1)
    for other_hard, other_cloud in ((hard & (np.arange(12) < 6), cloud), (hard, later)):
        again = final_sequence(edge, other_cloud, other_hard, "track", 8, images=frames.__getitem__)
        for t in range(6):
            np.testing.assert_array_equal(again[t].boxes, tracked[t].boxes)
            np.testing.assert_array_equal(again[t].scores, tracked[t].scores)
    # track-interpolate: a box only one answer has serves the frames nearer to that answer (as interpolate does),
    # so the next answer's reaches back to the frames before it.
    both = final_sequence(edge, later, hard, "track-interpolate", 8, images=frames)
    assert both[2].labels.tolist() == [0] and both[4].labels.tolist() == [1]
    np.testing.assert_allclose(both[4].boxes[0], truth[6] + 30, atol=1.0)  # on the still background: not moved
    assert tracked[4].labels.tolist() == [0]


# --- the worker ----------------------------------------------------------------------------------------------------

KEYFRAMES = {"method": "Keyframe", "param": {"keyframe_ratio": 0.34}}
UPLOADED = [0, 2, 5, 7, 10]


@pytest.mark.parametrize("rule", ["track", "track-interpolate"])
def test_the_worker_gives_what_the_offline_evaluation_measures(rule, edge_model, frames, cloud_server):
    with CloudClient(CloudConfig(cloud_server.url, "big", timeout_s=60, score_threshold=0.05,
                                 max_in_flight=len(frames))) as cloud:
        results, stats = run_worker(edge_model, frames, cloud, KEYFRAMES, None,
                                    WorkerConfig(report_every_s=0, reuse=rule))
    assert [r.index for r in results if r.source == "cloud"] == UPLOADED
    reused = {r.index: r.reused_from for r in results if r.source == "reused"}
    assert set(reused) == set(range(len(frames))) - set(UPLOADED)
    if rule == "track":
        assert reused[4] == (2,) and reused[11] == (10,)
    else:
        assert reused[4] == (2, 5) and reused[11] == (10,)
    assert stats["reused_frames"] == len(reused)
    offline = final_sequence([r.edge for r in results], [r.cloud for r in results],
                             [r.source == "cloud" for r in results], rule, reach=8,
                             images=[f.image for f in frames])
    for r, want in zip(results, offline, strict=True):
        np.testing.assert_allclose(r.final.boxes, want.boxes, atol=1e-4)
        np.testing.assert_allclose(r.final.scores, want.scores, atol=1e-6)


def test_track_releases_a_frame_before_the_next_upload_is_answered(edge_model, frames, slow_server):
    """Frame 0 is not uploaded, frame 1 is (held 3 s by the server): frame 0's result comes before frame 1 is even
    read. An order of events, not a duration."""
    hem = build_filter(KEYFRAMES)
    hem.score()  # skip keyframe 0: the stream's frame 0 is not uploaded, frame 1 is
    with CloudClient(CloudConfig(slow_server.url, "big", timeout_s=60, max_in_flight=len(frames))) as cloud:
        worker = JointWorker(edge_model, hem, cloud, WorkerConfig(report_every_s=0, reuse="track"))
        pulled, first, first_at, rest = first_result_timing(worker, frames)
    assert first.index == 0 and first_at < pulled[1]
    assert [r.index for r in [first, *rest]] == list(range(len(frames)))
    assert rest[0].source == "cloud" and rest[1].reused_from == (1,)
