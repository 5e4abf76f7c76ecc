"""The built wheel is the product: installed outside the checkout, its commands work from any folder.

The wheel is built from this checkout and installed with ``--no-deps`` into a fresh venv in a temporary
folder. Its dependencies come from the project's venv (a ``.pth`` line: the cache the issue allows), so the
only mlkit the fresh venv can import is the wheel's: the first test proves it, and ``pip check`` proves the
wheel's declared dependencies are met. Every command then runs with the temporary folder as its working
directory, far from the repository.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

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


def test_demo_runs_the_pipeline_quietly(installed):
    bin_dir, work = installed
    r = _run([bin_dir / "mlkit", "demo", "--profile", "test", "--from-scratch", "--out", "demo"], cwd=work)
    lines = r.stdout.splitlines()
    assert len(lines) <= 60, r.stdout
    assert not r.stderr.strip(), r.stderr[-2000:]
    for step in ("generate-dataset", "train-little", "train-big", "convert-little", "evaluate-big", "publish",
                 "serve"):
        assert any(re.match(rf"\s+{step}\s+\d+\.\d s  ", line) for line in lines), (step, r.stdout)
    assert "mAP gate: big int8 mAP@0.5" in r.stdout
    log = work / "demo" / "demo.log"
    assert f"KFP and TensorFlow logs: {log}" in r.stdout
    assert "Executing task" in log.read_text()  # the KFP chatter went to the file
    assert (work / "demo" / "report.json").is_file() and (work / "demo" / "predictions.jpg").is_file()
