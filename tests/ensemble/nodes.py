"""Custom nodes the test pipelines load as a library (``custom_node_library_config_list``, ``nodes.py:attr``).

They run inside the server process, so they cannot be registered from the test process.
"""

from __future__ import annotations

import numpy as np

from mlkit.errors import MlkitError
from mlkit.serving.graph.custom import CustomNode
from mlkit.serving.graph.tensors import TensorSpec


def _same(inputs: dict, params: dict) -> dict:
    (spec,) = inputs.values()
    return {"y": TensorSpec(spec.datatype, spec.shape)}


def _explode(inputs: dict, params: dict) -> dict:
    x = inputs["x"]
    if (x < 0).any():
        raise RuntimeError("negative value: this node breaks on purpose")
    return {"y": (x * 2).astype(np.float32)}


def _reject(inputs: dict, params: dict) -> dict:
    x = inputs["x"]
    if (x < 0).any():
        raise MlkitError("x must not be negative")  # the request's fault: HTTP 400
    return {"y": (x * 2).astype(np.float32)}


explode = CustomNode("explode", _explode, _same)
reject = CustomNode("reject", _reject, _same)
