"""A served TFLite model with named tensor inputs and outputs (metadata task "tensor").

Image models take pictures; a combiner such as OpenVINO's "argmax" model takes tensors. Its version
folder holds ``model.tflite`` and a ``metadata.json`` that names the tensors:

```json
{"task": "tensor", "name": "argmax",
 "inputs":  [{"name": "input1", "key": "in0", "datatype": "FP32", "shape": [-1, 3]}, ...],
 "outputs": [{"name": "argmax/Squeeze", "key": "out", "datatype": "INT32", "shape": [-1]}]}
```

``name`` is the public tensor name (v2 metadata, pipeline configs), ``key`` the TFLite signature key
(default: the name). Only the leading (batch) dimension may be ``-1``. The model answers v2 (REST and
gRPC) with one tensor per input, and v1 with ``{"instances": [{"input1": [...], "input2": [...]}, ...]}``
(or bare values when it has one input); concurrent requests are batched like the image models.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
from kserve.errors import InvalidInput, ModelNotReady
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse, to_http_parameters

from mlkit.errors import MlkitError
from mlkit.serving.graph.tensors import TensorSpec, datatype_of, shapes_compatible
from mlkit.serving.payload import only_requested, requested_output_names
from mlkit.serving.predictor import METADATA_FILE, MODEL_FILE, TFLiteModel

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TensorIO:
    name: str
    key: str
    spec: TensorSpec


def _ios(raw: Any, what: str, where: Path) -> list[TensorIO]:
    if not isinstance(raw, list) or not raw:
        raise MlkitError(f"{where}: '{what}' must be a non-empty list of {{name, datatype, shape}}")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise MlkitError(f"{where}: {what}[{i}] needs a 'name'")
        spec = TensorSpec.from_dict(item, f"{where}: {what}[{i}]")
        if spec.datatype == "BYTES" or any(d == -1 for d in spec.shape[1:]) or not spec.shape:
            raise MlkitError(f"{where}: {what}[{i}] ({item['name']}) is {spec}; a tensor model takes numeric "
                             "tensors whose only free dimension is the leading (batch) one")
        out.append(TensorIO(item["name"], str(item.get("key", item["name"])), spec))
    if len({io.name for io in out}) != len(out):
        raise MlkitError(f"{where}: two {what} share a name")
    return out


class _TensorRuntime:
    """The interpreter behind a signature runner, called with public names."""

    def __init__(self, model_path: Path, meta: dict, where: Path, num_threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.inputs, self.outputs = _ios(meta.get("inputs"), "inputs", where), _ios(meta.get("outputs"), "outputs",
                                                                                      where)
        try:
            interpreter = Interpreter(model_path=str(model_path), num_threads=num_threads)
            signatures = interpreter.get_signature_list()
        except ValueError as exc:
            raise MlkitError(f"{model_path} is not a valid TFLite model: {exc}") from exc
        if len(signatures) != 1:
            raise MlkitError(f"{model_path}: expected one signature, found {sorted(signatures)}")
        (key, sig), = signatures.items()
        for what, ios, keys in (("inputs", self.inputs, sig["inputs"]), ("outputs", self.outputs, sig["outputs"])):
            unknown = [io.key for io in ios if io.key not in keys]
            if unknown or len(ios) != len(keys):
                raise MlkitError(f"{where}: {what} keys {[io.key for io in ios]} do not match the model's "
                                 f"signature {what} {list(keys)}")
        self.runner = interpreter.get_signature_runner(key)
        details = self.runner.get_input_details()
        for io in self.inputs:
            if np.dtype(details[io.key]["dtype"]) != np.dtype(io.spec.numpy_type):
                raise MlkitError(f"{where}: input {io.name!r} is {io.spec.datatype} in metadata but "
                                 f"{np.dtype(details[io.key]['dtype'])} in the model")

    def run(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raw = self.runner(**{io.key: np.ascontiguousarray(arrays[io.name], io.spec.numpy_type) for io in self.inputs})
        return {io.name: np.asarray(raw[io.key]).astype(io.spec.numpy_type, copy=False) for io in self.outputs}


@dataclasses.dataclass
class TensorJob:
    protocol: str
    arrays: dict[str, np.ndarray]
    n: int
    request_id: str | None = None
    binary_outputs: bool = False
    outputs: tuple[str, ...] | None = None  # the v2 outputs asked for (None: all)


class TFLiteTensorModel(TFLiteModel):
    """A TFLite model with named numeric tensors in and out (metadata task "tensor")."""

    task = "tensor"

    # Loading is TFLiteModel.load (checks, batcher, ready flag) with these two hooks.
    def _open(self, raw_meta: dict) -> _TensorRuntime:
        if raw_meta.get("task") != "tensor":
            raise MlkitError(f"{self.model_dir / METADATA_FILE}: task is {raw_meta.get('task')!r}, not 'tensor'")
        return _TensorRuntime(self.model_dir / MODEL_FILE, raw_meta, self.model_dir / METADATA_FILE, self.num_threads)

    def _warm_up(self, runtime: _TensorRuntime) -> None:
        runtime.run({io.name: np.zeros((1, *io.spec.shape[1:]), io.spec.numpy_type) for io in runtime.inputs})

    # --- tensors in --------------------------------------------------------------------------------
    def check_arrays(self, arrays: dict[str, Any], where: str = "request") -> tuple[dict[str, np.ndarray], int]:
        """Validate and cast named inputs; returns (arrays, batch size). Raises ``MlkitError``."""
        unknown = sorted(set(arrays) - {io.name for io in self.runtime.inputs})
        if unknown:
            raise MlkitError(f"{where}: model {self.name!r} has no input {unknown[0]!r} "
                             f"(inputs: {[io.name for io in self.runtime.inputs]})")
        out, sizes = {}, set()
        for io in self.runtime.inputs:
            if io.name not in arrays:
                raise MlkitError(f"{where}: model {self.name!r} needs input {io.name!r}")
            try:
                arr = np.asarray(arrays[io.name])
            except (ValueError, TypeError) as exc:
                raise MlkitError(f"{where}: input {io.name!r} is not a rectangular array ({exc})") from None
            if arr.dtype.kind not in "biuf":
                raise MlkitError(f"{where}: input {io.name!r} must hold numbers, got {arr.dtype}")
            if arr.ndim == len(io.spec.shape) - 1:
                arr = arr[None]  # one instance without its batch dimension
            if not shapes_compatible(io.spec.shape, arr.shape):
                raise MlkitError(f"{where}: input {io.name!r} has shape {list(arr.shape)}; expected "
                                 f"{list(io.spec.shape)}")
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise MlkitError(f"{where}: input {io.name!r} holds NaN or infinite values")
            out[io.name] = arr.astype(io.spec.numpy_type, copy=False)
            sizes.add(arr.shape[0])
        if len(sizes) != 1 or 0 in sizes:
            raise MlkitError(f"{where}: inputs must hold the same number (>= 1) of instances, got "
                             f"{ {k: v.shape[0] for k, v in out.items()} }")
        return out, sizes.pop()

    def _job(self, payload: Any) -> TensorJob:
        try:
            if isinstance(payload, InferRequest):
                arrays = {}
                for inp in payload.inputs:
                    want = next((io for io in self.runtime.inputs if io.name == inp.name), None)
                    if want is not None and inp.datatype != want.spec.datatype:
                        raise MlkitError(f"input {inp.name!r} has datatype {inp.datatype}; expected "
                                         f"{want.spec.datatype}")
                    arrays[inp.name] = inp.as_numpy()
                params = to_http_parameters(payload.parameters) if payload.parameters else {}
                binary = bool(params.get("binary_data_output", False)) and not payload.from_grpc
                wanted = requested_output_names(payload, [io.name for io in self.runtime.outputs])
                arrays, n = self.check_arrays(arrays)
                return TensorJob("v2", arrays, n, payload.id, binary, wanted)
            if isinstance(payload, dict):
                instances = payload.get("instances")
                if not isinstance(instances, list) or not instances:
                    raise MlkitError("request body needs a non-empty 'instances' list (v1 protocol)")
                names = [io.name for io in self.runtime.inputs]
                if len(names) == 1 and not all(isinstance(i, dict) for i in instances):
                    arrays = {names[0]: instances}
                else:
                    if not all(isinstance(i, dict) for i in instances):
                        raise MlkitError(f"each instance must be an object with inputs {names}")
                    arrays = {k: [inst.get(k) for inst in instances] for k in {k for i in instances for k in i}}
                arrays, n = self.check_arrays(arrays)
                return TensorJob("v1", arrays, n)
        except InvalidInput:
            raise
        except MlkitError as exc:
            raise InvalidInput(str(exc)) from None
        except (ValueError, TypeError) as exc:
            raise InvalidInput(f"malformed tensor data: {exc}") from None
        raise InvalidInput(f"unsupported request payload of type {type(payload).__name__}")

    async def preprocess(self, payload: Any, headers: dict | None = None) -> TensorJob:
        if not self.ready or self.runtime is None:
            raise ModelNotReady(self.name, self.load_error or "")
        return self._job(payload)

    async def infer_arrays(self, arrays: dict[str, Any]) -> dict[str, np.ndarray]:
        """Run on named arrays through the batcher (used by pipeline nodes). Raises ``MlkitError`` for bad input."""
        checked, n = self.check_arrays(arrays, f"model {self.name!r}")
        return await self.batcher.submit(TensorJob("v2", checked, n))

    def _run_batch(self, jobs: list[TensorJob], runtime: Any) -> list:
        if len(jobs) == 1:
            return [runtime.run(jobs[0].arrays)]
        merged = {io.name: np.concatenate([j.arrays[io.name] for j in jobs]) for io in runtime.inputs}
        raw = runtime.run(merged)
        out, start = [], 0
        for job in jobs:
            out.append({k: v[start:start + job.n] for k, v in raw.items()})
            start += job.n
        return out

    async def predict(self, payload: TensorJob, headers: dict | None = None, response_headers: dict | None = None):
        return payload, await self.submit(payload)

    async def postprocess(self, result: Any, headers: dict | None = None, response_headers: dict | None = None):
        job, outputs = result
        if job.protocol == "v1":
            names = list(outputs)
            rows = [{k: outputs[k][i].tolist() for k in names} for i in range(job.n)]
            return {"predictions": [r[names[0]] for r in rows] if len(names) == 1 else rows}
        return InferResponse(response_id=job.request_id or "", model_name=self.name,
                             infer_outputs=only_requested([InferOutput(name=k, shape=list(v.shape),
                                                                       datatype=datatype_of(v.dtype), data=v)
                                                           for k, v in outputs.items()], job.outputs),
                             model_version=None if self.version is None else str(self.version),
                             use_binary_outputs=job.binary_outputs)

    def get_input_types(self) -> list[dict]:
        return [io.spec.to_dict(io.name) for io in self.runtime.inputs] if self.runtime else []

    def get_output_types(self) -> list[dict]:
        return [io.spec.to_dict(io.name) for io in self.runtime.outputs] if self.runtime else []
