"""Shared fixtures: tiny untrained classifiers + the argmax model, laid out as a pipeline config folder.

Exports happen once per session (TensorFlow is slow to start); every server test shares one server.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from ensemble_helpers import HERE, SIZE, copy_version, ensemble_config


@pytest.fixture(scope="session")
def tiny_exports(tmp_path_factory) -> dict[str, Path]:
    """Two untrained 3-class classifiers (different weights) and the 3-class argmax model (version folders).

    Both use the small CNN: MobileNetV2 takes far longer to trace and convert, and the demo training covers it.
    """
    from mlkit.models.classifier import build_classifier, export_argmax_sum, export_classifier

    tmp = tmp_path_factory.mktemp("exports")
    out = {}
    for name, arch, seed in (("cls-a", "small_cnn", 1), ("cls-b", "small_cnn", 2)):
        out[name] = export_classifier(build_classifier(arch, SIZE, seed=seed), tmp / name / "1", name=name)
    out["argmax"] = export_argmax_sum(tmp / "argmax" / "1", 3)
    return out


@pytest.fixture(scope="session")
def config_dir(tiny_exports, tmp_path_factory) -> Path:
    """``<dir>/config.json`` + ``cls-a/1``, ``cls-b/1``, ``argmax/1`` + ``nodes.py`` (custom node library)."""
    d = tmp_path_factory.mktemp("ensemble")
    for name, folder in tiny_exports.items():
        copy_version(folder, d / name / "1")
    shutil.copy2(HERE / "nodes.py", d / "nodes.py")
    (d / "config.json").write_text(json.dumps(ensemble_config(), indent=2))
    return d


@pytest.fixture(scope="session")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in ((32, 32), (40, 28), (64, 50), (20, 30))]


@pytest.fixture(scope="session")
def direct(tiny_exports):
    """Each classifier run directly (no server, no pipeline): name -> probabilities of a list of images."""
    from mlkit.serving.classifier import ClassifierMeta, TFLiteClassifier

    runners = {}
    for name in ("cls-a", "cls-b"):
        folder = tiny_exports[name]
        meta = ClassifierMeta.from_dict(json.loads((folder / "metadata.json").read_text()), folder)
        runners[name] = TFLiteClassifier(folder / "model.tflite", meta)
    return lambda name, ims: runners[name].predict(ims)


@pytest.fixture(scope="module")
def server(config_dir, tmp_path_factory):
    """A real server on 127.0.0.1 serving the config's models and pipelines (module-scoped)."""
    from mlkit.serving.server import start_background_server

    handle = start_background_server(None, graph_config=config_dir / "config.json",
                                     log_path=tmp_path_factory.mktemp("log") / "server.log")
    yield handle
    handle.stop()
