"""Model repository: versions, hot reload under load, KServe load/unload endpoints."""

from __future__ import annotations

import threading
import time

import httpx
import pytest


@pytest.fixture()
def live(exported_model, tmp_path, h, request):
    from mlkit.serving.server import start_background_server

    repo = tmp_path / "repo"
    h.make_version(repo, "helmet", 1, exported_model)
    instances = getattr(request, "param", 1)  # interpreters per model version
    with start_background_server(repo, poll_seconds=0.3, max_batch_size=4, max_latency_ms=5, instances=instances,
                                 log_path=tmp_path / "server.log") as server:
        yield server, repo


def test_scan_and_completeness(exported_model, tmp_path, h):
    from mlkit.serving.repository import looks_complete, scan_versions

    h.make_version(tmp_path, "a", 3, exported_model)
    (tmp_path / "a" / "10").mkdir()
    (tmp_path / "a" / "10" / "model.tflite").write_bytes(b"partial")
    assert sorted(scan_versions(tmp_path)["a"]) == [3, 10]
    assert looks_complete(tmp_path / "a" / "3") and not looks_complete(tmp_path / "a" / "10")
    (tmp_path / "a" / "10" / "READY").touch()
    assert looks_complete(tmp_path / "a" / "10")


@pytest.mark.parametrize("live", [1, 2], indirect=True, ids=["1-instance", "2-instances"])
def test_hot_reload_under_load_zero_failures(live, exported_model, images, h):
    server, repo = live
    body, headers = h.v2_binary(images[:1])
    versions, failures, stop = [], [], threading.Event()

    def loop():
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                r = client.post(f"{server.url}/v2/models/helmet/infer", content=body, headers=headers)
                if r.status_code == 200:
                    versions.append(r.json()["model_version"])
                else:
                    failures.append((r.status_code, r.text))

    workers = [threading.Thread(target=loop) for _ in range(3)]
    for w in workers:
        w.start()
    try:
        time.sleep(0.5)
        h.make_version(repo, "helmet", 2, exported_model)  # copy in version 2 while requests run
        deadline = time.monotonic() + 30
        while "2" not in versions and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        stop.set()
        for w in workers:
            w.join(30)
    assert not failures, failures[:3]
    assert versions[0] == "1" and versions[-1] == "2" and "2" in versions
    r = httpx.post(f"{server.url}/v2/models/helmet/versions/1/infer", content=body, headers=headers, timeout=30)
    assert r.status_code == 200 and r.json()["model_version"] == "1"
    assert "serving helmet version 2" in server.log_text()


def test_incomplete_version_is_not_loaded(live, exported_model):
    server, repo = live
    partial = repo / "helmet" / "5"
    partial.mkdir()
    (partial / "model.tflite").write_bytes((exported_model / "model.tflite").read_bytes()[:1000])
    time.sleep(1.2)
    r = httpx.get(f"{server.url}/v2/models/helmet/versions/5/ready")
    assert r.status_code == 404
    assert httpx.get(f"{server.url}/v2/models/helmet/ready").status_code == 200


def test_a_new_version_that_stays_broken_is_reported_once(live, exported_model):
    from mlkit.serving.repository import incomplete_reason

    server, repo = live
    broken = repo / "helmet" / "6"
    broken.mkdir()
    (broken / "model.tflite").write_bytes(b"garbage, not a TFLite flatbuffer")
    (broken / "metadata.json").write_text((exported_model / "metadata.json").read_text())
    assert incomplete_reason(broken) == "model.tflite is not a TFLite model (no TFL3 header)"
    for _ in range(60):  # the warning comes once the folder has been unchanged for a poll (0.3 s here)
        if "version 6" in server.log_text():
            break
        time.sleep(0.1)
    time.sleep(1.0)  # three more polls: still one warning
    lines = [line for line in server.log_text().splitlines() if "helmet version 6" in line]
    assert len(lines) == 1 and "WARNING" in lines[0] and "not a TFLite model" in lines[0], lines
    (broken / "metadata.json").write_text("{broken")  # a different problem is reported again
    for _ in range(60):
        if "not valid JSON" in server.log_text():
            break
        time.sleep(0.1)
    assert "metadata.json is not valid JSON" in server.log_text()
    assert httpx.get(f"{server.url}/v2/models/helmet/versions/6/ready").status_code == 404


def test_repository_load_unload_endpoints(live, images, h):
    server, _ = live
    body, headers = h.v2_binary(images[:1])
    assert httpx.get(f"{server.url}/v2/models").json()["models"] == ["helmet"]
    r = httpx.post(f"{server.url}/v2/repository/models/helmet/unload")
    assert r.status_code == 200 and r.json() == {"name": "helmet", "unload": True}
    assert httpx.post(f"{server.url}/v2/models/helmet/infer", content=body, headers=headers).status_code == 404
    time.sleep(0.8)  # the watcher must not bring an unloaded model back
    assert httpx.get(f"{server.url}/v2/models/helmet/ready").status_code == 404
    r = httpx.post(f"{server.url}/v2/repository/models/helmet/load", timeout=30)
    assert r.status_code == 200 and r.json() == {"name": "helmet", "load": True}
    assert httpx.post(f"{server.url}/v2/models/helmet/infer", content=body, headers=headers,
                      timeout=30).status_code == 200
    assert httpx.post(f"{server.url}/v2/repository/models/nope/unload").status_code == 404
    r = httpx.post(f"{server.url}/v2/repository/models/nope/load")
    assert r.status_code == 404 and "nope" in r.json()["error"]
    r = httpx.get(f"{server.url}/v2/models/helmet/versions/1")
    assert r.status_code == 200 and r.json()["name"] == "helmet" and r.json()["versions"] == ["1"]
    assert {t["name"] for t in r.json()["inputs"]} and {t["name"] for t in r.json()["outputs"]}
    assert httpx.get(f"{server.url}/v2/models/helmet/versions/9").status_code == 404
