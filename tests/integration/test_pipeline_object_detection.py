"""The object-detection pipeline: one real kfp.local run (test profile), the download branch.

The whole-pipeline run is the costly part (about 3 minutes on 2 busy cores: two trainings, two
4-variant conversions); it happens once per module, through `mlkit pipeline run`, and every slow test
here reads its outputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlkit.data.layout import load_split
from mlkit.models.export import VARIANTS
from mlkit.pipeline_cli import pipeline
from mlkit.profiles import PROFILES


def _executor_output(run_dir: Path, task: str) -> dict:
    return json.loads((run_dir / task / "executor_output.json").read_text())


def _artifact(run_dir: Path, task: str, key: str) -> dict:
    return _executor_output(run_dir, task)["artifacts"][key]["artifacts"][0]


SERVE_NAME = "object-detection"  # the pipeline's default serve_name


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    """One kfp.local run of the whole pipeline on the test profile, through the CLI.

    The serve step leaves a detached server running; its state goes to a temporary MLKIT_STATE_DIR
    (inherited by the kfp.local task processes) and the teardown stops it.
    """
    import os

    from mlkit.serving import lifecycle

    root = tmp_path_factory.mktemp("pipeline-root")
    previous = os.environ.get(lifecycle.STATE_DIR_ENV)
    os.environ[lifecycle.STATE_DIR_ENV] = str(tmp_path_factory.mktemp("serve-state"))
    try:
        result = CliRunner().invoke(pipeline, ["run", "object-detection", "--profile", "test",
                                               "--pipeline-root", str(root)])
        assert result.exit_code == 0, result.output[-4000:]
        (run_dir,) = root.glob("object-detection-*")
        yield run_dir, result.output
    finally:
        lifecycle.stop(SERVE_NAME)
        if previous is None:
            os.environ.pop(lifecycle.STATE_DIR_ENV, None)
        else:
            os.environ[lifecycle.STATE_DIR_ENV] = previous


@pytest.mark.slow
def test_models_tflite_and_metrics_exist(pipeline_run):
    run_dir, _ = pipeline_run
    trained = {_artifact(run_dir, t, "model")["metadata"]["name"]: t for t in ("train", "train-2")}
    assert set(trained) == {"little", "big"}
    for task in trained.values():
        model = Path(_artifact(run_dir, task, "model")["uri"])
        assert (model / "model.weights.h5").is_file() and (model / "config.json").is_file()
        metrics = _artifact(run_dir, task, "metrics")["metadata"]
        assert 0.0 <= metrics["map50"] <= 1.0 and metrics["params"] > 0
    for task in ("convert", "convert-2"):
        tflite = Path(_artifact(run_dir, task, "tflite")["uri"])
        for variant in VARIANTS:
            assert (tflite / variant / "model.tflite").stat().st_size > 1000, (task, variant)
            assert json.loads((tflite / variant / "metadata.json").read_text())["variant"] == variant
        fidelity = _artifact(run_dir, task, "fidelity")["metadata"]
        assert {f"{v}_map50" for v in VARIANTS} <= set(fidelity)
    for task in ("evaluate", "evaluate-2"):
        out = _executor_output(run_dir, task)
        map50 = out["parameterValues"]["Output"]
        assert 0.0 <= map50 <= 1.0
        assert out["artifacts"]["metrics"]["artifacts"][0]["metadata"]["map50"] == pytest.approx(map50)
        matrix = out["artifacts"]["confusion"]["artifacts"][0]["metadata"]["confusionMatrix"]
        assert [s["displayName"] for s in matrix["annotationSpecs"]][-1] == "background"


@pytest.mark.slow
def test_gate_passed_and_publish_ran(pipeline_run):
    """The test profile's gate is 0.0, so the dsl.If branch must run and publish both int8 models."""
    run_dir, output = pipeline_run
    repo = Path(_artifact(run_dir, "publish", "repository")["uri"])
    for name, task in (("little", "convert"), ("big", "convert-2")):
        published = repo / name / "1" / "model.tflite"
        source = Path(_artifact(run_dir, task, "tflite")["uri"]) / "int8" / "model.tflite"
        assert published.read_bytes() == source.read_bytes()
        assert json.loads((repo / name / "1" / "metadata.json").read_text())["name"] == name
    assert "passed, models published" in output
    assert f"repository:   {repo}" in output


@pytest.mark.slow
def test_serve_step_left_a_working_server(pipeline_run):
    """After publish, the serve step started a detached server on the repository; the summary prints its URL."""
    import httpx
    import numpy as np

    from mlkit.client.http import ServingClient
    from mlkit.serving import lifecycle

    run_dir, output = pipeline_run
    url = _executor_output(run_dir, "serve")["parameterValues"]["url"]
    endpoint = _artifact(run_dir, "serve", "endpoint")["metadata"]
    assert endpoint["url"] == url and endpoint["mode"] == "local"
    assert endpoint["model_dir"] == str(Path(_artifact(run_dir, "publish", "repository")["uri"]).resolve())
    assert f"served at:    {url}" in output
    state = lifecycle.get(SERVE_NAME)
    assert state is not None and state.url == url and state.alive
    for model in ("little", "big"):
        assert httpx.get(f"{url}/v2/models/{model}/ready", timeout=5).status_code == 200
    image = np.zeros((96, 128, 3), np.uint8)
    with ServingClient(url, "big", encoding="png") as client:
        (detections,) = client.predict([image], score_threshold=0.0)
    assert len(detections.scores) == len(detections.boxes)


@pytest.mark.slow
def test_generated_dataset_matches_the_profile(pipeline_run):
    run_dir, _ = pipeline_run
    dataset = run_dir / "generate-dataset" / "dataset"
    assert len(load_split(dataset, "train")) == PROFILES["test"].data.train
    assert not (run_dir / "download").exists()  # the Else branch did not run


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*non-Python base image:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:.*have no effect in the current local runner:UserWarning")
def test_download_branch_of_the_dataset_source(tmp_path):
    """The nested dataset-source pipeline (If/Else + OneOf + importer) with a local COCO folder."""
    from kfp import local

    from mlkit.data.synthetic.generate import SyntheticSpec, generate_dataset
    from mlkit.pipelines.object_detection import build_dataset_source

    generate_dataset(tmp_path / "src", SyntheticSpec(train=10, val=0, test=0, seed=5), show_progress=False)
    coco = tmp_path / "src" / "train"  # annotations.json + images/: a plain COCO folder, no dataset.json
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    task = build_dataset_source()(dataset_uri=f"file://{coco}", profile="test")

    dataset = Path(task.output.path)
    assert dataset.parent.name == "download"
    assert sum(len(load_split(dataset, s)) for s in ("train", "val", "test")) == 10
    assert len(load_split(dataset, "test")) == 2  # the download component's default 20 % test split
    (run_dir,) = (tmp_path / "root").glob("dataset-source-*")
    assert not (run_dir / "generate-dataset").exists()  # the If branch did not run
