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


TEST_TOKEN = "test-token-0123456789"  # the bearer token of the protected servers the tests start


@pytest.fixture(scope="module")
def auth_token() -> str:
    return TEST_TOKEN


@pytest.fixture(scope="module")
def token_file(tmp_path_factory, auth_token) -> Path:
    """A file holding ``auth_token``, as a server's ``--auth-token-file`` (a trailing newline, as editors write)."""
    path = tmp_path_factory.mktemp("auth") / "token"
    path.write_text(auth_token + "\n")
    return path


@pytest.fixture(scope="module")
def start_protected(token_file, tmp_path_factory):
    """``start_protected(repo)``: a background server on ``repo`` that requires the token in ``token_file``,
    stopped when the test module ends."""
    from mlkit.serving.server import start_background_server

    handles = []

    def start(repo):
        handles.append(start_background_server(repo, auth_token_file=token_file,
                                                log_path=tmp_path_factory.mktemp("log") / "server.log"))
        return handles[-1]

    yield start
    for handle in handles:
        handle.stop()
