"""Stream statistics: completed-frame FPS (overall and windowed), capture-to-result latency, send rate."""

from __future__ import annotations

import math

import pytest

from mlkit.client.stats import Reporter, StreamStats


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_fps_counts_completed_frames_not_sent_ones():
    clock = Clock()
    s = StreamStats(window=2.0, clock=clock)
    s.begin(100.0)
    s.on_sent(40, at=101.0)  # all sent within a second, like a client that does not wait
    for i in range(10):  # but only one result every 0.5 s, each 1 s after its capture
        s.on_result(captured=100.0 + 0.5 * i, done=101.0 + 0.5 * i)
    clock.t = 105.5
    snap = s.snapshot()
    assert snap.completed == 10 and snap.sent == 40
    assert snap.fps == pytest.approx(10 / 5.5)
    assert snap.send_rate == pytest.approx(40 / 1.0)
    assert snap.window_fps == pytest.approx(4 / 2.0)  # results at 104.0, 104.5, 105.0, 105.5
    assert snap.p50_ms == pytest.approx(1000) and snap.p99_ms == pytest.approx(1000)


def test_window_goes_quiet_when_results_stop():
    clock = Clock()
    s = StreamStats(window=1.0, clock=clock)
    for i in range(5):
        s.on_result(captured=100.0 + 0.1 * i, done=100.1 + 0.1 * i)
    clock.t = 110.0
    assert s.snapshot().window_fps == 0.0
    final = s.snapshot(final=True)  # a finished run is measured up to its last result
    assert final.fps == pytest.approx(5 / 0.5)


def test_latency_percentiles():
    s = StreamStats(clock=Clock())
    for ms in range(1, 101):
        s.on_result(captured=0.0, done=ms / 1000)
    snap = s.snapshot(final=True)
    assert snap.p50_ms == pytest.approx(50.5) and snap.p95_ms == pytest.approx(95.05)
    assert snap.p99_ms == pytest.approx(99.01)


def test_empty_stats_are_nan_not_zero():
    snap = StreamStats(clock=Clock()).snapshot()
    assert snap.completed == 0 and snap.fps == 0.0 and math.isnan(snap.p95_ms)
    assert snap.to_dict()["p95_ms"] is None


def test_reporter_prints_every_interval():
    clock = Clock()
    s = StreamStats(clock=clock)
    lines: list[str] = []
    rep = Reporter(s, interval=1.0, echo=lines.append, progress=False)
    s.on_result(captured=99.9, done=100.0)
    rep.update(1)
    assert lines == []
    clock.t = 101.2
    rep.update(0)
    clock.t = 101.5
    rep.update(0)
    assert len(lines) == 1 and "1 frames" in lines[0] and "end-to-end" in lines[0] and "dropped 0" in lines[0]
