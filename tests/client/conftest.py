"""Fixtures for the streaming tests: a short real (or synthetic) clip, the committed edge model, a server."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
VTEST = ROOT / "data" / "vtest.avi"  # `make video-asset`
LITTLE = ROOT / "models" / "little" / "tflite" / "int8"
CLIP_FRAMES = 36


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> Path:
    """A short clip: the first frames of the real vtest.avi when it is there, else a synthetic video."""
    out = tmp_path_factory.mktemp("clip") / "clip.avi"
    if VTEST.is_file():
        from mlkit.client.video import head_clip

        return head_clip(VTEST, out, CLIP_FRAMES)
    from mlkit.data.synthetic.video import VideoSpec, render_video

    render_video(out, VideoSpec(frames=CLIP_FRAMES, fps=10.0, width=384, height=288, seed=1), show_progress=False)
    return out


@pytest.fixture(scope="session")
def clip_frames(clip) -> list[np.ndarray]:
    """Every frame of the clip, RGB, as OpenCV decodes it."""
    import cv2

    cap = cv2.VideoCapture(str(clip))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    assert len(frames) == CLIP_FRAMES
    return frames


@pytest.fixture(scope="session")
def model_repo(tmp_path_factory) -> Path:
    """``<repo>/little/1/`` holding the committed int8 edge model."""
    if not (LITTLE / "model.tflite").is_file():
        pytest.skip(f"{LITTLE} is missing (the committed edge model)")
    repo = tmp_path_factory.mktemp("repo")
    shutil.copytree(LITTLE, repo / "little" / "1")
    return repo


def _start(repo: Path, log_dir: Path, **kw):
    from mlkit.serving.server import start_background_server

    return start_background_server(repo, log_path=log_dir / "server.log", **kw)


@pytest.fixture(scope="session")
def server(model_repo, tmp_path_factory):
    """A real server on 127.0.0.1 with dynamic batching up to 4, shared by the whole folder."""
    handle = _start(model_repo, tmp_path_factory.mktemp("log"), max_batch_size=4, max_latency_ms=5.0)
    yield handle
    handle.stop()


@pytest.fixture
def doomed_server(model_repo, tmp_path):
    """A server of the test's own, for killing mid-stream."""
    handle = _start(model_repo, tmp_path)
    yield handle
    handle.stop()


class FakeCapture:
    """A capture that makes ``n`` frames as fast as asked (frame ``i`` is filled with ``i % 256``), then fails."""

    def __init__(self, n: int, shape: tuple[int, int, int] = (24, 32, 3), start: int = 0) -> None:
        self.n, self.shape, self.i, self.released = n, shape, start, False
        self.end = start + n

    def read(self):
        if self.i >= self.end:
            return False, None
        img = np.full(self.shape, self.i % 256, np.uint8)
        self.i += 1
        return True, img

    def release(self) -> None:
        self.released = True


@pytest.fixture
def fake_capture() -> type[FakeCapture]:
    return FakeCapture
