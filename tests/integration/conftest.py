"""Shared by the joint-inference pipeline tests: the committed little model, and a copy of it named "big"."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

LITTLE = Path(__file__).resolve().parents[2] / "models" / "little" / "tflite"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    """The committed little model, and a copy of it renamed "big" (the real big model is too slow for CI)."""
    if not (LITTLE / "int8" / "model.tflite").is_file():
        pytest.skip("the committed little model is missing")
    big = tmp_path_factory.mktemp("models") / "big"
    (big / "int8").mkdir(parents=True)
    shutil.copy2(LITTLE / "fp32" / "model.tflite", big / "int8" / "model.tflite")
    meta = json.loads((LITTLE / "fp32" / "metadata.json").read_text())
    (big / "int8" / "metadata.json").write_text(json.dumps({**meta, "name": "big"}))
    return LITTLE, big
