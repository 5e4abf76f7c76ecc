"""Dynamic batching: the batcher alone, then merged requests on a real server."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from mlkit.serving.batcher import DynamicBatcher


def test_merges_and_splits_in_order():
    calls = []
    threads = set()

    def run(payloads):
        calls.append([len(p) for p in payloads])
        threads.add(threading.current_thread().name)
        return [[x * 10 for x in p] for p in payloads]

    async def go():
        b = DynamicBatcher(run, model="unit", max_batch_size=5, max_latency_ms=100)
        outs = await asyncio.gather(*(b.submit([i, i]) for i in range(4)))
        await b.close()
        return outs

    outs = asyncio.run(go())
    assert outs == [[i * 10, i * 10] for i in range(4)]
    assert calls == [[2, 2], [2, 2]]  # 5 instances max: two requests of 2 per batch
    assert len(threads) == 1


def test_batching_off_never_waits_and_errors_reach_only_their_caller():
    sizes = []

    def run(payloads):
        sizes.append(sum(len(p) for p in payloads))
        return [ValueError("bad") if p == ["bad"] else p for p in payloads]

    async def go():
        b = DynamicBatcher(run, model="unit-off", max_batch_size=1, max_latency_ms=10_000)
        loop = asyncio.get_running_loop()
        t = loop.time()
        ok = await b.submit(["x"])
        assert loop.time() - t < 1.0
        with pytest.raises(ValueError):
            await b.submit(["bad"])
        big = await b.submit(["a", "b", "c"])  # larger than max_batch_size: runs alone
        await b.close()
        return ok, big

    ok, big = asyncio.run(go())
    assert ok == ["x"] and big == ["a", "b", "c"] and sizes == [1, 1, 3]


def test_a_lone_request_does_not_wait_when_nobody_else_is_arriving():
    batches = []
    arriving = [0]

    def run(payloads):
        batches.append(list(payloads))
        return payloads

    async def go():
        b = DynamicBatcher(run, model="unit-arriving", max_batch_size=8, max_latency_ms=10_000,
                           arriving=lambda: arriving[0])
        loop = asyncio.get_running_loop()
        t = loop.time()
        assert await b.submit(["alone"]) == ["alone"]
        alone_s = loop.time() - t
        # one request is still being prepared: the batch waits for it (within max_latency_ms) and merges
        arriving[0] = 1
        first = asyncio.ensure_future(b.submit(["first"]))
        await asyncio.sleep(0.2)
        assert not first.done()
        arriving[0] = 0
        second = await b.submit(["second"])
        await b.close()
        return alone_s, await first, second

    alone_s, first, second = asyncio.run(go())
    assert alone_s < 5.0  # far below the 10 s max_latency_ms: it did not wait
    assert (first, second) == (["first"], ["second"])
    assert batches == [[["alone"]], [["first"], ["second"]]]


def test_inline_runs_a_lone_request_on_the_loop_thread_and_only_when_nothing_else_is_queued_or_arriving():
    threads = []
    arriving = [0]
    release = threading.Event()

    def run(payloads):
        threads.append(threading.current_thread().name)
        if payloads == [["slow"]]:
            release.wait(5)
        return [ValueError("bad") if p == ["bad"] else p for p in payloads]

    async def go():
        b = DynamicBatcher(run, model="unit-inline", max_batch_size=8, max_latency_ms=50,
                           arriving=lambda: arriving[0])
        assert await b.submit(["a"], inline=True) == ["a"]  # idle: on this thread
        with pytest.raises(ValueError):
            await b.submit(["bad"], inline=True)  # an error reaches its caller inline too
        assert await b.submit(["b"]) == ["b"]  # not asked: the worker thread
        arriving[0] = 1
        c = asyncio.ensure_future(b.submit(["c"], inline=True))  # someone is arriving: queued, waits for them
        await asyncio.sleep(0)
        arriving[0] = 0
        assert await c == ["c"]
        slow = asyncio.ensure_future(b.submit(["slow"]))  # a batch is running: the next one must queue
        while len(threads) < 5:  # the slow batch has started on the worker thread
            await asyncio.sleep(0.01)
        d = asyncio.ensure_future(b.submit(["d"], inline=True))
        await asyncio.sleep(0.05)
        release.set()
        assert await slow == ["slow"] and await d == ["d"]
        await b.close()
        return b.batches

    main = threading.current_thread().name
    assert asyncio.run(go()) == 6
    assert threads[:2] == [main, main]
    assert all(t != main for t in threads[2:]), threads


def test_close_while_a_batch_is_being_collected_still_answers_it():
    # The request has left the queue but not reached an instance yet: close() must wait for it, not cancel it.
    async def go():
        b = DynamicBatcher(lambda payloads: payloads, model="unit-close", max_batch_size=8, max_latency_ms=300,
                           arriving=lambda: 1)  # someone is "arriving": the batch waits out its 300 ms
        pending = asyncio.ensure_future(b.submit(["late"]))
        await asyncio.sleep(0.05)
        assert not b.idle
        await asyncio.wait_for(b.close(), 10)
        return await asyncio.wait_for(pending, 10)

    assert asyncio.run(go()) == ["late"]


def _concurrent(model_repo, images, h, tmp_path, count: int, protocol: str, **server_kw):
    """``count`` concurrent one-image requests to a real server; (images, answers, batching metrics)."""
    from mlkit.client.http import AsyncServingClient
    from mlkit.serving.server import start_background_server

    with start_background_server(model_repo, log_path=tmp_path / "server.log", **server_kw) as server:
        many = [images[i % len(images)] for i in range(count)]

        async def go():
            async with AsyncServingClient(server.url, "helmet", protocol=protocol, encoding="png") as client:
                return await asyncio.gather(*(client.predict([im], score_threshold=h.SCORE) for im in many))

        results = asyncio.run(go())
        metrics = {name: h.metric(server.url, name) for name in
                   ("mlkit_batch_size_count", "mlkit_batch_size_sum", "mlkit_batch_queue_seconds_count")}
    return many, [got for [got] in results], metrics


def _assert_like_the_detector(many, answers, detector, h) -> None:
    for im, got in zip(many, answers, strict=True):
        [want] = detector.predict([im], score_threshold=h.SCORE)
        assert h.same(got, want)


def test_server_merges_concurrent_requests_each_gets_its_own_result(model_repo, detector, images, h, tmp_path):
    many, answers, m = _concurrent(model_repo, images, h, tmp_path, 8, "v1", max_batch_size=8, max_latency_ms=300)
    assert m["mlkit_batch_queue_seconds_count"] == 8
    _assert_like_the_detector(many, answers, detector, h)
    batches, instances = m["mlkit_batch_size_count"], m["mlkit_batch_size_sum"]
    assert instances == 8 and batches < 8, (batches, instances)


def test_instances_run_batches_in_parallel_and_never_share_an_interpreter():
    # Two runners (two "interpreters") must both be inside run_batch at once: the barrier only opens for two
    # parties, so a batcher that ran them one after the other fails with BrokenBarrierError, not a timing.
    barrier = threading.Barrier(2, timeout=10)
    inside = [0, 0]
    used = [[], []]
    reentered = []

    def runner(k):
        def run(payloads):
            inside[k] += 1
            if inside[k] > 1:
                reentered.append(k)
            try:
                if len(used[k]) == 0:
                    barrier.wait()  # each instance's first batch waits for the other's
                used[k].append(threading.current_thread().name)
                return [[x * 10 for x in p] for p in payloads]
            finally:
                inside[k] -= 1
        return run

    async def go():
        b = DynamicBatcher([runner(0), runner(1)], model="unit-instances", max_batch_size=1, max_latency_ms=0)
        assert b.instances == 2
        outs = await asyncio.gather(*(b.submit([i]) for i in range(20)))
        await b.close()
        return outs

    outs = asyncio.run(go())
    assert outs == [[i * 10] for i in range(20)]  # every caller got its own answer
    assert used[0] and used[1] and len(used[0]) + len(used[1]) == 20
    assert len(set(used[0])) == 1 and len(set(used[1])) == 1 and set(used[0]) != set(used[1])  # a thread each
    assert not reentered


def test_instances_are_validated():
    with pytest.raises(ValueError, match="one per instance"):
        DynamicBatcher([], model="unit-none")
    from mlkit.serving.predictor import TFLiteDetectorModel

    with pytest.raises(ValueError, match="instances"):
        TFLiteDetectorModel("m", "/nowhere", instances=0)


def test_server_with_two_instances_answers_like_one(model_repo, detector, images, h, tmp_path):
    many, answers, m = _concurrent(model_repo, images, h, tmp_path, 24, "v2", max_batch_size=4, max_latency_ms=5,
                                   instances=2)
    assert m["mlkit_batch_queue_seconds_count"] == 24
    assert "instances=2 x 1 threads" in (tmp_path / "server.log").read_text()
    _assert_like_the_detector(many, answers, detector, h)


def _send_together(url: str, requests: list[tuple[bytes, dict]], path: str) -> list[tuple[int, bytes]]:
    """Each request on its own connection, arriving together: every byte but the last is sent first, then the last
    bytes in one quick pass, so the server finds them all waiting (an HTTP client library sends one after another)."""
    import http.client
    import socket
    from urllib.parse import urlsplit

    host, port = urlsplit(url).hostname, urlsplit(url).port
    socks = []
    for body, headers in requests:
        head = "".join(f"{k}: {v}\r\n" for k, v in {**headers, "content-length": len(body), "host": host}.items())
        wire = f"POST {path} HTTP/1.1\r\n{head}\r\n".encode() + body
        s = socket.create_connection((host, port), timeout=30)
        s.sendall(wire[:-1])
        socks.append((s, wire[-1:]))
    time.sleep(0.3)  # the server has read the headers and all but one byte of every body
    for s, last in socks:
        s.sendall(last)
    answers = []
    for s, _ in socks:
        r = http.client.HTTPResponse(s)
        r.begin()
        answers.append((r.status, r.read()))
        s.close()
    return answers


def test_concurrent_model_sized_pixel_requests_are_merged(model_repo, detector, images, h, tmp_path):
    # Model-sized UINT8 tensors need no decoding, so each one used to reach the model alone and run inline.
    from mlkit.client.http import ServingClient
    from mlkit.models.postprocess import letterbox
    from mlkit.serving.server import start_background_server
    from mlkit.v2codec import v2_detections

    meta = detector.meta
    many = [letterbox(images[i % len(images)], meta.input_width, meta.input_height)[0] for i in range(8)]
    with ServingClient("http://unused", "helmet", encoding="raw") as client:  # only builds the requests
        requests = [(body, headers) for _, headers, body in (client.build([im], h.SCORE) for im in many)]
    with start_background_server(model_repo, log_path=tmp_path / "server.log", max_batch_size=8) as server:
        answers = _send_together(server.url, requests, "/v2/models/helmet/infer")
        batches = h.metric(server.url, "mlkit_batch_size_count")
        instances = h.metric(server.url, "mlkit_batch_size_sum")
    assert [status for status, _ in answers] == [200] * 8, answers[:1]
    for im, (_, body) in zip(many, answers, strict=True):
        [got] = v2_detections(json.loads(body))
        [want] = detector.predict([im], score_threshold=h.SCORE)
        assert h.same(got, want)
    assert instances == 8 and batches < 8, (batches, instances)
