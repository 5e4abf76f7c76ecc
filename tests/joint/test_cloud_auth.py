"""The joint edge worker's cloud client against a real cloud server that requires a bearer token."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from mlkit.cli import main
from mlkit.errors import MlkitError
from mlkit.joint.cloud import CloudClient, CloudConfig
from tests.joint.conftest import joint_spec, run_worker

CLOUD_ONLY = {"method": "CloudOnly", "param": {}}
EVERY_FRAME = {"name": "Uncertainty", "parameters": [{"key": "threshold_uncertainty", "value": "0.0"}]}


@pytest.fixture(scope="module")
def auth_cloud(cloud_repo, start_protected):
    return start_protected(cloud_repo)


def config(url: str, n: int, **kw) -> CloudConfig:
    return CloudConfig(url, "big", timeout_s=60, score_threshold=0.05, max_in_flight=n, **kw)


def test_the_cloud_client_sends_the_token(edge_model, frames, auth_cloud, auth_token):
    with CloudClient(config(auth_cloud.url, len(frames), token=auth_token)) as cloud:
        results, stats = run_worker(edge_model, frames, cloud, CLOUD_ONLY)
    assert all(r.source == "cloud" and r.fallback is None for r in results)
    assert stats["cloud_results"] == len(frames)
    assert auth_token not in repr(config(auth_cloud.url, 1, token=auth_token))


def test_without_the_token_every_frame_keeps_its_edge_result_and_says_why(frames, auth_cloud):
    with CloudClient(config(auth_cloud.url, 2)) as cloud:
        outcome = cloud.submit(frames[0].image).result(timeout=60)
    assert outcome.fallback == "http_4xx" and outcome.detections is None
    assert outcome.detail.startswith("401: ") and "requires a bearer token" in outcome.detail
    assert "--auth-token-file" in outcome.detail


def test_a_token_no_header_can_carry_is_refused():
    with pytest.raises(MlkitError, match="without spaces"):
        CloudConfig("http://127.0.0.1:1", "big", token="two words")


def _with_token_file(spec_path, path) -> None:
    data = yaml.safe_load(spec_path.read_text())
    data["spec"]["cloudWorker"]["workerSpec"]["parameters"].append({"key": "auth_token_file", "value": str(path)})
    spec_path.write_text(yaml.safe_dump(data))


def test_joint_run_reads_the_token_file_of_the_spec(video, auth_cloud, token_file, tmp_path, caplog):
    spec = joint_spec(tmp_path, video, auth_cloud.url, EVERY_FRAME)
    with caplog.at_level("WARNING", logger="mlkit.joint.worker"):
        result = CliRunner().invoke(main, ["joint", "run", str(spec), "--no-progress"])
    assert result.exit_code == 0, result.output
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "cloud http_4xx (401: " in warnings[0], warnings  # without the key: said once
    assert "requires a bearer token" in warnings[0]
    _with_token_file(spec, token_file)
    result = CliRunner().invoke(main, ["joint", "run", str(spec), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["cloud_results"] == 10


def test_a_missing_token_file_stops_the_run_before_it_starts(video, tmp_path):
    spec = joint_spec(tmp_path, video, "http://127.0.0.1:1", EVERY_FRAME)
    _with_token_file(spec, tmp_path / "missing")
    result = CliRunner().invoke(main, ["joint", "run", str(spec), "--no-progress"])
    assert result.exit_code == 2 and f"cannot read the auth token file {tmp_path / 'missing'}" in result.output
    assert "Traceback" not in result.output


def test_joint_evaluate_asks_a_protected_cloud_with_the_token_file(video, auth_cloud, token_file, tmp_path):
    from tests.joint.conftest import LITTLE

    args = ["joint", "evaluate", "--video", str(video), "--edge-model", str(LITTLE / "int8"),
            "--cloud-endpoint", auth_cloud.url, "--out", str(tmp_path / "out")]
    runner = CliRunner()
    refused = runner.invoke(main, args)
    assert refused.exit_code != 0 and "requires a bearer token" in refused.output, refused.output
    assert "Traceback" not in refused.output
    ok = runner.invoke(main, [*args, "--auth-token-file", str(token_file)])
    assert ok.exit_code == 0, ok.output
    assert json.loads((tmp_path / "out" / "joint_evaluation.json").read_text())["num_images"] == 10
