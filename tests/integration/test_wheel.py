"""The built wheel is the product: installed outside the checkout, its commands work from any folder.

The wheel is built from this checkout and installed with ``--no-deps`` into a fresh venv in a temporary
folder. Its dependencies come from the project's venv (a ``.pth`` line: the cache the issue allows), so the
only mlkit the fresh venv can import is the wheel's: the first test proves it, and ``pip check`` proves the
wheel's declared dependencies are met. Every command then runs with the temporary folder as its working
directory, far from the repository.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from mlkit.data.layout import load_split
from mlkit.models.export import VARIANTS
from mlkit.profiles import PROFILES

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _run(args, cwd, timeout=900, check=True):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["MLKIT_STATE_DIR"] = str(Path(cwd) / ".mlkit-servers")  # this test's servers only
    r = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, f"{args} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv bin folder, a work folder outside the checkout) with mlkit installed from a freshly built wheel."""
    root = tmp_path_factory.mktemp("wheel")
    dist = root / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist, REPO],
         cwd=root)
    (wheel,) = dist.glob("mlkit-*.whl")
    venv = root / "venv"
    # No pip or setuptools of its own (the project's pip installs into it), so that what it imports besides mlkit
    # is exactly the project's venv.
    _run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", venv], cwd=root)
    bin_dir = venv / "bin"
    site = Path(_run([bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=root).stdout.strip())
    (site / "_mlkit_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", bin_dir / "python", "install", "--no-deps", "--no-index", "-q",
          f"{wheel}[full]"], cwd=root)
    work = root / "work"
    work.mkdir()
    return bin_dir, work


def test_mlkit_comes_from_the_wheel_and_its_dependencies_are_met(installed):
    bin_dir, work = installed
    out = _run([bin_dir / "python", "-c", "import mlkit, mlkit.pipelines, mlkit.components.train, mlkit.pretrained; "
                "print(mlkit.__file__); print(mlkit.pipelines.__file__); print(mlkit.pretrained.__file__)"],
               cwd=work).stdout.split()
    assert all(Path(p).is_relative_to(bin_dir.parent) for p in out), out
    assert not any(Path(p).is_relative_to(REPO) for p in out), out
    _run([sys.executable, "-m", "pip", "--python", bin_dir / "python", "check"], cwd=work)


def test_compile_writes_the_golden_pipelines(installed):
    bin_dir, work = installed
    r = _run([bin_dir / "mlkit", "pipeline", "compile", "--out", "p"], cwd=work)
    written = sorted(p.name for p in (work / "p").glob("*.yaml"))
    assert written == sorted(p.name for p in (REPO / "pipelines" / "golden").glob("*.yaml")), r.stdout
    for name in written:
        assert yaml.safe_load((work / "p" / name).read_text()) == yaml.safe_load(
            (REPO / "pipelines" / "golden" / name).read_text()), name


def test_submit_compiles_and_reaches_for_the_host(installed):
    bin_dir, work = installed
    r = _run([bin_dir / "mlkit", "pipeline", "submit", "object-detection", "--host", "http://127.0.0.1:9"],
             cwd=work, timeout=300, check=False)
    # No Kubeflow here: the pipeline was found and compiled, and the refused connection is one clean line.
    assert r.returncode == 1, r.stdout + r.stderr
    assert "submitting object-detection to http://127.0.0.1:9 failed" in r.stderr
    assert "Traceback" not in r.stderr


def test_graph_validates_the_shipped_ensemble(installed):
    bin_dir, work = installed
    config = _run([bin_dir / "python", "-c", "from mlkit.models.bundled import bundled_root; "
                   "print(bundled_root() / 'ensemble' / 'config.json')"], cwd=work).stdout.strip()
    r = _run([bin_dir / "mlkit", "graph", "validate", config], cwd=work)
    assert "pipeline" in r.stdout


def test_incremental_run_loads_a_job_that_starts_from_the_shipped_model(installed):
    bin_dir, work = installed
    little = _run([bin_dir / "python", "-c", "from mlkit.models.bundled import bundled_model; "
                   "print(bundled_model('little'))"], cwd=work).stdout.strip()
    job = _run([bin_dir / "mlkit", "incremental", "example-config"], cwd=work).stdout
    job = job.replace("runs/incremental/initial-model", little).replace('"256,320"', '"192,256"')  # little's size
    (work / "job.yaml").write_text(job)
    r = _run([bin_dir / "mlkit", "incremental", "run", "job.yaml", "--max-polls", "1"], cwd=work)
    assert "Traceback" not in r.stdout + r.stderr
    # The pipeline a round would run is the installed one.
    _run([bin_dir / "python", "-c", "from mlkit.pipelines import incremental_learning as m; "
          "assert m.incremental_learning.name == 'incremental-learning'"], cwd=work)


SERVE_NAME = "object-detection"  # the pipeline's default serve_name


def _executor_output(run_dir: Path, task: str) -> dict:
    return json.loads((run_dir / task / "executor_output.json").read_text())


def _artifact(run_dir: Path, task: str, key: str) -> dict:
    return _executor_output(run_dir, task)["artifacts"][key]["artifacts"][0]


@pytest.fixture(scope="module")
def demo_run(installed):
    """`mlkit demo --from-scratch --profile test --keep-serving` from the wheel: the whole object-detection
    pipeline through kfp.local (two trainings, two 4-variant conversions), once; the tests below read its outputs.

    The serve step leaves a detached server running; its state is in the work folder's MLKIT_STATE_DIR (see
    ``_run``), which this process reads too, and the teardown stops it with the wheel's own command.
    """
    from mlkit.serving import lifecycle

    bin_dir, work = installed
    previous = os.environ.get(lifecycle.STATE_DIR_ENV)
    os.environ[lifecycle.STATE_DIR_ENV] = str(work / ".mlkit-servers")
    try:
        r = _run([bin_dir / "mlkit", "demo", "--profile", "test", "--from-scratch", "--out", "demo",
                  "--keep-serving"], cwd=work)
        (run_dir,) = (work / "demo" / "pipeline").glob("object-detection-*")
        yield run_dir, r
    finally:
        _run([bin_dir / "mlkit", "serve", "stop", SERVE_NAME], cwd=work, check=False)
        if previous is None:
            os.environ.pop(lifecycle.STATE_DIR_ENV, None)
        else:
            os.environ[lifecycle.STATE_DIR_ENV] = previous


def test_demo_prints_a_line_per_step_and_logs_to_a_file(installed, demo_run):
    _, work = installed
    _, r = demo_run
    lines = r.stdout.splitlines()
    assert len(lines) <= 60, r.stdout
    assert not r.stderr.strip(), r.stderr[-2000:]
    for step in ("generate-dataset", "train-little", "train-big", "convert-little", "evaluate-big", "publish",
                 "serve"):
        assert any(re.match(rf"\s+{step}\s+\d+\.\d s  ", line) for line in lines), (step, r.stdout)
    log = work / "demo" / "demo.log"
    assert f"KFP and TensorFlow logs: {log}" in r.stdout
    assert "Executing task" in log.read_text()  # the KFP chatter went to the file
    assert (work / "demo" / "report.json").is_file() and (work / "demo" / "predictions.jpg").is_file()


def test_models_tflite_and_metrics_exist(demo_run):
    run_dir, _ = demo_run
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


def test_gate_passed_and_publish_ran(demo_run):
    """The test profile's gate is 0.0, so the dsl.If branch must run and publish both int8 models."""
    run_dir, r = demo_run
    repo = Path(_artifact(run_dir, "publish", "repository")["uri"])
    for name, task in (("little", "convert"), ("big", "convert-2")):
        published = repo / name / "1" / "model.tflite"
        source = Path(_artifact(run_dir, task, "tflite")["uri"]) / "int8" / "model.tflite"
        assert published.read_bytes() == source.read_bytes()
        assert json.loads((repo / name / "1" / "metadata.json").read_text())["name"] == name
    assert re.search(r"mAP gate: big int8 mAP@0.5 \d\.\d{3} >= 0 -> passed, models published", r.stdout)


def test_serve_step_left_a_working_server(demo_run):
    """After publish, the serve step started a detached server on the repository; the demo printed its URL."""
    import httpx
    import numpy as np

    from mlkit.client.http import ServingClient
    from mlkit.serving import lifecycle

    run_dir, r = demo_run
    url = _executor_output(run_dir, "serve")["parameterValues"]["url"]
    endpoint = _artifact(run_dir, "serve", "endpoint")["metadata"]
    assert endpoint["url"] == url and endpoint["mode"] == "local"
    assert endpoint["model_dir"] == str(Path(_artifact(run_dir, "publish", "repository")["uri"]).resolve())
    assert f"the server keeps running at {url}" in r.stdout
    state = lifecycle.get(SERVE_NAME)
    assert state is not None and state.url == url and state.alive
    for model in ("little", "big"):
        assert httpx.get(f"{url}/v2/models/{model}/ready", timeout=5).status_code == 200
    image = np.zeros((96, 128, 3), np.uint8)
    with ServingClient(url, "big", encoding="png") as client:
        (detections,) = client.predict([image], score_threshold=0.0)
    assert len(detections.scores) == len(detections.boxes)


def test_generated_dataset_matches_the_profile(demo_run):
    run_dir, _ = demo_run
    dataset = run_dir / "generate-dataset" / "dataset"
    assert len(load_split(dataset, "train")) == PROFILES["test"].data.train
    assert not (run_dir / "download").exists()  # the Else branch did not run
