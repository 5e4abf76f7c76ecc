"""The offline queue (mlkit.joint.spool) against a real local cloud server behind a real TCP proxy that is switched
off and on: frames the cloud missed wait on disk and get exactly one late answer, also across a ``kill -9``.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mlkit.errors import MlkitError
from mlkit.joint.cloud import CloudClient, CloudConfig, encode_upload
from mlkit.joint.outputs import OutputConfig, OutputWriter
from mlkit.joint.spool import Entry, LateAnswer, QueueConfig, Replayer, Spool, record_written
from mlkit.joint.stats import JointStats
from mlkit.joint.worker import JointWorker, WorkerConfig
from mlkit.mining import build_filter
from mlkit.serving.server import free_port
from tests.joint.conftest import ROOT, joint_spec

CLOUD_ONLY = {"method": "CloudOnly", "param": {}}


def wait_until(predicate, timeout: float = 60.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not met in time")
        time.sleep(0.05)


class Proxy:
    """A TCP proxy on 127.0.0.1 in front of ``target_port``: ``off()`` closes the port and every connection (the
    cloud is down: connections are refused), ``on()`` opens it again. ``delay_s`` holds each answer chunk back."""

    def __init__(self, target_port: int, delay_s: float = 0.0) -> None:
        self.port, self.target, self.delay_s = free_port(), target_port, delay_s
        self.url = f"http://127.0.0.1:{self.port}"
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    def on(self) -> None:
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        srv.listen(64)
        srv.settimeout(0.05)
        self._listener = srv
        threading.Thread(target=self._accept, args=(srv,), daemon=True).start()

    def off(self) -> None:
        srv, self._listener = self._listener, None
        if srv is not None:
            srv.close()
        with self._lock:
            conns, self._conns = self._conns, set()
        for c in conns:
            self._close(c)

    def _accept(self, srv: socket.socket) -> None:
        while self._listener is srv:
            try:
                client, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns |= {client, upstream}
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    @staticmethod
    def _close(s: socket.socket) -> None:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        s.close()

    def _pump(self, src: socket.socket, dst: socket.socket, answers: bool) -> None:
        try:
            while data := src.recv(65536):
                if answers and self.delay_s:
                    time.sleep(self.delay_s)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._close(src)
            self._close(dst)


@pytest.fixture
def proxy(cloud_server):
    p = Proxy(int(cloud_server.url.rsplit(":", 1)[1]))
    p.on()
    yield p
    p.off()


def lines(path: Path) -> list[dict]:
    """Every line of a JSON-lines file, parsed (a line that does not parse fails the test)."""
    text = path.read_text()
    assert text == "" or text.endswith("\n"), "the last line is cut"
    return [json.loads(line) for line in text.splitlines()]


def queued_entries(queue: Path) -> list[str]:
    return sorted(p.name for p in queue.glob("*.json"))


def late(records: list[dict]) -> list[dict]:
    return [r for r in records if r["source"] == "cloud-late"]


def test_cloud_down_mid_stream_then_back_every_queued_frame_gets_one_late_answer(edge_model, frames, proxy,
                                                                                 tmp_path):
    """Frames 0-3 reach the cloud; 4-8 find it down (edge results, queued) and the replayer's first tries fail; it
    comes back for 9-11, and the replayer answers 4-8 late, once each."""
    out, queue = tmp_path / "out", tmp_path / "queue"
    cloud = CloudClient(CloudConfig(proxy.url, "big", timeout_s=60, score_threshold=0.05, max_in_flight=len(frames)))
    config = WorkerConfig(report_every_s=0, queue=QueueConfig(directory=queue, drain_s=60, backoff_s=0.2))
    writer = OutputWriter(OutputConfig.under(out), edge_model.meta.class_names)
    worker = JointWorker(edge_model, build_filter(CLOUD_ONLY), cloud, config, on_result=writer.write,
                         late_sink=writer)
    back = threading.Event()

    def stream():
        for f in frames:
            if f.index == 4:
                wait_until(lambda: cloud.in_flight == 0)
                proxy.off()
            if f.index == 8:
                # The outage goes on for a while after frame 8 is sent: the frames before it are released and
                # queued meanwhile (the stream must not wait for that: releases happen between frames).
                wait_until(lambda: cloud.in_flight == 0)
                threading.Timer(1.0, lambda: (proxy.on(), back.set())).start()
            if f.index == 9:
                assert back.wait(30)
            yield f

    try:
        results = list(worker.run(stream()))
    finally:
        cloud.close()
        writer.close()
    failed = [r.index for r in results if r.fallback is not None]
    # frame 8 is sent just as the 1 s timer starts: only a machine stalled for that second would let it through
    assert failed in ([4, 5, 6, 7, 8], [4, 5, 6, 7]), [(r.index, r.fallback) for r in results]
    assert all(r.fallback in (None, "connection") for r in results)
    records = lines(out / "results.jsonl")
    assert [r["frame"] for r in records if r["source"] != "cloud-late"] == list(range(12))
    corrections = late(records)
    assert sorted(r["frame"] for r in corrections) == failed  # exactly one each
    for r in corrections:
        assert r["earlier_run"] is False and r["queued_reason"] == "connection" and r["final"] == r["cloud"]
        assert r["cloud"] and all(set(d) == {"label", "class_id", "score", "box"} for d in r["cloud"])
    # the late answer is the cloud's answer to that very frame (the same JPEG, boxes in captured pixels)
    with CloudClient(CloudConfig(proxy.url, "big", timeout_s=60, score_threshold=0.05)) as direct:
        live = direct.submit(frames[5].image, config.jpeg_quality).result(timeout=60)
    replayed = next(r for r in corrections if r["frame"] == 5)["cloud"]
    assert [d["class_id"] for d in replayed] == live.detections.labels.tolist()
    np.testing.assert_allclose([d["box"] for d in replayed], live.detections.boxes, atol=0.02)
    # the hard-example store: the frames' own clean copies now carry the cloud's labels
    sidecars = {p.name: json.loads(p.read_text()) for p in (out / "hard_examples").glob("*.json")}
    assert len(sidecars) == 12
    for i in failed:
        s = sidecars[f"frame_{i:06d}.json"]
        assert s["cloud_late"] is True and s["cloud"] == next(r for r in corrections if r["frame"] == i)["cloud"]
    stats = worker.stats.snapshot()
    assert (stats["queued"], stats["replayed"], stats["expired"], stats["dropped"], stats["queue_backlog"]) == \
        (len(failed), len(failed), 0, 0, 0)
    assert f"queue: queued {len(failed)} replayed {len(failed)}" in worker.stats.line()
    assert queued_entries(queue) == [] and not [p for p in queue.iterdir() if p.name != ".lock"]


def test_a_slow_cloud_times_out_and_the_frames_are_answered_late_once_it_is_quick_again(edge_model, frames, proxy,
                                                                                       tmp_path):
    proxy.delay_s = 3.0  # every answer held back beyond the timeout
    out, queue = tmp_path / "out", tmp_path / "queue"
    cloud = CloudClient(CloudConfig(proxy.url, "big", timeout_s=0.5, max_in_flight=len(frames)))
    config = WorkerConfig(report_every_s=0, queue=QueueConfig(directory=queue, drain_s=60, backoff_s=0.2))
    writer = OutputWriter(OutputConfig(results_jsonl=out / "results.jsonl"), edge_model.meta.class_names)
    worker = JointWorker(edge_model, build_filter(CLOUD_ONLY), cloud, config, on_result=writer.write,
                         late_sink=writer)

    def quick_again():
        wait_until(lambda: len(queued_entries(queue)) == 6, what="the 6 frames queued")
        proxy.delay_s = 0.0

    operator = threading.Thread(target=quick_again, daemon=True)
    operator.start()
    try:
        results = list(worker.run(frames[:6]))
    finally:
        cloud.close()
        writer.close()
    operator.join(timeout=5)
    assert [r.fallback for r in results] == ["timeout"] * 6
    assert sorted(r["frame"] for r in late(lines(out / "results.jsonl"))) == list(range(6))
    stats = worker.stats.snapshot()
    assert (stats["queued"], stats["replayed"], stats["queue_backlog"]) == (6, 6, 0)


def test_frames_the_cloud_refuses_are_dropped_not_retried(edge_model, frames, cloud_server, tmp_path):
    """A 4xx (here: the model name is wrong) would refuse the same bytes again: such entries are dropped, counted."""
    queue = tmp_path / "queue"
    config = WorkerConfig(report_every_s=0, queue=QueueConfig(directory=queue, drain_s=0))
    with CloudClient(CloudConfig(f"http://127.0.0.1:{free_port()}", "big", max_in_flight=len(frames))) as down:
        list(JointWorker(edge_model, build_filter(CLOUD_ONLY), down, config).run(frames[:3]))
    assert len(queued_entries(queue)) == 3
    config = WorkerConfig(report_every_s=0, queue=QueueConfig(directory=queue, drain_s=60))
    with CloudClient(CloudConfig(cloud_server.url, "no-such-model")) as wrong:
        worker = JointWorker(edge_model, build_filter({"method": "EdgeOnly", "param": {}}), wrong, config)
        list(worker.run(frames[:1]))
    stats = worker.stats.snapshot()
    assert stats["dropped_reasons"] == {"rejected": 3} and stats["replayed"] == 0 and stats["queue_backlog"] == 0
    assert queued_entries(queue) == []


def run_cli(spec: Path, log: Path) -> subprocess.Popen:
    """``mlkit joint run SPEC`` in a process of its own (the console script's entry point)."""
    with open(log, "ab") as f:
        return subprocess.Popen([sys.executable, "-c", "from mlkit.cli import main; main()", "joint", "run",
                                 str(spec), "--no-progress"], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)


def test_a_worker_killed_mid_replay_resumes_on_restart_exactly_once(video, cloud_server, tmp_path):
    """Run 1 queues every frame (cloud down), starts replaying when it is back (slowly) and is killed with SIGKILL
    after the first late answer; run 2 on the same queue answers the rest. Every frame: one late answer in all."""
    proxy = Proxy(int(cloud_server.url.rsplit(":", 1)[1]), delay_s=0.4)  # off: the cloud is down from the start
    queue, log = tmp_path / "queue", tmp_path / "worker.log"
    params = (("queue_dir", str(queue)), ("queue_drain_seconds", "120"), ("report_seconds", "0"))
    for run in ("run1", "run2"):
        (tmp_path / run).mkdir()
    spec1 = joint_spec(tmp_path / "run1", video, proxy.url, {"name": "CloudOnly", "parameters": []}, params)
    proc = run_cli(spec1, log)
    results1 = tmp_path / "run1" / "out" / "results.jsonl"
    try:
        wait_until(lambda: len(queued_entries(queue)) == 10, what="the 10 frames queued")
        proxy.on()
        wait_until(lambda: results1.is_file() and b'"source":"cloud-late"' in results1.read_bytes(),
                   what="a first late answer")
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    first = late(lines(results1))
    left = queued_entries(queue)
    assert len(first) >= 1 and left, (len(first), left)  # killed mid-replay
    assert [r["frame"] for r in lines(results1) if r["source"] != "cloud-late"] == list(range(10))

    proxy.delay_s = 0.0
    spec2 = joint_spec(tmp_path / "run2", video, proxy.url, {"name": "EdgeOnly", "parameters": []}, params)
    proc = run_cli(spec2, log)
    try:
        assert proc.wait(timeout=180) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        proxy.off()
    second = late(lines(tmp_path / "run2" / "out" / "results.jsonl"))
    answered = Counter(r["frame"] for r in first + second)
    assert answered == Counter(range(10)), answered  # none lost, none answered twice
    assert len({r["entry"] for r in first + second}) == 10
    assert all(r["earlier_run"] is True for r in second) and {r["run"] for r in first + second} == {first[0]["run"]}
    stats2 = json.loads((tmp_path / "run2" / "out" / "stats.json").read_text())
    assert stats2["queued"] == 0 and stats2["queue_backlog"] == 0 and stats2["replayed"] >= len(second)
    assert queued_entries(queue) == []
    # the earlier run's frames reach run 2's store from the uploaded JPEGs, with the cloud's labels (also a frame
    # whose record run 1 wrote just before the kill, before removing its entry: run 2 redoes its store step)
    store2 = tmp_path / "run2" / "out" / "hard_examples"
    late_sidecars = Counter(json.loads(p.read_text())["frame"] for p in store2.glob("late_*.json"))
    assert set(late_sidecars.values()) == {1} and {r["frame"] for r in second} <= set(late_sidecars)
    assert all((store2 / f"{p.stem}.jpg").is_file() for p in store2.glob("late_*.json"))


def test_at_the_disk_limit_the_oldest_frames_are_dropped_and_counted(edge_model, frames, tmp_path):
    sizes = [len(encode_upload(f.image, 85)[0]) for f in frames]
    limit_mb = 3.5 * (sum(sizes) / len(sizes) + 2000) / 1e6  # room for about three entries
    queue = tmp_path / "queue"
    # a long first backoff: with the cloud down, the replayer tries frame 0 once and then leaves the queue alone
    config = WorkerConfig(report_every_s=0, queue=QueueConfig(directory=queue, max_mb=limit_mb, drain_s=0,
                                                              backoff_s=10))
    with CloudClient(CloudConfig(f"http://127.0.0.1:{free_port()}", "big", timeout_s=10,
                                 max_in_flight=len(frames))) as cloud:
        worker = JointWorker(edge_model, build_filter(CLOUD_ONLY), cloud, config)
        results = list(worker.run(frames))
    assert all(r.fallback == "connection" for r in results)
    kept = [json.loads((queue / name).read_text())["frame"] for name in queued_entries(queue)]
    stats = worker.stats.snapshot()
    assert 0 < len(kept) < len(frames)
    assert kept == list(range(len(frames) - len(kept), len(frames)))  # the newest ones
    assert stats["queued"] == len(frames) and stats["replayed"] == 0
    assert stats["dropped_reasons"] == {"full": len(frames) - len(kept)} and stats["queue_backlog"] == len(kept)
    on_disk = sum(p.stat().st_size for p in queue.iterdir() if p.suffix in (".jpg", ".json"))
    assert on_disk <= limit_mb * 1e6
    # the next worker on this queue finds the entries (nothing else is left behind)
    spool = Spool(QueueConfig(directory=queue))
    assert [spool.entry(k).frame for k in spool.queued_keys()] == kept and spool.nbytes == on_disk
    spool.close()


def _entry(key: str, frame: int, enqueued: float) -> Entry:
    from mlkit.detections import Detections

    edge = Detections(np.array([[1, 2, 30, 40]], np.float32), [0.5], [0])
    return Entry(key, "run0", frame, frame / 10, enqueued, (64, 48), (64, 48), 0.7, edge, "timeout")


def test_count_and_age_bounds_and_leftovers_of_a_crash(tmp_path):
    now = [1000.0]
    config = QueueConfig(directory=tmp_path / "q", max_count=3, max_age_s=60)
    spool = Spool(config, clock=lambda: now[0])
    drops = [spool.put(_entry(f"{i:020d}-run0-{i:08d}", i, now[0] + i), b"\xff\xd8jpeg" * 10)[1] for i in range(5)]
    assert drops == [0, 0, 0, 1, 1] and [spool.entry(k).frame for k in spool.queued_keys()] == [2, 3, 4]
    now[0] += 63.5  # frames 2 and 3 are older than a minute now, 4 is not
    assert spool.expire() == 2 and [spool.entry(k).frame for k in spool.queued_keys()] == [4]
    with pytest.raises(MlkitError, match="in use by another worker"):
        Spool(config)
    spool.close()
    # what a crash leaves: a JPEG whose JSON was never committed, a temp file, a marker of a removed entry
    (tmp_path / "q" / "00000000000000000009-run0-00000009.jpg").write_bytes(b"half")
    (tmp_path / "q" / ".00000000000000000009-run0-00000009.json.abc.tmp").write_bytes(b"{")
    (tmp_path / "q" / "00000000000000000001-run0-00000001.answer").write_text("{}")
    reopened = Spool(config, clock=lambda: now[0])
    assert [reopened.entry(k).frame for k in reopened.queued_keys()] == [4]
    assert sorted(p.name for p in (tmp_path / "q").iterdir()) == [
        ".lock", "00000000000000000004-run0-00000004.jpg", "00000000000000000004-run0-00000004.json"]
    reopened.close()


@pytest.mark.parametrize("record_made_it", [True, False], ids=["record-written", "record-not-written"])
def test_an_entry_answered_before_a_crash_is_settled_once(edge_model, frames, tmp_path, record_made_it):
    """The protocol's one ambiguous state, made with the real classes: an answered marker, the record maybe
    appended, the entry not yet removed. The next worker writes the record only if the results file lacks it."""
    from mlkit.detections import Detections

    names = edge_model.meta.class_names
    queue, run1 = tmp_path / "queue", tmp_path / "run1"
    config = QueueConfig(directory=queue)
    spool = Spool(config)
    jpeg, sent = encode_upload(frames[0].image, 85)
    entry = Entry("00000000000000000001-run0-00000003", "run0", 3, 0.3, time.time(), sent, sent, 0.9,
                  Detections(), "timeout")
    spool.put(entry, jpeg)
    answer = LateAnswer(entry, Detections(np.array([[5, 5, 50, 60]], np.float32), [0.8], [1]), 12.0, time.time(),
                        jpeg, True)
    with OutputWriter(OutputConfig(results_jsonl=run1 / "results.jsonl"), names) as w1:

        def mark(path, offset):
            spool.mark_answered(entry, answer.cloud, answer.cloud_ms, answer.answered, path, offset)
            if not record_made_it:
                raise OSError("killed here")  # before the append

        with contextlib.suppress(OSError):
            w1.write_late(answer, mark)
    spool.close()  # ... and the process died before removing the entry
    marker = json.loads((queue / f"{entry.key}.answer").read_text())
    assert record_written(marker["results"], marker["offset"], entry.key) is record_made_it

    run2 = tmp_path / "run2"
    stats = JointStats()
    with CloudClient(CloudConfig(f"http://127.0.0.1:{free_port()}", "big")) as cloud, \
            OutputWriter(OutputConfig(results_jsonl=run2 / "results.jsonl", hard_example_store=run2 / "store"),
                         names) as w2:
        replayer = Replayer(config, cloud, stats, w2)
        replayer.close(drain=False)
    both = late(lines(run1 / "results.jsonl")) + late(lines(run2 / "results.jsonl"))
    assert [r["frame"] for r in both] == [3]
    assert both[0]["cloud"] == answer.cloud.to_list(names)
    assert stats.replayed == 1 and queued_entries(queue) == []
    (sidecar,) = [json.loads(p.read_text()) for p in (run2 / "store").glob("*.json")]
    assert sidecar["cloud"] == answer.cloud.to_list(names) and sidecar["frame"] == 3


def test_queue_settings_from_yaml_and_python(video, cloud_server, tmp_path):
    """The YAML keys validate into QueueConfig; mlkit.joint.run with a queue: frames queued while the cloud is
    down wait on disk after the run, and the next run (cloud up) answers them."""
    import mlkit.joint
    from mlkit.joint.settings import EdgeSettings
    from mlkit.joint.spec import load_service
    from tests.joint.conftest import LITTLE

    queue = tmp_path / "queue"
    spec = joint_spec(tmp_path, video, "http://127.0.0.1:9", {"name": "CloudOnly", "parameters": []},
                      (("queue_dir", str(queue)), ("queue_max_mb", "64"), ("queue_max_age_seconds", "3600"),
                       ("queue_max_count", "100"), ("queue_drain_seconds", "0")))
    qc = load_service(spec).edge_settings().worker_config().queue
    assert qc == QueueConfig(directory=queue, max_mb=64, max_age_s=3600, max_count=100, drain_s=0)
    with pytest.raises(MlkitError, match="queue_max_mb must be > 0"):
        EdgeSettings(queue_dir=str(queue), queue_max_mb=0).worker_config()
    with pytest.raises(MlkitError, match="needs a cloud"):
        mlkit.joint.run(video, edge_model=LITTLE / "int8", edge={"queue_dir": str(queue)}, progress=False)

    def run(endpoint: str, mining: dict, drain_s: float, out: Path) -> dict:
        return mlkit.joint.run(video, edge_model=LITTLE / "int8",
                               edge=EdgeSettings(results=str(out / "results.jsonl"), report_seconds=0,
                                                 queue_dir=str(queue), queue_drain_seconds=drain_s),
                               cloud={"endpoint": endpoint, "timeout_ms": 60000, "max_in_flight": 16}, mining=mining,
                               echo=lambda line: None, progress=False).stats

    down = run(f"http://127.0.0.1:{free_port()}", {"name": "CloudOnly"}, 0, tmp_path / "a")
    assert down["queued"] == 10 and down["queue_backlog"] == len(queued_entries(queue)) == 10
    up = run(cloud_server.url, {"name": "EdgeOnly"}, 60, tmp_path / "b")
    assert up["replayed"] == 10 and up["queue_backlog"] == 0 and up["hard_frames"] == 0
    assert sorted(r["frame"] for r in late(lines(tmp_path / "b" / "results.jsonl"))) == list(range(10))
