"""The pipeline config file, in OpenVINO Model Server's format, as typed pydantic models.

```json
{"model_config_list": [{"config": {"name": "googlenet", "base_path": "googlenet"}}, ...],
 "custom_node_library_config_list": [{"name": "my_lib", "base_path": "my_pkg.nodes:my_node"}],
 "pipeline_config_list": [{
    "name": "image_classification_pipeline", "inputs": ["image"],
    "nodes": [{"name": "googlenet_node", "model_name": "googlenet", "type": "DL model",
               "inputs": [{"input": {"node_name": "request", "data_item": "image"}}],
               "outputs": [{"data_item": "probabilities", "alias": "probability"}]}, ...],
    "outputs": [{"label": {"node_name": "argmax_node", "data_item": "most_probable_label"}}]}]}
```

- ``base_path`` is a model folder holding version sub-folders (``<base_path>/<version>/model.tflite`` +
  ``metadata.json``), as in OpenVINO; a relative path is relative to the config file.
- A ``"custom"`` node names a custom node function in ``library_name``: a built-in one (``argmax_sum``,
  ``softmax_average``), one registered in Python (``mlkit.serving.graph.custom.register``), or a library of
  ``custom_node_library_config_list`` whose ``base_path`` is ``module:attribute`` or ``file.py:attribute``
  (OpenVINO loads a ``.so`` from there; mlkit imports Python).
- A pipeline input is a name (its shape and datatype come from the nodes it feeds) or
  ``{"name", "datatype", "shape"}`` when only custom nodes read it.

Only the structure is checked here; ``mlkit.serving.graph.pipeline`` checks the graph itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from mlkit.errors import MlkitError

REQUEST = "request"  # the implicit source node: the pipeline's request


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class SourceRef(_Strict):
    node_name: str = Field(min_length=1)
    data_item: str = Field(min_length=1)


class NodeOutput(_Strict):
    data_item: str = Field(min_length=1)
    alias: str = Field(min_length=1)


def _one_key(items: list[dict[str, SourceRef]], what: str) -> list[dict[str, SourceRef]]:
    for i, item in enumerate(items):
        if len(item) != 1:
            raise ValueError(f"{what} {i} must map exactly one name to {{node_name, data_item}}, "
                             f"got {len(item)} names {sorted(item)}")
    return items


class NodeConfig(_Strict):
    name: str = Field(min_length=1)
    type: Literal["DL model", "custom"] = "DL model"
    model_name: str | None = None
    version: int | None = Field(default=None, ge=1)
    library_name: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    inputs: list[dict[str, SourceRef]] = Field(default_factory=list)
    outputs: list[NodeOutput] = Field(default_factory=list)

    @field_validator("inputs")
    @classmethod
    def _inputs(cls, v):
        return _one_key(v, "input")

    def connections(self) -> list[tuple[str, SourceRef]]:
        return [next(iter(item.items())) for item in self.inputs]


class InputSpec(_Strict):
    name: str = Field(min_length=1)
    datatype: str
    shape: list[int]


class PipelineConfig(_Strict):
    name: str = Field(min_length=1)
    inputs: list[str | InputSpec] = Field(min_length=1)
    nodes: list[NodeConfig] = Field(min_length=1)
    outputs: list[dict[str, SourceRef]] = Field(min_length=1)

    @field_validator("outputs")
    @classmethod
    def _outputs(cls, v):
        return _one_key(v, "output")

    def input_names(self) -> list[str]:
        return [i if isinstance(i, str) else i.name for i in self.inputs]

    def output_refs(self) -> list[tuple[str, SourceRef]]:
        return [next(iter(item.items())) for item in self.outputs]


class ModelEntry(_Strict):
    name: str = Field(min_length=1)
    base_path: str = Field(min_length=1)


class ModelConfigItem(_Strict):
    config: ModelEntry


class CustomLibrary(_Strict):
    name: str = Field(min_length=1)
    base_path: str = Field(min_length=1)


class GraphConfig(_Strict):
    model_config_list: list[ModelConfigItem] = Field(default_factory=list)
    custom_node_library_config_list: list[CustomLibrary] = Field(default_factory=list)
    pipeline_config_list: list[PipelineConfig] = Field(default_factory=list)
    _source: Path | None = PrivateAttr(default=None)  # the file it came from (resolves relative paths)

    @property
    def source(self) -> Path | None:
        return self._source

    @property
    def folder(self) -> Path:
        return self.source.parent if self.source is not None else Path.cwd()

    def models(self) -> dict[str, Path]:
        """``{model name: base_path}``, relative paths resolved against the config file's folder."""
        out: dict[str, Path] = {}
        for item in self.model_config_list:
            entry = item.config
            if entry.name in out:
                raise MlkitError(f"model {entry.name!r} is defined twice in model_config_list")
            path = Path(entry.base_path).expanduser()
            out[entry.name] = path if path.is_absolute() else (self.folder / path)
        return out

    def pipeline(self, name: str) -> PipelineConfig:
        for p in self.pipeline_config_list:
            if p.name == name:
                return p
        raise MlkitError(f"no pipeline {name!r} in the config; it has {[p.name for p in self.pipeline_config_list]}")


def _where(loc: tuple, data: Any) -> str:
    """``pipeline_config_list[0].nodes[1].inputs`` plus the names met on the way, for error messages."""
    parts, node = [], data
    for key in loc:
        parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            node = None
        if isinstance(node, dict) and isinstance(node.get("name"), str) and isinstance(key, int):
            parts.append(f"(name={node['name']!r})")
    return "".join(parts).lstrip(".")


def parse_config(data: Any, source: Path | None = None) -> GraphConfig:
    where = str(source) if source else "graph config"
    if not isinstance(data, dict):
        raise MlkitError(f"{where}: expected a JSON object with model_config_list and pipeline_config_list")
    try:
        cfg = GraphConfig.model_validate(data)
    except ValidationError as exc:
        lines = [f"{_where(tuple(e['loc']), data) or '(top level)'}: {e['msg']}" for e in exc.errors()[:8]]
        raise MlkitError(f"{where} is not a valid pipeline config:\n  " + "\n  ".join(lines)) from None
    cfg._source = Path(source).resolve() if source else None
    return cfg


def load_config(path: str | Path) -> GraphConfig:
    """Read and structurally check a config.json (``MlkitError`` naming the file and the field)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise MlkitError(f"pipeline config {path} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MlkitError(f"{path}: invalid JSON ({exc})") from None
    return parse_config(data, path)
