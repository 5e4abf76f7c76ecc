"""schemathesis over the server's own OpenAPI document: no input, however odd, gets a 5xx or unloads a model.

Every route but ``:explain`` (no mlkit model explains), with a real model name in the path, in the default
model control (``poll``), where the repository API must refuse to unload.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import httpx
import pytest

pytest.importorskip("schemathesis")

MIN_CASES = 500


def test_schemathesis_finds_no_server_error_and_unloads_nothing(tmp_path):
    from mlkit.models.bundled import bundled_model
    from mlkit.serving.server import start_background_server

    repo = tmp_path / "repo"
    shutil.copytree(bundled_model("little", "int8"), repo / "big" / "1")
    (tmp_path / "schemathesis.toml").write_text('[parameters]\n"path.model_name" = "big"\n')
    st = [sys.executable, "-m", "schemathesis.cli"]  # the installed schemathesis, whatever PATH says
    with start_background_server(repo, log_path=tmp_path / "server.log") as server:
        # one worker: hypothesis's source cache is not thread-safe and can fail a run with its own error
        run = subprocess.run([*st, "run", f"{server.url}/openapi.json", "--checks", "not_a_server_error",
                              "--exclude-path-regex", ":explain", "--max-examples", "60", "--workers", "1",
                              "--seed", "7", "--no-color", "--report", "json",
                              "--report-dir", str(tmp_path / "report")],
                             cwd=tmp_path, capture_output=True, text=True, timeout=600)
        ready = httpx.get(f"{server.url}/v2/models/big/ready", timeout=5)
        unload = httpx.post(f"{server.url}/v2/repository/models/big/unload", timeout=5)
        log = server.log_text()
    [report_path] = (tmp_path / "report").glob("*.json")
    report = json.loads(report_path.read_text())
    cases = report["test_cases"]
    assert run.returncode == 0, run.stdout[-4000:]
    assert cases["generated"] >= MIN_CASES, cases
    assert cases["with_failures"] == 0 and not report["failures"] and not report["errors"], run.stdout[-4000:]
    assert report["operations"]["tested"] == report["operations"]["selected"] == 16, report["operations"]
    assert ready.status_code == 200 and ready.json()["ready"] is True  # nothing unloaded the model
    assert unload.status_code == 403 and "--model-control explicit" in unload.json()["error"]
    assert "Traceback" not in log
