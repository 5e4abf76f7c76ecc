"""Shared fixtures: a tiny exported detector laid out as a model repository, images, and a server."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

SCORE = 0.01  # the untrained test model scores every box ~0.07: a low threshold forces detections


@pytest.fixture(scope="session")
def exported_model(tmp_path_factory) -> Path:
    """A small untrained detector exported to TFLite: folder with model.tflite + metadata.json."""
    from mlkit.models.config import LITTLE
    from mlkit.models.detector import build_detector
    from mlkit.models.export import export_tflite
    from mlkit.models.train import save_detector

    tmp = tmp_path_factory.mktemp("model")
    cfg = dataclasses.replace(LITTLE, input_width=128, input_height=96, neck_channels=16, head_convs=1)
    save_detector(build_detector(cfg, seed=0), cfg, tmp / "keras")
    paths = export_tflite(tmp / "keras", tmp / "export", ["fp32"])
    return paths["fp32"].parent


def make_version(repo: Path, name: str, version: int, source: Path, **meta_overrides) -> Path:
    """Copy ``source`` (model.tflite + metadata.json) to ``repo/name/version`` atomically (rename)."""
    import json

    dest = repo / name / str(version)
    tmp = repo / name / f".tmp-{version}"
    tmp.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / "model.tflite", tmp / "model.tflite")
    meta = json.loads((source / "metadata.json").read_text())
    meta.update(meta_overrides)
    (tmp / "metadata.json").write_text(json.dumps(meta))
    tmp.rename(dest)
    return dest


@pytest.fixture(scope="session")
def model_repo(exported_model, tmp_path_factory) -> Path:
    """``<repo>/helmet/1/model.tflite + metadata.json``."""
    repo = tmp_path_factory.mktemp("repo")
    make_version(repo, "helmet", 1, exported_model)
    return repo


@pytest.fixture(scope="session")
def images() -> list[np.ndarray]:
    """Different images of different sizes (deterministic)."""
    rng = np.random.default_rng(0)
    out = []
    for i, (h, w) in enumerate([(96, 128), (120, 90), (64, 200), (150, 150)]):
        img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        img[h // 4: h // 2, w // 4: w // 2] = (40 * i, 255 - 40 * i, 128)
        out.append(img)
    return out


@pytest.fixture(scope="session")
def detector(exported_model):
    from mlkit.models.predict import TFLiteDetector

    return TFLiteDetector(exported_model / "model.tflite")


@pytest.fixture(scope="module")
def server(model_repo, tmp_path_factory):
    """A real server on 127.0.0.1 (batching off), shared by a test module."""
    from mlkit.serving.server import start_background_server

    handle = start_background_server(model_repo, log_path=tmp_path_factory.mktemp("log") / "server.log")
    yield handle
    handle.stop()


def _png(image: np.ndarray) -> bytes:
    from mlkit.client.http import encode_image

    return encode_image(image, "png")


def _same(a, b) -> bool:
    """Two Detections are the same (exactly, up to float32 rounding)."""
    return (len(a) == len(b) and np.allclose(a.boxes, b.boxes, atol=6e-3) and np.allclose(a.scores, b.scores, atol=1e-5)
            and np.array_equal(a.labels, b.labels))


def _metric(url: str, name: str, model: str = "helmet") -> float:
    """A sample of the server's Prometheus text, e.g. ``mlkit_batch_size_count``."""
    import httpx

    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith(f'{name}{{model="{model}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _v2_binary(images: list[np.ndarray], params: dict | None = None) -> tuple[bytes, dict]:
    """A v2 REST body with a binary BYTES tensor of PNG images (and its headers)."""
    import orjson

    from mlkit.v2codec import serialize_bytes

    raw = serialize_bytes([_png(im) for im in images])
    head = orjson.dumps({"inputs": [{"name": "image", "shape": [len(images)], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(raw)}}], "parameters": params or {}})
    return head + raw, {"inference-header-content-length": str(len(head)),
                        "content-type": "application/octet-stream"}


class Helpers:
    metric = staticmethod(_metric)
    v2_binary = staticmethod(_v2_binary)
    SCORE = SCORE
    png = staticmethod(_png)
    same = staticmethod(_same)
    make_version = staticmethod(make_version)


@pytest.fixture(scope="session")
def h() -> type[Helpers]:
    """Small helpers (tests/serving is not a package, so tests cannot import this module)."""
    return Helpers
