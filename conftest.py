"""Repository-level pytest setup, and the fixture the joint components' tests share."""

import os
import shutil
from pathlib import Path

import pytest

# TensorFlow's C++ banner and oneDNN notes are noise in test logs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

LITTLE = Path(__file__).resolve().parent / "models" / "little" / "tflite"


@pytest.fixture(scope="module")
def little_cloud(tmp_path_factory):
    """A background server on 127.0.0.1 serving the little fp32 model as "big" (the real big model is too slow)."""
    if not (LITTLE / "int8" / "model.tflite").is_file():
        pytest.skip("the committed little model is missing")
    from mlkit.serving.server import start_background_server

    root = tmp_path_factory.mktemp("cloud")
    repo = root / "repo" / "big" / "1"
    repo.mkdir(parents=True)
    for name in ("model.tflite", "metadata.json"):
        shutil.copy2(LITTLE / "fp32" / name, repo / name)
    server = start_background_server(root / "repo", log_path=root / "server.log")
    yield server
    server.stop()
