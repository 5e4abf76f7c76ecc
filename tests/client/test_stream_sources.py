"""Video sources: live sources drop the oldest frames (counted), files never drop, ends and bad sources."""

from __future__ import annotations

import time

import numpy as np
import pytest

from mlkit.client.video import Frame, SourceEnd, VideoSource, open_source, parse_source
from mlkit.errors import MlkitError


def _source(captures, *, live: bool, queue_size: int = 4, **kw) -> VideoSource:
    """A source over a list of captures: the first on open, the next on each reconnect."""
    pending = list(captures)

    def opener():
        if not pending:
            raise MlkitError("no more captures")
        return pending.pop(0), 100.0, None

    return VideoSource("fake", opener, live=live, queue_size=queue_size, **kw)


def _drain(src: VideoSource, delay: float = 0.0) -> tuple[list[Frame], SourceEnd]:
    frames = []
    with src:
        while True:
            item = src.get(timeout=5)
            assert item is not None, "the source went silent without ending"
            if isinstance(item, SourceEnd):
                return frames, item
            frames.append(item)
            time.sleep(delay)


def test_live_source_keeps_the_latest_frames_and_counts_drops(fake_capture):
    src = _source([fake_capture(300)], live=True, queue_size=4)
    frames, end = _drain(src, delay=0.003)  # a consumer far slower than the producer
    idx = [f.index for f in frames]
    assert src.dropped > 0
    assert len(frames) + src.dropped == 300 == src.read
    assert idx == sorted(set(idx)), "frames must stay in capture order, without repeats"
    assert idx[-1] == 299, "the newest frame must survive; the oldest are the ones dropped"
    assert all(int(f.image[0, 0, 0]) == f.index % 256 for f in frames), "a frame must carry its own image"
    assert end.failed and "stopped sending frames after 300 frames" in end.message


def test_file_source_never_drops_even_when_the_consumer_is_slow(fake_capture):
    src = _source([fake_capture(120)], live=False, queue_size=2)
    frames, end = _drain(src, delay=0.002)
    assert [f.index for f in frames] == list(range(120))
    assert src.dropped == 0
    assert [f.timestamp for f in frames[:3]] == [0.0, 0.01, 0.02]  # position in the video at 100 fps
    assert not end.failed and "end of file after 120 frames" in end.message


def test_realtime_file_runs_at_its_frame_rate(fake_capture):
    src = _source([fake_capture(11)], live=False, realtime=True)  # 100 fps: ~0.1 s for 11 frames
    t0 = time.perf_counter()
    frames, _ = _drain(src)
    took = time.perf_counter() - t0
    assert len(frames) == 11
    assert 0.09 <= took < 1.0
    since_first = np.array([f.captured for f in frames]) - frames[0].captured
    # each frame is read on its schedule (never early), so they do not arrive in a burst
    assert all(since_first[i] >= i * 0.01 - 0.002 for i in range(11)), since_first


def test_live_source_reconnects_then_gives_up(fake_capture):
    src = _source([fake_capture(5), fake_capture(5, start=5)], live=True, queue_size=64, reconnect=2,
                  reconnect_delay=0.01)
    frames, end = _drain(src)
    assert [f.index for f in frames] == list(range(10))
    assert src.reconnects == 2
    assert end.failed and "2 reconnect attempt(s)" in end.message


def test_stop_ends_a_blocked_reader(fake_capture):
    capture = fake_capture(1000)
    src = _source([capture], live=False, queue_size=1).start()
    assert isinstance(src.get(timeout=5), Frame)
    t0 = time.perf_counter()
    src.stop()
    assert time.perf_counter() - t0 < 2
    assert src.read < 1000 and capture.released


@pytest.mark.parametrize(("text", "kind"), [("clip.avi", "file"), ("0", "camera"), ("rtsp://h/s", "url"),
                                            ("https://h/v.mjpg", "url"), ("file:///tmp/a.avi", "file")])
def test_parse_source(text, kind):
    assert parse_source(text)[0] == kind


def test_clip_opens_and_reports_itself(clip):
    src = open_source(clip)
    try:
        assert not src.info.live and src.info.fps == pytest.approx(10.0) and src.info.frames == 36
    finally:
        src.stop()


def test_missing_file(tmp_path):
    with pytest.raises(MlkitError, match="video file not found"):
        open_source(tmp_path / "nope.avi")


def test_undecodable_file(tmp_path):
    bad = tmp_path / "bad.avi"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    with pytest.raises(MlkitError, match="bad.avi"):
        open_source(bad)


def test_unreachable_url():
    from mlkit.serving.server import free_port

    url = f"http://127.0.0.1:{free_port()}/stream.mjpg"  # nothing listens there
    t0 = time.perf_counter()
    with pytest.raises(MlkitError, match="unreachable"):
        open_source(url, open_timeout=3)
    assert time.perf_counter() - t0 < 10


def test_unsupported_scheme():
    with pytest.raises(MlkitError, match="unsupported URL scheme"):
        open_source("ftp://example.org/v.avi")
