"""Synthetic labelled video: determinism, motion, labels on every frame, OpenCV round trip, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlkit.data.dataset import HELMET_CLASSES, Dataset, read_rgb
from mlkit.data.synthetic.scene import PERSON
from mlkit.data.synthetic.video import (
    VideoLabels,
    VideoSpec,
    extract_frames,
    labels_path_for,
    render_frames,
    render_video,
)
from mlkit.errors import MlkitError

SMALL = VideoSpec(frames=20, fps=10.0, width=256, height=192, seed=3, workers=4)


def _labels(spec: VideoSpec) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(b, lab) for _, b, lab in render_frames(spec)]


@pytest.fixture(scope="module")
def frames() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    return list(render_frames(SMALL))


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, VideoLabels]:
    path = tmp_path_factory.mktemp("video") / "clip.avi"
    return path, render_video(path, SMALL, show_progress=False)


def test_same_seed_same_frames_and_labels(frames) -> None:
    again = list(render_frames(SMALL))
    assert len(again) == len(frames) == SMALL.frames
    np.testing.assert_array_equal(again[0][0], frames[0][0])
    np.testing.assert_array_equal(again[-1][0], frames[-1][0])
    for (_, b1, l1), (_, b2, l2) in zip(frames, again, strict=True):
        np.testing.assert_array_equal(b1, b2)
        np.testing.assert_array_equal(l1, l2)


def test_different_seed_different_labels(frames) -> None:
    other = _labels(VideoSpec(frames=SMALL.frames, width=256, height=192, seed=4, workers=4))
    same = all(
        b1.shape == b2.shape and np.array_equal(b1, b2) and np.array_equal(l1, l2)
        for (_, b1, l1), (b2, l2) in zip(frames, other, strict=True)
    )
    assert not same


def test_every_frame_labelled_inside_image_and_workers_move(frames) -> None:
    centres = []
    for rgb, boxes, labels in frames:
        assert rgb.shape == (SMALL.height, SMALL.width, 3) and rgb.dtype == np.uint8
        assert boxes.dtype == np.float32 and labels.dtype == np.int64 and len(boxes) == len(labels)
        assert (labels == PERSON).sum() >= 1  # at least one worker in view on every frame
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
        assert (boxes[:, 2] <= SMALL.width).all() and (boxes[:, 3] <= SMALL.height).all()
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        person = boxes[labels == PERSON]
        centres.append(np.sort((person[:, 0] + person[:, 2]) / 2))
    # between the first and the last frame, some worker has moved (or a new one came in)
    assert not (len(centres[0]) == len(centres[-1]) and np.allclose(centres[0], centres[-1], atol=1.0))
    # and the motion is smooth: consecutive frames mostly differ by a few pixels at most
    steps = [np.abs(a - b).max() for a, b in zip(centres[:-1], centres[1:], strict=True) if len(a) == len(b)]
    assert steps and np.median(steps) < 15


def test_video_file_opens_with_opencv(video) -> None:
    import cv2

    path, labels = video
    assert path.is_file() and labels_path_for(path).is_file()
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp files left
    cap = cv2.VideoCapture(str(path))
    try:
        assert cap.isOpened()
        assert int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == SMALL.width
        assert int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == SMALL.height
        assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(SMALL.fps, rel=0.01)
        n = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            assert frame.shape == (SMALL.height, SMALL.width, 3)
            n += 1
    finally:
        cap.release()
    assert n == SMALL.frames


def test_labels_json_round_trip(video, frames) -> None:
    path, labels = video
    data = json.loads(labels_path_for(path).read_text())
    assert data["frames"] == SMALL.frames and data["width"] == SMALL.width and data["height"] == SMALL.height
    assert data["fps"] == SMALL.fps and data["site"] == "A" and data["seed"] == SMALL.seed
    assert data["class_names"] == list(HELMET_CLASSES)
    assert [a["frame"] for a in data["annotations"]] == list(range(SMALL.frames))
    loaded = VideoLabels.load(labels_path_for(path))
    assert len(loaded) == SMALL.frames and loaded.num_boxes == labels.num_boxes > 0
    for (b1, l1), (_, b2, l2) in zip(loaded.frames, frames, strict=True):
        np.testing.assert_allclose(b1, b2)
        np.testing.assert_array_equal(l1, l2)


def test_extract_frames(video, tmp_path: Path) -> None:
    path, labels = video
    ds = extract_frames(path, labels, tmp_path / "frames", every=3, limit=5, show_progress=False)
    assert isinstance(ds, Dataset) and len(ds) == 5
    assert [r.meta["frame"] for r in ds] == [0, 3, 6, 9, 12]
    assert ds.num_boxes == sum(len(labels.frames[i][1]) for i in (0, 3, 6, 9, 12))
    rec = ds[2]
    np.testing.assert_array_equal(rec.labels, labels.frames[6][1])
    assert rec.path.parent == tmp_path / "frames" / "images" and rec.path.suffix == ".jpg"
    assert read_rgb(rec.path).shape == (SMALL.height, SMALL.width, 3)
    # labels=None reads the JSON next to the video; every frame by default
    assert len(extract_frames(path, None, tmp_path / "all", show_progress=False)) == SMALL.frames


def test_extract_frames_errors(video, tmp_path: Path) -> None:
    path, labels = video
    longer = VideoLabels(labels.frames + labels.frames[:1], labels.fps, labels.width, labels.height)
    with pytest.raises(MlkitError, match="labels describe 21"):
        extract_frames(path, longer, tmp_path / "x", show_progress=False)
    with pytest.raises(MlkitError, match="not found"):
        extract_frames(tmp_path / "nope.avi", labels, tmp_path / "x", show_progress=False)
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"not a video at all")
    with pytest.raises(MlkitError, match="junk.avi"):
        extract_frames(junk, labels, tmp_path / "x", show_progress=False)


def test_mp4v(tmp_path: Path) -> None:
    import cv2

    spec = VideoSpec(frames=3, width=128, height=96, codec="mp4v")
    labels = render_video(tmp_path / "c.mp4", spec, show_progress=False)
    assert len(labels) == 3 and (tmp_path / "c.labels.json").is_file()
    cap = cv2.VideoCapture(str(tmp_path / "c.mp4"))
    assert cap.isOpened() and cap.read()[0]
    cap.release()
    with pytest.raises(MlkitError, match=r"\.mp4"):
        render_video(tmp_path / "c.avi", spec, show_progress=False)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"frames": 0}, "frames"),
        ({"fps": 0}, "fps"),
        ({"width": 63}, "width"),
        ({"height": 5000}, "height"),
        ({"site": "Z"}, "unknown site"),
        ({"workers": 0}, "workers"),
        ({"codec": "XVID"}, "codec"),
    ],
)
def test_bad_spec(kwargs: dict, match: str) -> None:
    with pytest.raises(MlkitError, match=match):
        VideoSpec(**kwargs)


def test_labels_load_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(MlkitError, match="missing.labels.json"):
        VideoLabels.load(tmp_path / "missing.labels.json")
    bad = tmp_path / "bad.labels.json"
    bad.write_text('{"fps": 15, "width": ')
    with pytest.raises(MlkitError, match="bad.labels.json.*JSON"):
        VideoLabels.load(bad)
    other = tmp_path / "other.json"
    other.write_text('{"images": []}')
    with pytest.raises(MlkitError, match="other.json.*missing"):
        VideoLabels.load(other)
    mismatch = tmp_path / "mismatch.json"
    mismatch.write_text(json.dumps({"fps": 15, "width": 64, "height": 64, "frames": 1,
                                    "annotations": [{"frame": 0, "boxes": [[0, 0, 5, 5]], "labels": []}]}))
    with pytest.raises(MlkitError, match="mismatch.json.*1 boxes but 0 labels"):
        VideoLabels.load(mismatch)


def test_writer_that_cannot_open_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cv2

    class Closed:
        def __init__(self, *args, **kwargs) -> None:
            pass

        def isOpened(self) -> bool:
            return False

        def release(self) -> None:
            pass

    monkeypatch.setattr(cv2, "VideoWriter", Closed)
    with pytest.raises(MlkitError, match="cannot write MJPG"):
        render_video(tmp_path / "v.avi", VideoSpec(frames=1, width=64, height=64), show_progress=False)
    assert list(tmp_path.iterdir()) == []  # no video, no labels, no temp file
