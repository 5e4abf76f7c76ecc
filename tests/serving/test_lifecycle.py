"""Detached local servers: start (real subprocess in its own session), status, stop, through the API and the CLI."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from mlkit.errors import MlkitError
from mlkit.serving import lifecycle


@pytest.fixture
def state_dir(tmp_path, monkeypatch):
    folder = tmp_path / "state"
    monkeypatch.setenv("MLKIT_STATE_DIR", str(folder))
    yield folder
    for state, _ in lifecycle.status():  # never leave a server behind, whatever the test did
        lifecycle.stop(state.name, timeout=5)


def _cli(*args):
    from mlkit.cli import main

    result = CliRunner().invoke(main, ["serve", *map(str, args)])
    assert "Traceback" not in result.output, result.output
    return result


def test_start_status_stop(model_repo, state_dir):
    state = lifecycle.start("unit", model_repo, timeout=90)
    assert os.getpgid(state.pid) == state.pid  # its own session and process group: detached
    assert httpx.get(f"{state.url}/v2/models/helmet/ready", timeout=5).status_code == 200
    recorded = json.loads((state_dir / "unit.json").read_text())
    assert recorded["pid"] == state.pid and recorded["url"] == state.url
    assert {"grpc_url", "model_dir", "log"} <= set(recorded)
    assert [(s.name, alive) for s, alive in lifecycle.status()] == [("unit", True)]

    with pytest.raises(MlkitError, match="already running"):
        lifecycle.start("unit", model_repo)

    assert lifecycle.stop("unit") is True
    assert not lifecycle.get("unit") and not (state_dir / "unit.json").exists()
    assert not state.alive
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{state.url}/v2/health/ready", timeout=2)
    assert lifecycle.stop("unit") is False


def test_busy_port_is_replaced_and_cli_round_trip(model_repo, state_dir):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = _cli("start", "cli", "--model-dir", model_repo, "--port", port, "--grpc-port", 0)
        assert r.exit_code == 0, r.output
    state = lifecycle.get("cli")
    assert state.http_port != port and f"ready at {state.url}" in r.output
    assert "models: helmet" in r.output, r.output
    assert "serves no model" not in r.output

    r = _cli("status", "--json")
    (row,) = json.loads(r.output)
    assert row["name"] == "cli" and row["alive"] is True
    assert "cli" in _cli("status").output

    r = _cli("stop", "cli")
    assert r.exit_code == 0 and "server 'cli' stopped" in r.output
    assert "no servers recorded" in _cli("status").output
    r = _cli("stop", "cli")
    assert r.exit_code == 2 and "no server named 'cli'" in r.output


def test_start_on_an_empty_folder_warns(state_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    r = _cli("start", "empty", "--model-dir", tmp_path / "empty", "--port", 0, "--grpc-port", 0)
    try:
        assert r.exit_code == 0 and "warning: it serves no model yet" in r.output, r.output
    finally:
        _cli("stop", "empty")


def test_stale_state_and_sigkill_fallback(state_dir, tmp_path, caplog):
    """A dead pid is reported as dead and cleaned up; a process that ignores SIGTERM is killed."""
    import subprocess
    import sys

    state_dir.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = {"name": "stale", "pid": dead.pid, "url": "http://127.0.0.1:1", "grpc_url": "127.0.0.1:2",
             "model_dir": str(tmp_path), "log": str(tmp_path / "x.log"), "host": "127.0.0.1", "http_port": 1,
             "grpc_port": 2, "started": 0.0}
    (state_dir / "stale.json").write_text(json.dumps(stale))
    assert [(s.name, alive) for s, alive in lifecycle.status()] == [("stale", False)]
    assert lifecycle.stop("stale") is False and not (state_dir / "stale.json").exists()

    # argv mentions mlkit.serving, so the recycled-pid guard accepts it
    stubborn = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
                                 "signal.SIG_IGN); print('ready', flush=True); time.sleep(60)", "mlkit.serving"],
                                start_new_session=True, stdout=subprocess.PIPE)
    try:
        assert stubborn.stdout.readline().strip() == b"ready"
        (state_dir / "stubborn.json").write_text(json.dumps({**stale, "name": "stubborn", "pid": stubborn.pid}))
        assert lifecycle.stop("stubborn", timeout=0.5) is True
        stubborn.wait(5)  # lifecycle already reaped its exit status (it is our child here)
        assert "ignored SIGTERM for 0.5s; killing it" in caplog.text
    finally:
        if stubborn.poll() is None:
            stubborn.kill()
            stubborn.wait()


def test_errors(state_dir, tmp_path):
    with pytest.raises(MlkitError, match="does not exist"):
        lifecycle.start("x", tmp_path / "missing")
    with pytest.raises(MlkitError, match="invalid"):
        lifecycle.start("../evil", tmp_path)
    state_dir.mkdir(parents=True)
    (state_dir / "broken.json").write_text("{")
    with pytest.raises(MlkitError, match="corrupt"):
        lifecycle.get("broken")


def test_plain_serve_keeps_working_without_a_subcommand(monkeypatch, tmp_path):
    """Backwards compatibility: `mlkit serve --model-dir DIR --port N` still runs the foreground server."""
    import mlkit.serving.server as server

    seen = {}
    monkeypatch.setattr(server, "run_server", lambda model_dir, **kw: seen.update(kw, model_dir=model_dir))
    http, grpc = server.free_port(), server.free_port()
    r = _cli("--model-dir", tmp_path, "--port", http, "--grpc-port", grpc, "--max-batch-size", 4)
    assert r.exit_code == 0, r.output
    assert seen["model_dir"] == tmp_path and seen["http_port"] == http and seen["max_batch_size"] == 4
    assert seen["host"] == "127.0.0.1"
    r = _cli()
    assert r.exit_code == 2 and "Missing option '--model-dir'" in r.output


def test_plain_serve_refuses_a_busy_port_or_a_bad_host_before_starting(monkeypatch, tmp_path):
    import mlkit.serving.server as server

    monkeypatch.setattr(server, "run_server", lambda *a, **kw: pytest.fail("the server should not start"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = _cli("--model-dir", tmp_path, "--port", server.free_port(), "--grpc-port", port)
        assert r.exit_code == 2 and f"port {port} on 127.0.0.1 is in use; choose another --grpc-port" in r.output
    r = _cli("--model-dir", tmp_path, "--host", "not a host", "--port", server.free_port())
    assert r.exit_code == 2 and "--host 'not a host' is not an address" in r.output
    r = _cli("--model-dir", tmp_path, "--port", 9009, "--grpc-port", 9009)
    assert r.exit_code == 2 and "both 9009" in r.output


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux-only")
def test_background_server_pinned_to_cpus_with_every_thread(model_repo):
    from mlkit.serving.server import start_background_server

    cpu = min(os.sched_getaffinity(0))
    with start_background_server(model_repo, cpus={cpu}) as srv:
        threads = list(Path(f"/proc/{srv.proc.pid}/task").iterdir())
        assert len(threads) > 1  # the interpreter, event loop and model threads all started after pinning
        for task in threads:
            assert os.sched_getaffinity(int(task.name)) == {cpu}, task.name
