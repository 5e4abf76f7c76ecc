"""Streaming through a real server: every frame once, frame order under concurrency, live drops, failures."""

from __future__ import annotations

import asyncio
import json
import random

import numpy as np
import pytest

from mlkit.client.http import AsyncServingClient, ServingClient
from mlkit.client.stream import StreamConfig, StreamError, run_stream
from mlkit.client.video import VideoSource, open_source
from mlkit.detections import Detections

NAMES = ("person", "helmet", "helmet-on", "helmet-off")


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize(("mode", "batch", "protocol"), [("server", 4, "v2"), ("server", 2, "v1"),
                                                          ("client", 5, "v2"), ("client", 4, "v1")])
def test_every_frame_of_a_file_yields_exactly_one_result(server, clip, tmp_path, mode, batch, protocol):
    cfg = StreamConfig(server.url, "little", mode=mode, batch_size=batch, protocol=protocol)
    res = run_stream(open_source(clip), cfg, output_dir=tmp_path, class_names=NAMES, echo=None, progress=False)
    lines = _lines(tmp_path / "results.jsonl")
    assert [r["frame"] for r in lines] == list(range(36))  # 36 = 5*7 + 1: the last client batch is partial
    assert res.stats.completed == res.stats.sent == 36 and res.stats.dropped == 0 and res.error is None
    assert not res.source_failed and "end of file after 36 frames" in res.end
    assert lines[1]["timestamp"] == pytest.approx(0.1)
    assert all(r["latency_ms"] > 0 for r in lines)
    assert res.stats.fps > 0 and res.stats.p50_ms <= res.stats.p95_ms <= res.stats.p99_ms
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["stats"]["completed"] == 36 and summary["config"]["mode"] == mode


class ShuffledClient:
    """The real async client, with a random delay after each answer so answers come back out of order."""

    def __init__(self, url: str) -> None:
        self.client = AsyncServingClient(url, "little", protocol="v2")
        self.rng = random.Random(0)
        self.completed: list[int] = []  # first pixel sums, in completion order (identifies the frame)

    async def predict(self, images, score_threshold=None):
        dets = await self.client.predict(images, score_threshold=score_threshold)
        await asyncio.sleep(self.rng.uniform(0, 0.05))
        self.completed.append(int(images[0].sum()))
        return dets


def test_results_come_back_in_frame_order_under_concurrency(server, clip, clip_frames, tmp_path):
    shuffled = ShuffledClient(server.url)
    got: list[tuple[int, Detections]] = []
    cfg = StreamConfig(server.url, "little", mode="server", max_in_flight=8, score_threshold=0.2)
    run_stream(open_source(clip), cfg, predictor=shuffled, output_dir=tmp_path, echo=None, progress=False,
               on_result=lambda frame, det: got.append((frame.index, det)))
    sums = [int(f.sum()) for f in clip_frames]
    order = [sums.index(s) for s in shuffled.completed]
    assert order != sorted(order), "the answers did not arrive out of order: this test proved nothing"
    assert [i for i, _ in got] == list(range(36))
    assert [r["frame"] for r in _lines(tmp_path / "results.jsonl")] == list(range(36))
    with ServingClient(server.url, "little", protocol="v2") as direct:  # each result belongs to its frame
        for i in (0, 7, 18, 35):
            want = direct.predict([clip_frames[i]], score_threshold=0.2)[0]
            assert len(want) == len(got[i][1]) and np.allclose(want.boxes, got[i][1].boxes, atol=0.05)


class SlowPredictor:
    """No server: answers each request after ``delay`` seconds (a server slower than the camera)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    async def predict(self, images, score_threshold=None):
        await asyncio.sleep(self.delay)
        return [Detections() for _ in images]


def test_live_source_drops_what_the_server_cannot_take(fake_capture, tmp_path):
    src = VideoSource("camera", lambda: (fake_capture(400), 1000.0, None), live=True, queue_size=2)
    cfg = StreamConfig("http://127.0.0.1:1", "m", mode="client", batch_size=2, max_in_flight=1)
    res = run_stream(src, cfg, predictor=SlowPredictor(0.02), output_dir=tmp_path, echo=None, progress=False)
    frames = [r["frame"] for r in _lines(tmp_path / "results.jsonl")]
    assert res.stats.dropped > 0 and res.stats.completed == len(frames)
    assert len(frames) + res.stats.dropped == 400
    assert frames == sorted(set(frames)) and frames[-1] == 399
    assert res.source_failed and "live source stopped" in res.end


def test_server_that_disappears_mid_stream(doomed_server, clip, tmp_path):
    def kill_after_five(frame, det):
        if frame.index == 4:
            doomed_server.proc.kill()  # no goodbye: the process is gone

    cfg = StreamConfig(doomed_server.url, "little", mode="server", max_in_flight=2, timeout=5, retries=1)
    with pytest.raises(StreamError) as err:
        run_stream(open_source(clip), cfg, output_dir=tmp_path, echo=None, progress=False, on_result=kill_after_five)
    msg = str(err.value)
    assert "stopped at frame" in msg and doomed_server.url in msg and "results.jsonl" in msg
    lines = _lines(tmp_path / "results.jsonl")  # every line parses: the partial file is valid JSON lines
    frames = [r["frame"] for r in lines]
    assert 5 <= len(frames) < 36 and frames == list(range(len(frames)))
    assert (tmp_path / "results.jsonl").read_text().endswith("\n")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["error"] and summary["stats"]["completed"] == len(frames)
    assert err.value.result.stats.failed > 0
