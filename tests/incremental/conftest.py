"""Shared fixture: a tiny trained-detector folder with its fp32 export (helpers live in il_helpers.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """An untrained test-size detector: config.json + model.weights.h5 + tflite/fp32/."""
    from mlkit.models.config import LITTLE
    from mlkit.models.detector import build_detector
    from mlkit.models.export import export_tflite
    from mlkit.models.train import save_detector

    root = tmp_path_factory.mktemp("tiny") / "model"
    cfg = dataclasses.replace(LITTLE, input_width=128, input_height=96, neck_channels=16, head_convs=1)
    save_detector(build_detector(cfg, seed=0), cfg, root)
    export_tflite(root, root / "tflite", ["fp32"])
    return root
