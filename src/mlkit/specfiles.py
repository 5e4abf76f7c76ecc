"""Reading the YAML specs users write (JointInferenceService, IncrementalLearningJob): one set of errors."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

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


# --- the workerSpec parameters of a spec: Kubernetes-style {key, value} strings validated into typed settings ---
class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class KeyValue(Strict):
    key: str
    value: str | int | float | bool


class WorkerSpec(Strict):
    scriptDir: str | None = None
    scriptBootFile: str | None = None
    frameworkType: str | None = None
    frameworkVersion: str | None = None
    parameters: list[KeyValue] = []


def scalar(value: Any) -> Any:
    """"0.9" -> 0.9, "3" -> 3, "true" -> True; other strings stay strings (for a filter's own parameters)."""
    if not isinstance(value, str):
        return value
    import yaml

    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    return parsed if isinstance(parsed, int | float | bool) else value


class Settings(BaseModel):
    """Typed settings a spec's ``{key, value}`` parameters validate into (``from_pairs``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def keys(cls) -> dict[str, str]:
        """``{key: help}`` of every setting, in order."""
        return {name: field.description or "" for name, field in cls.model_fields.items()}


def from_pairs(cls: type[Settings], pairs: Iterable[tuple[str, Any]], where: str) -> Settings:
    """Validate ``(key, value)`` pairs (the YAML's strings, or typed values) into ``cls``; ``MlkitError`` naming the
    key for an unknown or repeated key or a value of the wrong type."""
    values: dict[str, Any] = {}
    for key, value in pairs:
        if key not in cls.model_fields:
            raise MlkitError(f"{where}.workerSpec.parameters: unknown key {key!r}; known keys: "
                             + ", ".join(sorted(cls.model_fields)))
        if key in values:
            raise MlkitError(f"{where}.workerSpec.parameters: key {key!r} is given twice")
        if not isinstance(value, str) and str in _types(cls.model_fields[key].annotation):
            value = str(value)  # `value: 0` (a camera index) is the string "0" to a text setting
        values[key] = value
    try:
        return cls.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = str(first["loc"][0]) if first["loc"] else ""
        raise MlkitError(f"{where}.workerSpec.parameters: {key}={values.get(key)!r}: {_reason(first)}") from None


_REASONS = {"int": "expected an integer", "float": "expected a number", "bool": "expected true or false"}


def _reason(error: dict) -> str:
    """A pydantic error in the words the spec's users read: "expected an integer", parse_hw's own message, ..."""
    kind = error["type"].split("_")[0]
    if kind in _REASONS and error["type"].endswith(("_parsing", "_type", "_from_float")):
        return _REASONS[kind]
    return error["msg"].removeprefix("Value error, ")


def _types(annotation: Any) -> tuple:
    import typing

    return typing.get_args(annotation) or (annotation,)


def settings(cls: type[Settings], value: Settings | dict | None, where: str) -> Settings:
    """``value`` as ``cls``: an instance as is, a dict validated (``MlkitError`` naming the bad key), None the
    defaults."""
    if isinstance(value, cls):
        return value
    try:
        return cls.model_validate(value or {})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in exc.errors())
        raise MlkitError(f"{where}: {problems}") from None
