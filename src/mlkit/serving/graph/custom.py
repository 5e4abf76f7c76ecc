"""Custom nodes: Python callables registered by name, used by ``"type": "custom"`` pipeline nodes.

A ``CustomNode`` has two functions:

- ``outputs(input_specs, params) -> output_specs``: at load time, from the specs of whatever is
  connected to the node's inputs, the specs of its outputs; raises ``MlkitError`` for inputs it cannot
  take (the pipeline check adds the node's name);
- ``run(inputs, params) -> outputs``: per request, numpy arrays in and out (it runs in a worker
  thread, so it may block; it must keep the batch dimension).

``params`` (the node's ``"params"`` in the config) are checked by the node's pydantic ``params_model``.
Built in: ``argmax_sum`` (OpenVINO's argmax model: sum the members' probabilities, take the argmax) and
``softmax_average`` (average the members' softmax outputs, optionally weighted or from logits).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from mlkit.errors import MlkitError
from mlkit.serving.graph.tensors import TensorSpec


@dataclasses.dataclass(frozen=True)
class CustomNode:
    name: str
    run: Callable[[dict[str, Any], dict], dict[str, Any]]
    outputs: Callable[[dict[str, TensorSpec], dict], dict[str, TensorSpec]]
    params_model: type[BaseModel] | None = None
    description: str = ""

    def check_params(self, params: Mapping[str, Any]) -> dict:
        if self.params_model is None:
            if params:
                raise MlkitError(f"custom node {self.name!r} takes no params, got {sorted(params)}")
            return {}
        try:
            return self.params_model.model_validate(dict(params)).model_dump()
        except ValidationError as exc:
            msgs = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'params'}: {e['msg']}" for e in exc.errors())
            raise MlkitError(f"params of custom node {self.name!r}: {msgs}") from None


_REGISTRY: dict[str, CustomNode] = {}


def register(node: CustomNode, *, replace: bool = False) -> CustomNode:
    """Register ``node`` under ``node.name``; a second node with the same name is refused unless ``replace``."""
    if not isinstance(node, CustomNode):
        raise MlkitError(f"register() takes a CustomNode, got {type(node).__name__}")
    if node.name in _REGISTRY and _REGISTRY[node.name] is not node and not replace:
        raise MlkitError(f"a custom node named {node.name!r} is already registered")
    _REGISTRY[node.name] = node
    return node


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def get(name: str) -> CustomNode | None:
    _builtins()
    return _REGISTRY.get(name)


def registered() -> list[str]:
    _builtins()
    return sorted(_REGISTRY)


def load_library(name: str, base_path: str, folder: Path) -> CustomNode:
    """A custom node from ``module:attribute`` or ``path/to/file.py:attribute`` (relative to ``folder``)."""
    target, sep, attr = base_path.rpartition(":")
    if not sep or not target or not attr.isidentifier():
        raise MlkitError(f"custom node library {name!r}: base_path {base_path!r} must be 'module:attribute' or "
                         "'file.py:attribute'")
    try:
        if target.endswith(".py"):
            path = Path(target).expanduser()
            path = path if path.is_absolute() else folder / path
            if not path.is_file():
                raise MlkitError(f"custom node library {name!r}: {path} not found")
            mod_name = f"mlkit_custom_{name}_{abs(hash(str(path.resolve())))}"
            module = sys.modules.get(mod_name)
            if module is None:
                spec = importlib.util.spec_from_file_location(mod_name, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[mod_name] = module
                spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except MlkitError:
        raise
    except Exception as exc:  # noqa: BLE001 - any import failure becomes one clear load-time error
        raise MlkitError(f"custom node library {name!r}: cannot import {target!r}: {type(exc).__name__}: {exc}") \
            from exc
    node = getattr(module, attr, None)
    if not isinstance(node, CustomNode):
        raise MlkitError(f"custom node library {name!r}: {base_path} is not a CustomNode "
                         f"(got {type(node).__name__})")
    return dataclasses.replace(node, name=name)


# --------------------------------------------------------------------------- built-in nodes
class _ArgmaxParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    weights: dict[str, float] | None = None  # input name -> weight; default 1 each


class _AverageParams(_ArgmaxParams):
    from_logits: bool = False  # apply softmax to each input first


def _probability_specs(inputs: dict[str, TensorSpec], params: dict) -> int:
    """The class count K shared by all inputs, which must be FP32 [N, K]."""
    if not inputs:
        raise MlkitError("needs at least one input of FP32 [N, K] scores")
    k = -1
    for name, spec in inputs.items():
        if spec.datatype != "FP32" or len(spec.shape) != 2:
            raise MlkitError(f"input {name!r} is {spec}; expected FP32 [N, K] scores")
        if spec.shape[1] != -1:
            if k not in (-1, spec.shape[1]):
                others = {n: str(s) for n, s in inputs.items()}
                raise MlkitError(f"shape mismatch between its inputs: all need the same K classes, got {others}")
            k = spec.shape[1]
    weights = params.get("weights")
    if weights is not None:
        unknown = set(weights) - set(inputs)
        if unknown:
            raise MlkitError(f"params.weights names {sorted(unknown)}, which are not its inputs {sorted(inputs)}")
    return k


def _combined_specs(inputs: dict[str, TensorSpec], params: dict) -> dict[str, TensorSpec]:
    k = _probability_specs(inputs, params)
    return {"probabilities": TensorSpec("FP32", (-1, k)), "label": TensorSpec("INT32", (-1,)),
            "score": TensorSpec("FP32", (-1,))}


def _stack(inputs: dict[str, np.ndarray], params: dict, softmax: bool) -> dict[str, np.ndarray]:
    weights = params.get("weights") or {}
    total, wsum = None, 0.0
    shapes = {n: a.shape for n, a in inputs.items()}
    if len(set(shapes.values())) != 1:
        raise MlkitError(f"inputs differ in shape: {shapes}")
    for name, x in inputs.items():
        x = np.asarray(x, np.float32)
        if softmax:
            z = np.exp(x - x.max(axis=1, keepdims=True))
            x = z / z.sum(axis=1, keepdims=True)
        w = float(weights.get(name, 1.0))
        total = w * x if total is None else total + w * x
        wsum += w
    probs = (total / max(wsum, 1e-12)).astype(np.float32)
    label = probs.argmax(axis=1).astype(np.int32)
    return {"probabilities": probs, "label": label, "score": probs[np.arange(len(probs)), label]}


def _argmax_sum(inputs: dict[str, np.ndarray], params: dict) -> dict[str, np.ndarray]:
    return _stack(inputs, params, softmax=False)


def _softmax_average(inputs: dict[str, np.ndarray], params: dict) -> dict[str, np.ndarray]:
    return _stack(inputs, params, softmax=bool(params.get("from_logits")))


def _builtins() -> None:
    if "argmax_sum" in _REGISTRY:
        return
    register(CustomNode("argmax_sum", _argmax_sum, _combined_specs, _ArgmaxParams,
                        "label = argmax of the (weighted) sum of the inputs' probabilities; also the mean "
                        "probabilities and the winning score"))
    register(CustomNode("softmax_average", _softmax_average, _combined_specs, _AverageParams,
                        "probabilities = (weighted) mean of the inputs' softmax outputs (from_logits: apply "
                        "softmax first); label = its argmax"))
