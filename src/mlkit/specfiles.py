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


def validation_problems(exc) -> str:
    """A pydantic ``ValidationError`` as one line per field: ``spec.edgeWorker.gpu: Extra inputs ...``."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
                     for e in exc.errors())
