"""Every registered pipeline compiles to the IR YAML checked in under pipelines/golden."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlkit.cli.pipeline import compile_pipeline
from mlkit.components.common import MLKIT_IMAGE
from mlkit.pipelines import PIPELINES, file_stem

GOLDEN = Path(__file__).resolve().parents[2] / "pipelines" / "golden"
VOLATILE = ("sdkVersion",)  # changes with every kfp release, says nothing about the pipeline


def _normalised(path: Path) -> list:
    docs = list(yaml.safe_load_all(path.read_text()))
    for doc in docs:
        for key in VOLATILE:
            doc.pop(key, None)
    return docs


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_compiled_pipeline_matches_golden(name, tmp_path):
    stem = file_stem(name)
    compiled = compile_pipeline(name, tmp_path / f"{stem}.yaml", base_image=MLKIT_IMAGE)
    golden = GOLDEN / f"{stem}.yaml"
    assert golden.is_file(), f"missing {golden}; create it: mlkit pipeline compile --out pipelines/golden"
    assert _normalised(compiled) == _normalised(golden), (
        f"pipeline {name!r} compiles differently from {golden}. If the change is intended, regenerate the "
        "golden files (with MLKIT_BASE_IMAGE unset): mlkit pipeline compile --out pipelines/golden "
        "(or: make compile), and review the diff."
    )
