"""Model repository: versions, hot reload under load, model control and KServe load/unload endpoints."""

from __future__ import annotations

import threading
import time

import httpx
import pytest


@pytest.fixture()
def live(exported_model, tmp_path, h, request):
    """A server of ``helmet`` version 1; ``request.param``: interpreters per model version, or a dict of
    ``start_background_server`` options (parametrize indirectly)."""
    from mlkit.serving.server import start_background_server

    repo = tmp_path / "repo"
    h.make_version(repo, "helmet", 1, exported_model)
    param = getattr(request, "param", 1)
    options = param if isinstance(param, dict) else {"instances": param}
    with start_background_server(repo, poll_seconds=0.3, max_batch_size=4, max_latency_ms=5,
                                 log_path=tmp_path / "server.log", **options) as server:
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
    (tmp_path / "a" / "³").mkdir()  # a digit to str.isdigit(), not to int(): not a version folder
    assert sorted(scan_versions(tmp_path)["a"]) == [3, 10]


def test_version_key_parses_and_names_the_versions(exported_model, tmp_path, h):
    from kserve.errors import InvalidInput, ModelNotFound

    from mlkit.serving.repository import TFLiteModelRepository, parse_version

    assert parse_version("12") == 12 and parse_version(3) == 3 and parse_version("007") == 7
    for bad in ("³", "", "-1", "+1", "1.5", " 1", "٣"):
        with pytest.raises(InvalidInput, match="is malformed: a model version is the name of a version folder"):
            parse_version(bad)
    h.make_version(tmp_path, "a", 1, exported_model)
    h.make_version(tmp_path, "a", 4, exported_model)
    repo = TFLiteModelRepository(tmp_path)
    repo.load_models()
    try:
        assert repo.version_key("a", "04") == "a@4" and repo.get_model("a@4").version == 4
        assert repo.get_model("a@³") is None  # no ValueError from int()
        with pytest.raises(ModelNotFound, match=r"^model a has no version 2; its versions: 1, 4$"):
            repo.version_key("a", "2")
        with pytest.raises(ModelNotFound, match="Model with name b does not exist"):
            repo.version_key("b", "1")
        with pytest.raises(InvalidInput):
            repo.version_key("b", "x")  # the version is checked first: the same 400 whatever the name
    finally:
        repo.stop_all()


def test_only_the_newest_versions_stay_loaded(exported_model, tmp_path, h):
    import asyncio

    from mlkit.serving.repository import TFLiteModelRepository

    for v in (1, 2, 3):
        h.make_version(tmp_path, "a", v, exported_model)
    repo = TFLiteModelRepository(tmp_path, keep_versions=2)
    repo.load_models()

    async def publish_and_poll():
        old = repo.get_model("a@2")
        h.make_version(tmp_path, "a", 4, exported_model)
        (tmp_path / "a" / "4" / "READY").touch()
        added = await repo.poll_once()
        await asyncio.gather(*repo._retiring)  # the old version is freed once its requests ended
        return added, old

    try:
        assert sorted(repo.versions["a"]) == [2, 3]  # version 1 is on disk but never loaded
        added, old = asyncio.run(publish_and_poll())
        assert added == ["a@4"] and sorted(repo.versions["a"]) == [3, 4] and repo.served_version("a") == 4
        assert not old.ready and repo.get_model("a@2") is None
        assert asyncio.run(repo.poll_once()) == []  # an unloaded old version is not loaded again
    finally:
        repo.stop_all()
    with pytest.raises(ValueError, match="keep_versions must be >= 1"):
        TFLiteModelRepository(tmp_path, keep_versions=0)


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


@pytest.mark.parametrize("live", [{"model_control": "explicit"}], indirect=True, ids=["explicit"])
def test_explicit_model_control_loads_and_unloads_through_the_api(live, exported_model, images, h):
    server, repo = live
    body, headers = h.v2_binary(images[:1])
    assert httpx.get(f"{server.url}/v2/models").json()["models"] == ["helmet"]
    r = httpx.post(f"{server.url}/v2/repository/models/helmet/unload")
    assert r.status_code == 200 and r.json() == {"name": "helmet", "unload": True}
    assert httpx.post(f"{server.url}/v2/models/helmet/infer", content=body, headers=headers).status_code == 404
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

    # no watcher in explicit (Triton's rule): a new version is served once a client asks for it
    h.make_version(repo, "helmet", 2, exported_model)
    time.sleep(1.0)  # three polls' worth
    assert httpx.get(f"{server.url}/v2/models/helmet/versions/2/ready").status_code == 404
    assert httpx.post(f"{server.url}/v2/repository/models/helmet/load", timeout=30).status_code == 200
    r = httpx.post(f"{server.url}/v2/models/helmet/infer", content=body, headers=headers, timeout=30)
    assert r.status_code == 200 and r.json()["model_version"] == "2"

    # gRPC: the same repository API
    import grpc
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc

    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)
        r = stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="helmet"), timeout=30)
        assert r.isUnloaded
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelReady(pb.ModelReadyRequest(name="helmet"), timeout=30)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="helmet"), timeout=30).isLoaded
        assert stub.ModelReady(pb.ModelReadyRequest(name="helmet", version="2"), timeout=30).ready
    assert "model control explicit" in server.log_text()
    assert "watching" not in server.log_text()


@pytest.mark.parametrize("live", [{"model_control": "none"}], indirect=True, ids=["none"])
def test_model_control_none_serves_what_was_there_at_start(live, exported_model, images, h):
    server, repo = live
    h.make_version(repo, "helmet", 2, exported_model)
    time.sleep(1.0)  # three polls' worth, had there been a watcher
    assert httpx.get(f"{server.url}/v2/models/helmet/versions/2/ready").status_code == 404
    for action in ("load", "unload"):
        r = httpx.post(f"{server.url}/v2/repository/models/helmet/{action}", timeout=30)
        assert r.status_code == 403 and r.json()["error"].startswith("model control is 'none': loading and "
                                                                     "unloading through the API needs "
                                                                     "--model-control explicit"), r.text
    body, headers = h.v2_binary(images[:1])
    r = httpx.post(f"{server.url}/v2/models/helmet/infer", content=body, headers=headers, timeout=30)
    assert r.status_code == 200 and r.json()["model_version"] == "1"


def test_model_control_options(tmp_path, monkeypatch):
    """One list of modes for the image entrypoint, the CLI and build_server; the default keeps hot reload; the
    option reaches the server from `mlkit serve` and from `mlkit serve start`."""
    from click.testing import CliRunner

    import mlkit.serving.server as server_module
    from mlkit.cli import main
    from mlkit.cli.serve import serve, start_cmd
    from mlkit.errors import MlkitError
    from mlkit.serving.__main__ import parse_args
    from mlkit.serving.server import MODEL_CONTROL_MODES, build_server

    assert MODEL_CONTROL_MODES == ("none", "poll", "explicit")
    assert parse_args([]).model_control == "poll" and parse_args(["--model-control", "explicit"]).model_control
    with pytest.raises(SystemExit):
        parse_args(["--model-control", "manual"])
    for command in (serve, start_cmd):
        (option,) = [p for p in command.params if p.name == "model_control"]
        assert tuple(option.type.choices) == MODEL_CONTROL_MODES and option.default == "poll"
    r = CliRunner().invoke(main, ["serve", "start", "--model-dir", ".", "--model-control", "manual"])
    assert r.exit_code == 2 and "'manual' is not one of 'none', 'poll', 'explicit'" in r.output
    with pytest.raises(MlkitError, match="model control 'manual' is not one of none, poll, explicit"):
        build_server(".", model_control="manual")

    seen = {}
    monkeypatch.setattr(server_module, "run_server", lambda model_dir, **kw: seen.update(kw))
    r = CliRunner().invoke(main, ["serve", "--model-dir", str(tmp_path), "--port", str(server_module.free_port()),
                                  "--grpc-port", str(server_module.free_port()), "--model-control", "none"])
    assert r.exit_code == 0 and seen["model_control"] == "none", r.output
    command = server_module.entrypoint_command("127.0.0.1", 1, 2, max_batch_size=1, max_latency_ms=5, threads=1,
                                               instances=1, model_control="explicit")
    assert command[command.index("--model-control") + 1] == "explicit"
    assert parse_args(command[3:]).model_control == "explicit"  # what `mlkit serve start` runs

    def launched(*args, **kw):
        seen["start"] = kw["model_control"]
        raise MlkitError("not started")

    monkeypatch.setenv("MLKIT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(server_module, "entrypoint_command", launched)
    r = CliRunner().invoke(main, ["serve", "start", "x", "--model-dir", str(tmp_path), "--model-control", "explicit"])
    assert seen["start"] == "explicit" and "not started" in r.output, r.output
