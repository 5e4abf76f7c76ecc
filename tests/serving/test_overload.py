"""Overload protection: a bounded queue per model (503 + Retry-After, gRPC UNAVAILABLE) and a queue deadline."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time

import httpx
import numpy as np
import pytest

from mlkit.serving.batcher import DynamicBatcher
from mlkit.serving.overload import ServerBusy


def _gated_runner(gate: threading.Event):
    def run(payloads):
        gate.wait(10)
        return [[x * 10 for x in p] for p in payloads]
    return run


def test_a_full_queue_refuses_at_once_and_the_waiting_requests_still_run():
    gate = threading.Event()

    async def go():
        b = DynamicBatcher(_gated_runner(gate), model="unit-full", max_batch_size=1, max_latency_ms=0, max_queue=2)
        first = asyncio.ensure_future(b.submit([1]))
        await asyncio.sleep(0.05)  # the first request is on the interpreter, held by the gate
        waiting = [asyncio.ensure_future(b.submit([x])) for x in (2, 3)]
        await asyncio.sleep(0.01)
        assert b.queued == 2
        with pytest.raises(ServerBusy, match="2 requests are already waiting.*--max-queue") as refused:
            await b.submit([4])
        gate.set()
        answers = await asyncio.gather(first, *waiting)
        await b.close()
        return refused.value, answers

    refused, answers = asyncio.run(go())
    assert answers == [[10], [20], [30]]
    assert refused.kind == "queue_full" and refused.retry_after >= 1


def test_a_request_past_its_deadline_is_dropped_before_it_runs():
    gate = threading.Event()
    ran = []

    def run(payloads):
        gate.wait(10)
        ran.extend(payloads)
        return payloads

    async def go():
        b = DynamicBatcher(run, model="unit-deadline", max_batch_size=1, max_latency_ms=0, queue_timeout_ms=50)
        first = asyncio.ensure_future(b.submit([1]))
        await asyncio.sleep(0.02)
        late = asyncio.ensure_future(b.submit([2]))
        await asyncio.sleep(0.2)  # the second request waits well past its 50 ms deadline
        gate.set()
        results = await asyncio.gather(first, late, return_exceptions=True)
        await b.close()
        return results

    first, late = asyncio.run(go())
    assert first == [1]
    assert isinstance(late, ServerBusy) and late.kind == "deadline" and "--queue-timeout-ms" in str(late)
    assert ran == [[1]]  # the late request never reached the interpreter


def test_with_a_deadline_a_request_that_would_wait_too_long_is_refused_at_once():
    def run(payloads):
        time.sleep(0.05 * len(payloads))
        return payloads

    async def go():
        b = DynamicBatcher(run, model="unit-expected", max_batch_size=1, max_latency_ms=0, queue_timeout_ms=120)
        await b.submit([0])  # times the interpreter: about 50 ms per request
        t = time.perf_counter()
        results = await asyncio.gather(*(b.submit([i]) for i in range(1, 6)), return_exceptions=True)
        await b.close()
        return results, time.perf_counter() - t

    results, _ = asyncio.run(go())
    assert results[:3] == [[1], [2], [3]]  # 0, 50 and 100 ms of work ahead of them: within the deadline
    for refused in results[3:]:  # 150 and 200 ms ahead: refused when they arrived, not after waiting
        assert isinstance(refused, ServerBusy) and refused.kind == "deadline"
        assert "would wait about" in str(refused) and "--queue-timeout-ms" in str(refused)


def test_queue_limits_are_validated():
    with pytest.raises(ValueError, match="max_queue must be >= 0"):
        DynamicBatcher(lambda p: p, model="unit-bad", max_queue=-1)
    with pytest.raises(ValueError, match="queue_timeout_ms must be >= 0"):
        DynamicBatcher(lambda p: p, model="unit-bad", queue_timeout_ms=-5)


# --- a real server -------------------------------------------------------------------------------------
# The bundled big model takes tens of milliseconds per image on any CPU: long enough for requests sent together
# to find the one in front of them still running.

@pytest.fixture(scope="module")
def big_repo(tmp_path_factory, h):
    from mlkit.models.bundled import bundled_model

    repo = tmp_path_factory.mktemp("big-repo")
    h.make_version(repo, "big", 1, bundled_model("big", "int8"))
    return repo


@pytest.fixture(scope="module")
def big_pixels(big_repo):
    from mlkit.models.predict import DetectorMeta

    meta = DetectorMeta.load(big_repo / "big" / "1" / "metadata.json")
    rng = np.random.default_rng(3)
    return rng.integers(0, 255, (4, meta.input_height, meta.input_width, 3), dtype=np.uint8)


def _rest_together(url: str, pixels: np.ndarray, count: int) -> list[httpx.Response]:
    from mlkit.client.http import AsyncServingClient

    async def go():
        async with AsyncServingClient(url, "big", encoding="raw", retries=0) as client:
            _, headers, body = client.build(list(pixels))
            async with httpx.AsyncClient(base_url=url, timeout=60) as http:
                return await asyncio.gather(*(http.post("/v2/models/big/infer", content=body, headers=headers)
                                              for _ in range(count)))

    return asyncio.run(go())


def test_a_busy_server_answers_503_with_retry_after_and_counts_it(big_repo, big_pixels, h, tmp_path):
    from mlkit.serving.server import start_background_server

    with start_background_server(big_repo, log_path=tmp_path / "server.log", max_queue=1) as server:
        answers = _rest_together(server.url, big_pixels, 12)
        metrics = httpx.get(f"{server.url}/metrics").text
        still_serves = _rest_together(server.url, big_pixels[:1], 1)[0]
    codes = [r.status_code for r in answers]
    assert set(codes) == {200, 503}, codes
    for r in answers:
        if r.status_code == 503:
            assert int(r.headers["retry-after"]) >= 1
            assert "--max-queue" in r.json()["error"]
        else:
            assert r.json()["outputs"][3]["shape"] == [4]  # num_detections: one per image
    rejected = f'mlkit_requests_rejected_total{{model="big",reason="queue_full"}} {float(codes.count(503))}'
    assert rejected in metrics
    assert 'mlkit_queue_depth{model="big"} 0.0' in metrics  # nothing left waiting
    assert still_serves.status_code == 200
    assert "Traceback" not in (tmp_path / "server.log").read_text()


def test_a_busy_server_answers_grpc_unavailable(big_repo, big_pixels, tmp_path):
    # REST clients keep the one-request queue full (each resends as soon as it is answered or refused); gRPC
    # calls made meanwhile find it full.
    import grpc

    from mlkit.client.grpc import GRPCServingClient
    from mlkit.client.http import ServingClient, ServingError
    from mlkit.serving.server import start_background_server

    def outcome(call):
        try:
            call()
            return "OK"
        except grpc.RpcError as exc:
            assert exc.code() != grpc.StatusCode.UNAVAILABLE or "--max-queue" in exc.details()
            return exc.code().name
        except ServingError as exc:  # mlkit's client, not retrying (retries=0): one clean error
            assert "UNAVAILABLE" in str(exc) and "--max-queue" in str(exc)
            return "UNAVAILABLE"

    stop = threading.Event()
    with start_background_server(big_repo, log_path=tmp_path / "server.log", max_queue=1) as server, \
            GRPCServingClient(server.grpc_url, "big", encoding="raw", retries=0) as client:
        with ServingClient("http://unused", "big", encoding="raw") as builder:
            _, headers, body = builder.build(list(big_pixels))

        def pressure() -> None:
            with httpx.Client(base_url=server.url, timeout=60) as http:
                while not stop.is_set():
                    http.post("/v2/models/big/infer", content=body, headers=headers)

        threads = [threading.Thread(target=pressure, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            deadline = time.monotonic() + 30
            while _sample(server.url, 'mlkit_requests_rejected_total{model="big",reason="queue_full"}') < 1:
                assert time.monotonic() < deadline, "the REST clients never filled the queue"
                time.sleep(0.05)
            request = client.build(list(big_pixels[:1]))
            raw = [outcome(lambda: client._stub.ModelInfer(request, timeout=60)) for _ in range(10)]
            mlkit = [outcome(lambda: client.predict(list(big_pixels[:1]))) for _ in range(10)]
        finally:
            stop.set()
            for t in threads:
                t.join(60)
    assert set(raw) <= {"OK", "UNAVAILABLE"} and set(mlkit) <= {"OK", "UNAVAILABLE"}, (raw, mlkit)
    assert "UNAVAILABLE" in raw and "UNAVAILABLE" in mlkit, (raw, mlkit)


def test_requests_past_the_queue_deadline_get_503(big_repo, big_pixels, tmp_path):
    from mlkit.serving.server import start_background_server

    with start_background_server(big_repo, log_path=tmp_path / "server.log", max_queue=0,
                                 queue_timeout_ms=20) as server:
        answers = _rest_together(server.url, big_pixels, 6)
        metrics = httpx.get(f"{server.url}/metrics").text
    codes = [r.status_code for r in answers]
    assert 200 in codes and 503 in codes, codes
    late = [r.json()["error"] for r in answers if r.status_code == 503]
    assert all("--queue-timeout-ms" in e for e in late), late
    assert f'mlkit_requests_rejected_total{{model="big",reason="deadline"}} {float(len(late))}' in metrics


def _sample(url: str, series: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_mlkit_clients_retry_a_busy_server_until_it_answers(big_repo, big_pixels, tmp_path):
    from mlkit.client.grpc import GRPCServingClient
    from mlkit.client.http import AsyncServingClient
    from mlkit.serving.server import start_background_server

    images = list(big_pixels[:2])
    with start_background_server(big_repo, log_path=tmp_path / "server.log", max_queue=1) as server:
        async def rest():
            async with AsyncServingClient(server.url, "big", encoding="raw", retries=12, backoff=0.05) as client:
                return await asyncio.gather(*(client.predict(images) for _ in range(10)))

        rest_answers = asyncio.run(rest())
        with GRPCServingClient(server.grpc_url, "big", encoding="raw", retries=12, backoff=0.05) as client, \
                concurrent.futures.ThreadPoolExecutor(10) as pool:
            grpc_answers = list(pool.map(lambda _: client.predict(images), range(10)))
        rejected = _sample(server.url, 'mlkit_requests_rejected_total{model="big",reason="queue_full"}')
    assert len(rest_answers) == len(grpc_answers) == 10
    assert all(len(a) == 2 for a in rest_answers + grpc_answers)
    assert rejected > 0  # they were refused on the way, and came back


def test_retry_waits_grow_are_jittered_and_never_exceed_retry_after():
    from mlkit.client.http import retry_delay

    waits = [retry_delay(a, 0.1) for a in range(4) for _ in range(50)]
    assert all(0.05 <= w <= 0.1 * 2 ** 3 for w in waits)
    assert len(set(waits)) > 100  # jittered: clients refused together come back apart
    assert max(retry_delay(6, 0.1, retry_after="1") for _ in range(50)) <= 1.0
    assert max(retry_delay(10, 0.1, retry_after="Wed, 21 Oct 2026 07:28:00 GMT") for _ in range(50)) <= 5.0
