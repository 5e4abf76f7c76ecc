"""The serving image, without containers: the Dockerfile's shape, and its entrypoint run for real.

The image itself is built by `make image` (serving_image/build.sh: debootstrap base, buildah) and run by
`make image-test` (podman), neither part of `make test`. Here the Dockerfile is parsed (builder / wheels /
final stages, wheels-only offline install into the /opt/mlkit venv first on PATH, non-root user, pinned base,
ENTRYPOINT/CMD, /mnt/models, ports) and its ENTRYPOINT + CMD are run as a subprocess with this Python - only
the model folder, host and ports swapped - against a repository laid out as KServe's storage-initializer
leaves it in /mnt/models.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGE_DIR = REPO / "serving_image"


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        current += " " + stripped.rstrip("\\").strip()
        if not stripped.endswith("\\"):
            keyword, _, rest = current.strip().partition(" ")
            out.append((keyword.upper(), rest.strip()))
            current = ""
    return out


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return _instructions((IMAGE_DIR / "Dockerfile").read_text())


def _final_stage(instructions):
    starts = [i for i, (k, _) in enumerate(instructions) if k == "FROM"]
    return instructions[starts[-1]:]


def _one(instructions, keyword):
    (value,) = [v for k, v in instructions if k == keyword]
    return value


def _stages(instructions) -> list[list[tuple[str, str]]]:
    starts = [i for i, (k, _) in enumerate(instructions) if k == "FROM"]
    return [instructions[a:b] for a, b in zip(starts, starts[1:] + [len(instructions)], strict=True)]


def test_dockerfile_is_multi_stage_with_a_pinned_base(dockerfile):
    froms = [v for k, v in dockerfile if k == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS builder", "scratch AS wheels", "${PYTHON_IMAGE}"]
    (arg,) = [v for k, v in dockerfile if k == "ARG" and v.startswith("PYTHON_IMAGE=")]
    assert arg == "PYTHON_IMAGE=python:3.11.7-slim-bookworm"  # exact tag (digest documented in the file)
    builder, wheels, final = _stages(dockerfile)
    runs = " ".join(v for k, v in builder if k == "RUN")
    assert "pip wheel --use-pep517 --no-deps --wheel-dir /wheels -r /build/requirements.lock" in runs
    assert "pip wheel --no-deps --wheel-dir /wheels /build/src-tree" in runs  # mlkit itself, from the context
    # The `wheels` stage is the wheels alone at its root, so `--build-context wheels=DIR` (make image) can stand
    # in for it with a folder of wheels downloaded on the host; the final stage reads only that stage.
    assert wheels[1:] == [("COPY", "--from=builder /wheels/ /")]
    final_runs = " ".join(v for k, v in final if k == "RUN")
    assert "--mount=type=bind,from=wheels,target=/wheels" in final_runs
    assert "--no-index" in final_runs and '"mlkit[full]"' in final_runs and "build-essential" not in final_runs
    assert "-c /tmp/requirements.lock" in final_runs and "pip check" in final_runs  # the lock's exact versions
    assert not [v for k, v in final if k in ("COPY", "ADD")]  # nothing from the builder but the wheels


def test_mlkit_lives_in_a_venv_first_on_path(dockerfile):
    """KFP components run `sh -ec '... python3 -m kfp.dsl.executor_main ...'`: python3 must be mlkit's."""
    final = _final_stage(dockerfile)
    env = _one(final, "ENV").split()
    assert "PATH=/opt/mlkit/bin:$PATH" in env and "VIRTUAL_ENV=/opt/mlkit" in env
    final_runs = " ".join(v for k, v in final if k == "RUN")
    assert "python3 -m venv /opt/mlkit" in final_runs and "/opt/mlkit/bin/pip install" in final_runs
    assert "sys.prefix == '/opt/mlkit'" in final_runs  # the build checks which python3 the PATH finds


def test_final_stage_runs_the_server_as_non_root(dockerfile):
    final = _final_stage(dockerfile)
    user = _one(final, "USER")
    assert user not in ("root", "0") and user.split(":")[0] == "1000"
    assert _one(final, "WORKDIR") == "/app"
    assert "MODEL_DIR=/mnt/models" in _one(final, "ENV")
    assert _one(final, "EXPOSE").split() == ["8080", "8081"]
    assert json.loads(_one(final, "ENTRYPOINT")) == ["python", "-m", "mlkit.serving"]
    assert json.loads(_one(final, "CMD")) == ["--model-dir", "/mnt/models", "--host", "0.0.0.0"]
    assert [k for k, _ in final].index("USER") > max(i for i, (k, _) in enumerate(final) if k == "RUN")


def test_lock_pins_every_dependency_of_the_project():
    """Every runtime pin of pyproject.toml (core + [full]) is in the lock at the same version; all exact."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = project["dependencies"] + project["optional-dependencies"]["full"]
    lines = [ln.strip() for ln in (IMAGE_DIR / "requirements.lock").read_text().splitlines()]
    lock = {ln.split("==")[0].lower().replace("_", "-"): ln for ln in lines if ln and not ln.startswith("#")}
    assert all("==" in ln for ln in lock.values())
    for pin in pins:
        name, version = pin.split("==")
        name = name.split("[")[0].lower().replace("_", "-")
        assert name in lock and lock[name].split("==")[1] == version, pin
    assert "mlkit" not in lock


def test_dockerignore_keeps_the_context_small():
    ignored = {ln.strip() for ln in (IMAGE_DIR / ".dockerignore").read_text().splitlines()
               if ln.strip() and not ln.startswith("#")}
    assert {".venv", "data", "runs", "demo-output", ".git", "notebooks", "build"} <= ignored
    # What the mlkit wheel is built from: setup.py packages pipelines/, components/ and models/ into mlkit.
    assert not {"src", "pyproject.toml", "setup.py", "README.md", "serving_image", "pipelines", "components",
                "models"} & ignored


# --------------------------------------------------------------------------- the entrypoint, for real
def _entrypoint_command(dockerfile, model_dir: Path, http_port: int, grpc_port: int) -> list[str]:
    """The image's ENTRYPOINT + CMD with this Python, the test's model folder, 127.0.0.1 and free ports."""
    final = _final_stage(dockerfile)
    entry, cmd = json.loads(_one(final, "ENTRYPOINT")), json.loads(_one(final, "CMD"))
    swap = {"/mnt/models": str(model_dir), "0.0.0.0": "127.0.0.1", "python": sys.executable}
    return [swap.get(a, a) for a in entry + cmd] + ["--http-port", str(http_port), "--grpc-port", str(grpc_port)]


@pytest.fixture(scope="module")
def storage_initializer_layout(model_repo, tmp_path_factory) -> Path:
    """What KServe's storage-initializer leaves in /mnt/models for STORAGE_URI=s3://bucket/helmet-repo."""
    mnt = tmp_path_factory.mktemp("mnt") / "models"
    shutil.copytree(model_repo, mnt)
    return mnt


def test_entrypoint_serves_v1_and_v2(dockerfile, storage_initializer_layout, images, detector, h, tmp_path):
    from mlkit.client.http import ServingClient
    from mlkit.serving.server import free_port

    http_port, grpc_port = free_port(), free_port()
    cmd = _entrypoint_command(dockerfile, storage_initializer_layout, http_port, grpc_port)
    assert cmd[1:3] == ["-m", "mlkit.serving"]
    workdir = tmp_path / "app"  # WORKDIR /app: nothing is imported from the current directory
    workdir.mkdir()
    env = {**os.environ, "MODEL_DIR": "/mnt/models", "STORAGE_URI": "s3://bucket/helmet-repo",
           "PYTHONUNBUFFERED": "1"}
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "entrypoint not ready in 90 s:\n" + log_path.read_text()[-3000:]
            time.sleep(0.2)

        expected = detector.predict(images[:2], score_threshold=h.SCORE)
        for protocol in ("v1", "v2"):
            with ServingClient(url, "helmet", protocol=protocol, encoding="png") as client:  # lossless
                got = client.predict(images[:2], score_threshold=h.SCORE)
            assert len(got) == 2, protocol
            assert all(h.same(a, b) for a, b in zip(got, expected, strict=True)), protocol
        assert f"127.0.0.1:{http_port}" in log_path.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait(5)
    assert code == 0, log_path.read_text()[-3000:]  # SIGTERM (what Kubernetes sends) is a clean shutdown
