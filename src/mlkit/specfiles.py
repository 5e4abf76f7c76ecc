"""Reading the YAML specs users write (JointInferenceService, IncrementalLearningJob): one set of errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlkit.errors import MlkitError


def read_yaml(path: str | Path, what: str) -> Any:
    """The parsed YAML of ``path``; ``MlkitError`` when it is missing or not YAML (``what`` names the file)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise MlkitError(f"{what} not found: {path}")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise MlkitError(f"{path} is not valid YAML: {exc}") from None


# mlkit's own, and Sedna's under its current and its former (Neptune) name: its YAML can be used as it is.
API_VERSIONS = ("mlkit.io/v1", "sedna.io/v1alpha1", "neptune.io/v1alpha1")


def check_kind_and_version(where: str, kind: str, api_version: str, expected_kind: str) -> None:
    """``MlkitError`` unless the spec is an ``expected_kind`` under one of ``API_VERSIONS``."""
    if kind != expected_kind:
        raise MlkitError(f"{where}: kind must be {expected_kind}, got {kind!r}")
    if api_version not in API_VERSIONS:
        raise MlkitError(f"{where}: apiVersion must be one of {list(API_VERSIONS)}, got {api_version!r}")


def parse_hw(text: str) -> tuple[int, int]:
    """"352,448" -> (352, 448): a height and a width, as the seeds write input shapes; ``ValueError`` otherwise."""
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError("expected HEIGHT,WIDTH as two positive integers, e.g. \"352,448\"")
    return int(parts[0]), int(parts[1])


def validation_problems(exc) -> str:
    """A pydantic ``ValidationError`` as one line per field: ``spec.edgeWorker.gpu: Extra inputs ...``."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
                     for e in exc.errors())
