"""The joint-inference pipeline through kfp.local: dataset, importers, publish, serve, evaluate."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mlkit.cli.pipeline import pipeline


@pytest.mark.slow
def test_local_run_serves_evaluates_and_stops_the_server(models, tmp_path, monkeypatch):
    from mlkit.serving import lifecycle

    monkeypatch.setenv(lifecycle.STATE_DIR_ENV, str(tmp_path / "state"))
    little, big = models
    result = CliRunner().invoke(pipeline, ["run", "joint-inference", "--profile", "test", "--pipeline-root",
                                           str(tmp_path / "root"), "--param", f"little_uri={little}",
                                           "--param", f"big_uri={big}", "--param", "serve_name=joint-test"])
    assert result.exit_code == 0, result.output[-4000:]
    assert "edge-only mAP@0.5" in result.output and "bytes per uploaded frame" in result.output
    (run_dir,) = (tmp_path / "root").glob("joint-inference-*")
    report = json.loads(next(run_dir.glob("joint-inference/report/joint_evaluation.json")).read_text())
    assert report["num_images"] == 8 and {f["filter"] for f in report["filters"]} >= {"Random", "Uncertainty"}
    served = json.loads((run_dir / "serve" / "executor_output.json").read_text())["parameterValues"]["url"]
    assert served.startswith("http://127.0.0.1:")
    assert lifecycle.get("joint-test") is None  # run_local stops the cloud server it started


def test_options_the_pipeline_does_not_take_are_refused(tmp_path):
    result = CliRunner().invoke(pipeline, ["run", "joint-inference", "--map-threshold", "0.5",
                                           "--pipeline-root", str(tmp_path)])
    assert result.exit_code == 2 and "pipeline joint-inference has no option --map-threshold" in result.output
    result = CliRunner().invoke(pipeline, ["run", "joint-inference", "--param", "colour=blue",
                                           "--pipeline-root", str(tmp_path)])
    assert result.exit_code == 2 and "has no argument 'colour'" in result.output
