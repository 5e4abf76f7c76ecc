"""Pipelines behind the same endpoints as models: v1, v2 REST, v2 gRPC, metadata and readiness.

``attach_graph(repository, config)`` adds the config's models to the server's model repository (they
stay callable on their own, hot reload included) and registers one ``PipelineModel`` per pipeline
under the pipeline's name. A request to ``/v2/models/<pipeline>/infer`` then runs the DAG in the
server process: model nodes go through the served models' dynamic batchers (so pipeline requests
and direct requests share batches), custom nodes run in a thread pool, and tensors stay in memory.

Payloads mirror the models':

- v2: one tensor per pipeline input, by name. An image input (BYTES ``[-1]`` in the metadata) takes
  encoded JPEG/PNG bytes or a UINT8/FP32 ``[N, H, W, 3]`` pixel tensor; the answer has one tensor per
  pipeline output.
- v1: ``{"instances": [...]}``: for a single image input, instances are images exactly as for a model
  (``{"b64": ...}`` or pixel arrays); otherwise each instance is ``{input name: value}``. The answer is
  ``{"predictions": [{output name: value}, ...]}``, one prediction per instance.

``Graph`` runs the same thing in-process, without a server (evaluation, notebooks, benchmarks).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from kserve import Model
from kserve.errors import InferenceError, InvalidInput, ModelNotReady
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse, to_http_parameters

from mlkit.errors import MlkitError
from mlkit.serving.graph.executor import NodeError, NodeRun, execute
from mlkit.serving.graph.pipeline import ModelSignature, Node, Pipeline
from mlkit.serving.graph.tensors import TensorSpec, datatype_of, shapes_compatible

log = logging.getLogger(__name__)

Resolve = Callable[[str, int | None], Any]


def model_signature(model) -> ModelSignature:
    """A served model's tensors, from the same v2 metadata clients get."""
    def specs(types: list[dict], what: str) -> dict[str, TensorSpec]:
        return {t["name"]: TensorSpec.from_dict(t, f"model {model.name!r} {what}") for t in types}

    return ModelSignature(specs(model.get_input_types(), "input"), specs(model.get_output_types(), "output"))


class GraphRuntime:
    """Runs one node: a model node through its served model's batcher, a custom node in a thread pool."""

    def __init__(self, resolve: Resolve, max_workers: int = 4) -> None:
        self.resolve = resolve
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="graph-node")

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def __call__(self, node: Node, inputs: dict[str, Any]) -> dict[str, Any]:
        if node.custom is not None:
            return await asyncio.get_running_loop().run_in_executor(self.pool, node.custom.run, inputs, node.params)
        model = self.resolve(node.model_name, node.version)
        if model is None or not model.ready or model.batcher is None:
            reason = getattr(model, "load_error", None) or "not loaded"
            raise RuntimeError(f"model {node.model_name!r} is not ready ({reason})")
        from mlkit.serving.graph.tensor_model import TFLiteTensorModel
        from mlkit.serving.payload import Thresholds
        from mlkit.serving.predictor import Job

        # Counted like a request: a hot swap waits for it, and no other request runs inline meanwhile.
        with model.running():
            if isinstance(model, TFLiteTensorModel):
                return await model.infer_arrays(inputs)
            (images,) = inputs.values()  # image models have one image input
            try:
                batch, extra = await model.prepare_in_thread(model.runtime.prepare, images)
                job = Job(protocol="v2", batch=batch, extra=extra, thresholds=Thresholds())
                items = await model.batcher.submit(job)
            except InvalidInput as exc:
                raise MlkitError(str(exc)) from None
            return {o.name: o.data for o in model.v2_outputs(items)}


# --------------------------------------------------------------------------- request / response
@dataclasses.dataclass
class Decoded:
    protocol: str  # "v1" or "v2"
    items: dict[str, Any]
    n: int
    request_id: str | None = None
    binary_outputs: bool = False
    trace: list[NodeRun] = dataclasses.field(default_factory=list)
    outputs: tuple[str, ...] | None = None  # the v2 outputs asked for (None: all)
    forwarded: dict[str, Any] = dataclasses.field(default_factory=dict)  # cluster steps: data passed along


def _numeric(value: Any, spec: TensorSpec, where: str, datatype: str | None = None) -> np.ndarray:
    if datatype is not None and datatype != spec.datatype:
        raise InvalidInput(f"{where} has datatype {datatype}; expected {spec.datatype}")
    try:
        arr = np.asarray(value, dtype=spec.numpy_type)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"{where}: expected {spec} numbers ({exc})") from None
    if not shapes_compatible(spec.shape, arr.shape):
        raise InvalidInput(f"{where} has shape {list(arr.shape)}; expected {list(spec.shape)}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise InvalidInput(f"{where} holds NaN or infinite values")
    return arr


def decode_request(pipeline: Pipeline, payload: Any) -> Decoded:
    """A v1 dict or v2 ``InferRequest`` -> pipeline input values; ``InvalidInput`` for anything malformed."""
    from mlkit.serving.payload import parse_v1, parse_v2, requested_output_names

    names = list(pipeline.inputs)
    items: dict[str, Any] = {}
    wanted = None
    if isinstance(payload, InferRequest):
        wanted = requested_output_names(payload, list(pipeline.output_specs))
        by_name = {i.name: i for i in payload.inputs}
        unknown = sorted(set(by_name) - set(names))
        if unknown:
            raise InvalidInput(f"pipeline {pipeline.name!r} has no input {unknown[0]!r} (inputs: {names})")
        for name, spec in pipeline.inputs.items():
            inp = by_name.get(name)
            if inp is None:
                raise InvalidInput(f"pipeline {pipeline.name!r} needs input {name!r} ({spec}); inputs: {names}")
            if spec.is_image:
                items[name], _ = parse_v2(InferRequest(pipeline.name, [inp], from_grpc=payload.from_grpc))
            else:
                items[name] = _numeric(inp.as_numpy(), spec, f"input {name!r}", inp.datatype)
        params = to_http_parameters(payload.parameters) if payload.parameters else {}
        protocol, rid = "v2", payload.id
        binary = bool(params.get("binary_data_output", False)) and not payload.from_grpc
    elif isinstance(payload, dict):
        protocol, rid, binary = "v1", None, False
        if len(names) == 1 and pipeline.inputs[names[0]].is_image:
            items[names[0]], _ = parse_v1(payload)
        else:
            instances = payload.get("instances")
            if not isinstance(instances, list) or not instances or not all(isinstance(i, dict) for i in instances):
                raise InvalidInput(f"pipeline {pipeline.name!r} takes {{\"instances\": [{{input: value}}, ...]}} "
                                   f"with inputs {names}")
            for i, inst in enumerate(instances):
                extra = sorted(set(inst) - set(names))
                if extra or len(inst) != len(names):
                    raise InvalidInput(f"instance {i} must have exactly the inputs {names}, got {sorted(inst)}")
            for name, spec in pipeline.inputs.items():
                column = [inst[name] for inst in instances]
                if spec.is_image:
                    items[name], _ = parse_v1({"instances": column})
                else:
                    items[name] = _numeric(column, spec, f"input {name!r}")
    else:
        raise InvalidInput(f"unsupported request payload of type {type(payload).__name__}")
    sizes = {k: len(v) for k, v in items.items()}
    if len(set(sizes.values())) != 1 or 0 in sizes.values():
        raise InvalidInput(f"inputs must hold the same number (>= 1) of instances, got {sizes}")
    return Decoded(protocol, items, next(iter(sizes.values())), rid, binary, outputs=wanted)


def v2_outputs(outputs: dict[str, Any]) -> list[InferOutput]:
    out = []
    for name, value in outputs.items():
        arr = np.asarray(value)
        out.append(InferOutput(name=name, shape=list(arr.shape), datatype=datatype_of(arr.dtype), data=arr))
    return out


def v1_predictions(outputs: dict[str, Any], n: int) -> list[dict]:
    arrays = {k: np.asarray(v) for k, v in outputs.items()}
    return [{k: a[i].tolist() for k, a in arrays.items()} for i in range(n)]


class PipelineModel(Model):
    """A pipeline served like a model: same routes, metadata from its inputs and outputs, ready with its models."""

    def __init__(self, pipeline: Pipeline, runtime: GraphRuntime) -> None:
        self._ready_override = False
        super().__init__(pipeline.name)
        self.pipeline = pipeline
        self.runtime = runtime
        self.last_trace: list[NodeRun] = []

    @property
    def ready(self) -> bool:  # a pipeline is ready exactly when all its models are
        models = [self.runtime.resolve(name, version) for name, version in self.pipeline.model_names]
        return all(m is not None and m.ready for m in models)

    @ready.setter
    def ready(self, value: bool) -> None:
        self._ready_override = value  # kserve sets it; readiness follows the models

    def missing_models(self) -> list[str]:
        return sorted(n for n, v in self.pipeline.model_names
                      if (m := self.runtime.resolve(n, v)) is None or not m.ready)

    def get_input_types(self) -> list[dict]:
        return [spec.to_dict(name) for name, spec in self.pipeline.inputs.items()]

    def get_output_types(self) -> list[dict]:
        return [spec.to_dict(name) for name, spec in self.pipeline.output_specs.items()]

    async def preprocess(self, payload: Any, headers: dict | None = None) -> Decoded:
        if not self.ready:
            raise ModelNotReady(self.name, f"models not ready: {self.missing_models()}")
        return await asyncio.to_thread(decode_request, self.pipeline, payload)

    async def predict(self, payload: Decoded, headers: dict | None = None, response_headers: dict | None = None):
        try:
            outputs = await execute(self.pipeline, payload.items, self.runtime, payload.trace)
        except NodeError as exc:
            log.warning("%s", exc)
            if exc.bad_input:
                raise InvalidInput(str(exc)) from None
            raise InferenceError(str(exc)) from None
        except MlkitError as exc:
            raise InvalidInput(str(exc)) from None
        self.last_trace = payload.trace
        return payload, outputs

    async def postprocess(self, result: Any, headers: dict | None = None, response_headers: dict | None = None):
        from mlkit.serving.payload import only_requested

        req, outputs = result
        if req.protocol == "v1":
            return {"predictions": v1_predictions(outputs, req.n)}
        return InferResponse(response_id=req.request_id or "", model_name=self.name,
                             infer_outputs=only_requested(v2_outputs(outputs), req.outputs),
                             use_binary_outputs=req.binary_outputs)
