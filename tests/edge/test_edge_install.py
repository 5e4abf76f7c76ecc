"""`pip install "mlkit[edge]"` in a fresh venv: no TensorFlow, KFP or KServe, and `mlkit joint run` works.

The venv is built from this checkout (a wheel, not an editable install) with pip's cache, so it costs
about a minute. The cloud is a real mlkit server started from the full environment running the tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
LITTLE = ROOT / "models" / "little" / "tflite"


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, **kw)


@pytest.fixture(scope="module")
def edge_venv(tmp_path_factory) -> Path:
    if os.environ.get("MLKIT_SKIP_EDGE_VENV"):
        pytest.skip("MLKIT_SKIP_EDGE_VENV is set")
    env_dir = tmp_path_factory.mktemp("edge") / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    src = tmp_path_factory.mktemp("src")
    # Copy only what a wheel build reads, not models/, data/ or .venv.
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    result = _run([str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q", f"{src}[edge]"])
    if result.returncode != 0 and "Could not find a version" in result.stderr + result.stdout:
        pytest.skip(f"the package index is unreachable: {result.stderr[-500:]}")
    assert result.returncode == 0, result.stderr[-3000:]
    return env_dir


def test_the_edge_venv_has_no_heavy_frameworks(edge_venv):
    py = edge_venv / "bin" / "python"
    code = ("import importlib.util as u, json; print(json.dumps({m: u.find_spec(m) is not None for m in "
            "['tensorflow', 'kfp', 'kserve', 'keras', 'ai_edge_litert', 'cv2', 'httpx', 'aiohttp', 'numpy', "
            "'pycocotools']}))")
    found = json.loads(_run([str(py), "-c", code]).stdout)
    assert found == {"tensorflow": False, "kfp": False, "kserve": False, "keras": False,
                     "ai_edge_litert": True, "cv2": True, "httpx": True, "aiohttp": True,
                     "numpy": True, "pycocotools": True}  # the agreement monitor needs it on the edge
    helped = _run([str(edge_venv / "bin" / "mlkit"), "joint", "run", "--help"])
    assert helped.returncode == 0 and "SERVICE.yaml" in helped.stdout


def test_joint_run_in_the_edge_venv_against_a_local_cloud(edge_venv, tmp_path):
    if not (LITTLE / "int8" / "model.tflite").is_file():
        pytest.skip("the committed little model is missing")
    from mlkit.cli.joint import EXAMPLE
    from mlkit.data.synthetic.video import VideoSpec, render_video
    from mlkit.serving.server import start_background_server

    video = tmp_path / "site.avi"
    render_video(video, VideoSpec(frames=8, fps=10.0, width=320, height=240, seed=5), show_progress=False)
    repo = tmp_path / "repo" / "big" / "1"
    repo.mkdir(parents=True)
    for name in ("model.tflite", "metadata.json"):
        shutil.copy2(LITTLE / "fp32" / name, repo / name)
    data = yaml.safe_load(EXAMPLE.replace("joint-output", str(tmp_path / "out")))
    data["spec"]["edgeWorker"]["model"]["url"] = str(LITTLE / "int8")
    data["spec"]["edgeWorker"]["workerSpec"]["parameters"][0]["value"] = str(video)
    data["spec"]["edgeWorker"]["hardExampleMining"] = {"name": "CloudOnly"}
    data["spec"]["edgeWorker"]["workerSpec"]["parameters"].append({"key": "watch_agreement", "value": "true"})
    server = start_background_server(tmp_path / "repo", log_path=tmp_path / "server.log")
    try:
        data["spec"]["cloudWorker"]["workerSpec"]["parameters"][0]["value"] = server.url
        data["spec"]["cloudWorker"]["workerSpec"]["parameters"][1]["value"] = "60000"
        config = tmp_path / "joint.yaml"
        config.write_text(yaml.safe_dump(data))
        result = _run([str(edge_venv / "bin" / "mlkit"), "joint", "run", str(config), "--no-progress"],
                      cwd=tmp_path, env={**os.environ, "PATH": f"{edge_venv / 'bin'}:{os.environ['PATH']}"})
    finally:
        server.stop()
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["frames"] == 8 and stats["cloud_results"] == 8 and stats["fallbacks"] == 0
    assert stats["hard_frames_total"] == 8 and stats["agreement_hard"] is not None  # scored on the edge
    print(f"edge venv: {_size_mb(edge_venv):.0f} MB; this (full) environment: {_size_mb(Path(sys.prefix)):.0f} MB")


def _size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6
