"""The joint-inference-video pipeline through kfp.local: clips, importers, publish, serve, evaluate with reuse."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mlkit.cli.pipeline import pipeline


@pytest.mark.slow
def test_local_run_renders_clips_evaluates_with_reuse_and_stops_the_server(models, tmp_path, monkeypatch):
    from mlkit.serving import lifecycle

    monkeypatch.setenv(lifecycle.STATE_DIR_ENV, str(tmp_path / "state"))
    little, big = models
    params = [f"little_uri={little}", f"big_uri={big}", "test_seeds=7001,7002", "tune_seeds=101", "frames=10",
              "reuse_frames=4", "serve_name=joint-video-test"]
    result = CliRunner().invoke(pipeline, ["run", "joint-inference-video", "--pipeline-root", str(tmp_path / "root"),
                                           *[a for p in params for a in ("--param", p)]])
    assert result.exit_code == 0, result.output[-4000:]
    assert "20 test frames (reuse: interpolate within 4 frames)" in result.output
    (run_dir,) = (tmp_path / "root").glob("joint-inference-video-*")
    report = json.loads(next(run_dir.glob("joint-inference-video/report/joint_evaluation.json")).read_text())
    assert report["tuned_on"] == "1 tuning clip" and "Keyframe" in {f["filter"] for f in report["filters"]}
    manifest = json.loads(next(run_dir.glob("generate-video/clips/clips.json")).read_text())
    assert manifest["test"] == ["test/A_7001.avi", "test/B_7002.avi"] and manifest["tune"] == ["tune/A_101.avi"]
    assert lifecycle.get("joint-video-test") is None  # run_local stops the cloud server it started


@pytest.mark.parametrize(("param", "message"), [
    ("tune_seeds=7001", "are both test and tuning clips"),
    ("reuse=always", "reuse"),
    ("frames=ten", "frames and reuse_frames must be integers"),
])
def test_bad_arguments_are_usage_errors(param, tmp_path, message):
    result = CliRunner().invoke(pipeline, ["run", "joint-inference-video", "--param", param,
                                           "--pipeline-root", str(tmp_path)])
    assert result.exit_code == 2 and message in result.output, result.output
