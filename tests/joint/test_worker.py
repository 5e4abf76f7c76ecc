"""The edge worker against real local cloud servers: results, order, outputs, and every fault the issue names.

Each fault test checks the same three things: every frame gets exactly one result, in order; the
fallbacks are counted with the right reason; every output file is whole (JSON lines parse, images decode).
"""

from __future__ import annotations

import json
import time

import cv2
import numpy as np
import pytest

from mlkit.errors import MlkitError
from mlkit.joint.cloud import CloudClient, CloudConfig
from mlkit.joint.worker import JointWorker, WorkerConfig
from mlkit.mining import build_filter
from mlkit.serving.server import free_port, start_background_server
from tests.joint.conftest import first_result_timing, run_worker


def wait_until(predicate, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)

CLOUD_ONLY = {"method": "CloudOnly", "param": {}}


def run(edge_model, frames, cloud: CloudClient | None, out_dir=None, hem=CLOUD_ONLY):
    return run_worker(edge_model, frames, cloud, hem, out_dir)


def check_outputs(out_dir, n_frames: int, n_hard: int) -> list[dict]:
    lines = (out_dir / "results.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["frame"] for r in records] == list(range(n_frames))
    all_examples = sorted((out_dir / "all_examples_inference_output").glob("*.jpg"))
    assert len(all_examples) == n_frames
    for path in all_examples + sorted((out_dir / "hard_examples").glob("*.jpg")):
        assert cv2.imread(str(path)) is not None, f"{path} does not decode"
    sidecars = sorted((out_dir / "hard_examples").glob("*.json"))
    assert len(sidecars) == n_hard
    for s in sidecars:
        assert (s.parent / json.loads(s.read_text())["image"]).is_file()
    assert not list(out_dir.rglob("*.tmp")), "a temp file was left behind"
    return records


def test_every_frame_gets_the_cloud_result_in_order(edge_model, frames, cloud_server, tmp_path):
    # Room for every frame in flight: a busy machine must not turn a slow answer into a "busy" fallback.
    with CloudClient(CloudConfig(cloud_server.url, "big", timeout_s=60, score_threshold=0.05,
                                 max_in_flight=len(frames))) as cloud:
        results, stats = run(edge_model, frames, cloud, tmp_path)
    assert [r.index for r in results] == list(range(len(frames)))
    assert all(r.is_hard and r.source == "cloud" and r.fallback is None for r in results)
    assert stats["frames"] == stats["hard_frames"] == stats["cloud_results"] == len(frames)
    assert stats["fallbacks"] == 0 and stats["upload_ratio"] == 1.0
    assert stats["bytes_uploaded"] == sum(r.uploaded_bytes for r in results) > 0
    # The cloud runs the fp32 twin of the int8 edge model: the answers are close to the edge's, not the same.
    assert sum(len(r.cloud) for r in results) > 0
    records = check_outputs(tmp_path, len(frames), len(frames))
    assert records[0]["final"] == records[0]["cloud"] and records[0]["source"] == "cloud"
    assert len(list((tmp_path / "hard_example_cloud_inference_output").glob("*.jpg"))) == len(frames)


def test_hard_examples_are_stored_clean(edge_model, frames, cloud_server, tmp_path):
    """Sedna saves hard frames with boxes drawn on them; the store keeps the frame as captured."""
    with CloudClient(CloudConfig(cloud_server.url, "big", timeout_s=60, score_threshold=0.05)) as cloud:
        results, _ = run(edge_model, frames[:3], cloud, tmp_path)
    for r in results:
        stored = cv2.cvtColor(cv2.imread(str(tmp_path / "hard_examples" / f"frame_{r.index:06d}.jpg")),
                              cv2.COLOR_BGR2RGB)
        drawn = cv2.cvtColor(cv2.imread(str(tmp_path / "all_examples_inference_output" /
                                            f"frame_{r.index:06d}.jpg")), cv2.COLOR_BGR2RGB)
        original = frames[r.index].image.astype(int)
        assert np.abs(stored.astype(int) - original).mean() < 3.0  # JPEG noise only
        if len(r.final.filter(0.3)):
            assert np.abs(drawn.astype(int) - original).mean() > np.abs(stored.astype(int) - original).mean()
        sidecar = json.loads((tmp_path / "hard_examples" / f"frame_{r.index:06d}.json").read_text())
        assert sidecar["edge"] == r.edge.to_list(edge_model.meta.class_names)
        assert sidecar["width"] == original.shape[1] and sidecar["class_names"][0] == "person"


def test_easy_frames_stay_at_the_edge(edge_model, frames, cloud_server):
    with CloudClient(CloudConfig(cloud_server.url, "big")) as cloud:
        results, stats = run(edge_model, frames, cloud, hem={"method": "EdgeOnly", "param": {}})
    assert not any(r.is_hard for r in results) and all(r.cloud is None for r in results)
    assert stats["hard_frames"] == 0 and stats["bytes_uploaded"] == 0 and stats["cloud_ms"]["p50"] is None


def test_cloud_down_from_the_start(edge_model, frames, tmp_path):
    # Room for every frame in flight: on a fast edge a failing call may still be out when the 9th frame comes,
    # and that frame would be (rightly) counted "busy" instead of the failure under test.
    with CloudClient(CloudConfig(f"http://127.0.0.1:{free_port()}", "big", timeout_s=2,
                                 max_in_flight=len(frames))) as cloud:
        results, stats = run(edge_model, frames, cloud, tmp_path)
    assert [r.index for r in results] == list(range(len(frames)))
    assert all(r.fallback == "connection" and r.final is r.edge for r in results)
    assert stats["fallbacks"] == stats["hard_frames"] == len(frames)
    assert stats["fallback_reasons"] == {"connection": len(frames)} and stats["cloud_results"] == 0
    records = check_outputs(tmp_path, len(frames), len(frames))
    assert all(r["cloud"] is None and r["fallback"] == "connection" for r in records)


def test_cloud_answering_500(edge_model, frames, server_500, tmp_path):
    with CloudClient(CloudConfig(server_500, "big", timeout_s=30, max_in_flight=len(frames))) as cloud:  # see above
        results, stats = run(edge_model, frames, cloud, tmp_path)
    assert [r.fallback for r in results] == ["http_5xx"] * len(frames), stats["fallback_reasons"]
    assert stats["fallback_reasons"] == {"http_5xx": len(frames)}
    check_outputs(tmp_path, len(frames), len(frames))


def test_cloud_slower_than_the_timeout(edge_model, frames, cloud_repo, tmp_path):
    slow = start_background_server(cloud_repo, response_delay_ms=3000, log_path=tmp_path / "slow.log")
    try:
        with CloudClient(CloudConfig(slow.url, "big", timeout_s=0.3, max_in_flight=len(frames))) as cloud:
            results, stats = run(edge_model, frames[:6], cloud, tmp_path / "out")
    finally:
        slow.stop()
    assert all(r.fallback == "timeout" and r.final is r.edge for r in results)
    assert stats["fallback_reasons"] == {"timeout": 6}
    assert all(r.cloud_ms is not None and r.cloud_ms < 3000 for r in results)  # gave up, did not wait 3 s
    check_outputs(tmp_path / "out", 6, 6)


def test_cloud_killed_mid_stream_and_restarted(edge_model, frames, cloud_repo, tmp_path):
    """Frames 0-3 reach the cloud, 4-7 find it dead (edge results), 8-11 reach it again after a restart."""
    port = free_port()
    log = tmp_path / "cloud.log"
    state = {"server": start_background_server(cloud_repo, http_port=port, log_path=log)}
    cloud = CloudClient(CloudConfig(f"http://127.0.0.1:{port}", "big", timeout_s=60))

    def stream():
        for f in frames:
            if f.index == 4:
                wait_until(lambda: cloud.in_flight == 0)
                state["server"].stop()
            if f.index == 8:
                wait_until(lambda: cloud.in_flight == 0)
                state["server"] = start_background_server(cloud_repo, http_port=port, log_path=log)
            yield f

    try:
        results, stats = run(edge_model, stream(), cloud, tmp_path / "out")
    finally:
        cloud.close()
        state["server"].stop()
    sources = [r.source for r in results]
    assert sources[:4] == ["cloud"] * 4
    assert [r.fallback for r in results[4:8]] == ["connection"] * 4
    assert sources[8:] == ["cloud"] * 4, [(r.index, r.fallback) for r in results]
    assert stats["cloud_results"] == 8 and stats["fallback_reasons"] == {"connection": 4}
    check_outputs(tmp_path / "out", len(frames), len(frames))


def test_edge_never_waits_for_the_cloud(edge_model, frames, slow_server):
    """With every answer held 3 s, the edge has judged every frame before the first cloud answer is back.

    This asserts an order of events, with a wide margin (12 edge inferences take well under a second
    even on a busy CPU), not a duration; the frame-rate figure is in benchmarks/joint.py.
    """
    with CloudClient(CloudConfig(slow_server.url, "big", timeout_s=60, max_in_flight=len(frames))) as cloud:
        worker = JointWorker(edge_model, build_filter(CLOUD_ONLY), cloud, WorkerConfig(report_every_s=0))
        pulled, first, first_at, rest = first_result_timing(worker, frames)
    assert len(pulled) == len(frames) and pulled[-1] < first_at
    assert first.source == "cloud" and [r.index for r in [first, *rest]] == list(range(len(frames)))


def test_busy_cloud_keeps_the_edge_result(edge_model, frames, cloud_repo, tmp_path):
    """max_in_flight bounds the calls out; a hard frame beyond it keeps its edge result ("busy")."""
    slow = start_background_server(cloud_repo, response_delay_ms=1000, log_path=tmp_path / "slow.log")
    try:
        with CloudClient(CloudConfig(slow.url, "big", timeout_s=60, max_in_flight=2)) as cloud:
            results, stats = run(edge_model, frames, cloud)
    finally:
        slow.stop()
    assert [r.index for r in results] == list(range(len(frames)))
    assert stats["fallback_reasons"].get("busy", 0) >= 1
    assert stats["cloud_results"] + stats["fallback_reasons"]["busy"] == len(frames)
    assert all(r.uploaded_bytes == 0 for r in results if r.fallback == "busy")  # not sent, not counted
    assert all(r.uploaded_bytes > 0 for r in results if r.fallback is None)
    assert stats["bytes_uploaded"] == sum(r.uploaded_bytes for r in results)


def test_frames_shrunk_for_upload_are_answered_in_captured_pixels(edge_model, frames, cloud_server, cloud_repo):
    from mlkit.evaluation.matching import box_iou
    from mlkit.joint.worker import StillFrame
    from mlkit.models.predict import DetectorMeta

    meta = DetectorMeta.load(cloud_repo / "big" / "1" / "metadata.json")
    # frames twice the size the camera in the other tests gives: the cloud model sees them shrunk either way
    large = [StillFrame(f.index, cv2.resize(f.image, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR))
             for f in frames[:6]]
    answers = {}
    for shape in (None, (meta.input_height, meta.input_width)):
        with CloudClient(CloudConfig(cloud_server.url, "big", timeout_s=60, score_threshold=0.05,
                                     max_in_flight=len(large), upload_max_hw=shape)) as cloud:
            results, stats = run(edge_model, large, cloud)
        assert stats["fallbacks"] == 0
        answers[shape is not None] = results, stats["bytes_uploaded"]
    (full, full_bytes), (shrunk, shrunk_bytes) = answers[False], answers[True]
    assert shrunk_bytes < full_bytes / 2
    matched = total = 0
    for a, b in zip(full, shrunk, strict=True):
        sure = a.cloud.filter(0.3)
        total += len(sure)
        if len(sure) and len(b.cloud):
            matched += int((box_iou(sure.boxes, b.cloud.boxes).max(axis=1) > 0.7).sum())
    # same boxes in the same (captured) pixels, up to JPEG noise at the smaller size
    assert total > 0 and matched / total > 0.8, (matched, total)


def test_upload_shape_is_checked():
    import pytest

    from mlkit.errors import MlkitError

    with pytest.raises(MlkitError, match="two positive integers"):
        CloudConfig("http://127.0.0.1:1", "big", upload_max_hw=(0, 448))


def test_the_cloud_call_goes_through_the_proxy_the_environment_names(frames, cloud_server, monkeypatch):
    # A proxy port where nothing listens: honoured, it turns every call into a connection fallback.
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    for name in ("NO_PROXY", "no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    config = CloudConfig(cloud_server.url, "big", timeout_s=10)
    with CloudClient(config) as cloud:
        outcome = cloud.submit(frames[0].image).result(timeout=30)
    assert outcome.fallback == "connection", outcome
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")  # and bypassed where NO_PROXY says
    with CloudClient(config) as cloud:
        outcome = cloud.submit(frames[0].image).result(timeout=30)
    assert outcome.fallback is None and outcome.detections is not None, outcome


def _server_batches(url: str) -> float:
    """How many batches the server's model has run (its mlkit_batch_size histogram count)."""
    from tests.serving.conftest import Helpers

    return Helpers.metric(url, "mlkit_batch_size_count", model="big")


@pytest.mark.parametrize("encode_in_thread", [True, False], ids=["encoder-thread", "caller-encodes"])
def test_batched_uploads_share_requests_and_give_each_frame_its_own_answer(edge_model, frames, cloud_server,
                                                                          encode_in_thread):
    # The server runs batching off, so each request is one batch there: its count is the number of requests.
    answers = {}
    for protocol in ("v2", "v1"):
        for batch in (1, 4):
            before = _server_batches(cloud_server.url)
            config = CloudConfig(cloud_server.url, "big", protocol=protocol, timeout_s=60, score_threshold=0.05,
                                 max_in_flight=len(frames), upload_batch=batch, upload_wait_ms=1000,
                                 encode_in_thread=encode_in_thread)
            with CloudClient(config) as cloud:
                results, stats = run(edge_model, frames, cloud)
            assert stats["fallbacks"] == 0 and stats["cloud_results"] == len(frames)
            requests = _server_batches(cloud_server.url) - before
            assert requests == (len(frames) if batch == 1 else -(-len(frames) // 4)), (protocol, batch, requests)
            answers[protocol, batch] = results
    for protocol in ("v2", "v1"):
        for one, merged in zip(answers[protocol, 1], answers[protocol, 4], strict=True):
            assert len(one.cloud) == len(merged.cloud)  # the same frame's answer, not a neighbour's
            np.testing.assert_allclose(one.cloud.boxes, merged.cloud.boxes, atol=1.0)
            np.testing.assert_allclose(one.cloud.scores, merged.cloud.scores, atol=0.02)


def test_with_batched_uploads_max_in_flight_still_counts_frames(frames, cloud_repo, tmp_path):
    # The cloud's work is per frame: 4 frames may be out, gathering or sent, whatever the batch size.
    slow = start_background_server(cloud_repo, response_delay_ms=1000, log_path=tmp_path / "slow.log")
    try:
        config = CloudConfig(slow.url, "big", timeout_s=60, max_in_flight=4, upload_batch=2, upload_wait_ms=1000)
        with CloudClient(config) as cloud:
            outcomes = [f.result(timeout=60) for f in [cloud.submit(fr.image) for fr in frames[:6]]]
    finally:
        slow.stop()
    assert [o.fallback for o in outcomes] == [None] * 4 + ["busy"] * 2, outcomes


def test_a_failed_batched_request_falls_back_for_every_frame_in_it(edge_model, frames, server_500, tmp_path):
    config = CloudConfig(server_500, "big", timeout_s=30, max_in_flight=len(frames), upload_batch=3,
                         upload_wait_ms=1000)
    with CloudClient(config) as cloud:
        results, stats = run(edge_model, frames, cloud, tmp_path)
    assert [r.fallback for r in results] == ["http_5xx"] * len(frames)
    assert stats["fallback_reasons"] == {"http_5xx": len(frames)}
    check_outputs(tmp_path, len(frames), len(frames))


@pytest.mark.parametrize("encode_in_thread", [True, False], ids=["encoder-thread", "caller-encodes"])
def test_closing_sends_the_frames_still_gathering(frames, cloud_server, encode_in_thread):
    config = CloudConfig(cloud_server.url, "big", timeout_s=60, upload_batch=8, upload_wait_ms=1000,
                         encode_in_thread=encode_in_thread)
    cloud = CloudClient(config)
    futures = [cloud.submit(f.image) for f in frames[:2]]
    cloud.close()  # long before the 1 s wait is over
    outcomes = [f.result(timeout=0) for f in futures]
    assert all(o.fallback is None and o.detections is not None for o in outcomes), outcomes


def test_the_upload_loop_is_woken_at_most_twice_per_request_not_per_frame(frames, cloud_server, monkeypatch):
    # Each wake of the loop thread costs a one-core edge box a context switch and a GIL hand-off: a frame joins
    # the gathering request under a lock, and only a request's first frame (start its wait) and its last (send)
    # wake the loop.
    config = CloudConfig(cloud_server.url, "big", timeout_s=60, upload_batch=4, upload_wait_ms=1000,
                         max_in_flight=8, encode_in_thread=False)
    with CloudClient(config) as cloud:
        wakes = []
        real = cloud._loop.call_soon_threadsafe

        def counted(callback, *args, **kw):
            wakes.append(callback)
            return real(callback, *args, **kw)

        monkeypatch.setattr(cloud._loop, "call_soon_threadsafe", counted)
        futures = [cloud.submit(f.image) for f in frames[:8]]
        outcomes = [f.result(timeout=60) for f in futures]
        monkeypatch.undo()
    assert all(o.fallback is None for o in outcomes), outcomes
    assert 3 <= len(wakes) <= 4, [w.__name__ for w in wakes]  # 3: the 5th frame came before the 1st request left


def test_encode_in_thread_is_checked():
    with pytest.raises(MlkitError, match="encode_in_thread must be true, false or unset"):
        CloudConfig("http://127.0.0.1:1", "big", encode_in_thread="yes")


def test_upload_batching_is_checked():
    import pytest

    from mlkit.errors import MlkitError

    with pytest.raises(MlkitError, match="upload_batch must be >= 1"):
        CloudConfig("http://127.0.0.1:1", "big", upload_batch=0)
    with pytest.raises(MlkitError, match="upload_wait_ms must be between 0 and 1000"):
        CloudConfig("http://127.0.0.1:1", "big", upload_batch=4, upload_wait_ms=5000)
    with pytest.raises(MlkitError, match=r"upload_batch \(16\) cannot exceed max_in_flight \(8\)"):
        CloudConfig("http://127.0.0.1:1", "big", max_in_flight=8, upload_batch=16)


def test_a_cloud_whose_queue_is_full_counts_as_busy_and_the_edge_result_stands(edge_model, frames, tmp_path):
    # The big model is slow enough that frames sent together find the cloud's one-request queue full: 503.
    import shutil

    from mlkit.models.bundled import bundled_model

    repo = tmp_path / "repo"
    shutil.copytree(bundled_model("big", "int8"), repo / "big" / "1")
    with start_background_server(repo, max_queue=1, log_path=tmp_path / "cloud.log") as busy_cloud:
        config = CloudConfig(busy_cloud.url, "big", timeout_s=60, max_in_flight=len(frames))
        with CloudClient(config) as cloud:
            results, stats = run(edge_model, frames, cloud, tmp_path / "out")
    reasons = stats["fallback_reasons"]
    assert set(reasons) == {"busy"} and 0 < reasons["busy"] < len(frames), reasons
    busy = [r for r in results if r.fallback == "busy"]
    assert all(r.cloud is None and r.final is r.edge for r in busy), busy[:1]
    assert stats["cloud_results"] == len(frames) - reasons["busy"]
    check_outputs(tmp_path / "out", len(frames), len(frames))
