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
from pathlib import Path
from typing import Any

import numpy as np
from kserve import Model
from kserve.errors import InferenceError, InvalidInput, ModelNotReady
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse, to_http_parameters

from mlkit.errors import MlkitError
from mlkit.serving.graph.config import GraphConfig, load_config
from mlkit.serving.graph.executor import NodeError, NodeRun, execute
from mlkit.serving.graph.pipeline import ModelSignature, Node, Pipeline, build_pipelines
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
                items = await model.batcher.submit(Job("v2", batch, extra, Thresholds()))
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


# --------------------------------------------------------------------------- server integration
def _resolver(repository) -> Resolve:
    from mlkit.serving.repository import versioned

    def resolve(name: str, version: int | None):
        return repository.get_model(name if version is None else versioned(name, version))

    return resolve


def _signature(repository, cfg: GraphConfig) -> Callable[[str, int | None], ModelSignature]:
    resolve = _resolver(repository)
    paths = cfg.models()

    def signature(name: str, version: int | None) -> ModelSignature:
        model = resolve(name, version)
        if model is None or not model.ready:
            errors = [m.load_error for m in repository.versions.get(name, {}).values() if m.load_error]
            which = f"model {name!r}" + (f" version {version}" if version else "")
            if errors:
                raise MlkitError(f"{which} could not be loaded from {paths.get(name)}: {errors[-1]}")
            raise MlkitError(f"{which} is not loaded: no version folder <n>/model.tflite under {paths.get(name)}")
        return model_signature(model)

    return signature


def attach_graph(repository, config: str | Path | GraphConfig, *, step: str | None = None,
                 max_workers: int = 4) -> dict[str, Model]:
    """Load the config's models into ``repository`` and register its pipelines (or one cluster step).

    Returns ``{name: kserve model}`` of what was registered. Raises ``MlkitError`` for an invalid config
    before any pipeline is registered, so a server never starts with a broken pipeline.
    """
    cfg = config if isinstance(config, GraphConfig) else load_config(config)
    models = cfg.models()
    pipeline_names = [p.name for p in cfg.pipeline_config_list]
    drop: set[str] = set()
    if step is not None:
        # The whole pipeline is checked as in-server (so every model it uses is loaded once); the step then
        # keeps only its own node's model.
        pipeline, node = _split_step(step)
        nodes = cfg.pipeline(pipeline).nodes
        if node not in {n.name for n in nodes}:
            raise MlkitError(f"pipeline {pipeline!r} has no node {node!r} (nodes: {[n.name for n in nodes]})")
        used = {n.model_name for n in nodes if n.model_name}
        drop = used - {n.model_name for n in nodes if n.name == node and n.model_name}
        models = {k: v for k, v in models.items() if k in used}
    else:
        for name, base in models.items():
            if repository.root is not None and (repository.root / name).is_dir() and \
                    (repository.root / name).resolve() != base.resolve():
                raise MlkitError(f"model {name!r} of {cfg.source or 'the pipeline config'} ({base}) clashes with "
                                 f"the folder {repository.root / name} of the model repository; rename one")
    for name in pipeline_names:
        if repository.root is not None and (repository.root / name).is_dir():
            raise MlkitError(f"pipeline {name!r} is named like the model folder {repository.root / name}; "
                             "a request would not know which to run")
    for name, base in models.items():
        repository.add_model_path(name, base)
        repository.load_model(name)
    runtime = GraphRuntime(_resolver(repository), max_workers=max_workers)
    if step is not None:
        from mlkit.serving.graph.step import step_models

        registered = step_models(cfg, _split_step(step), _signature(repository, cfg), runtime)
        for name in drop:
            repository.unload(name)
            repository.model_paths.pop(name, None)
    else:
        pipelines = build_pipelines(cfg, _signature(repository, cfg))
        registered = {name: PipelineModel(p, runtime) for name, p in pipelines.items()}
    repository.reserved |= set(registered)
    for name, model in registered.items():
        repository.update(model, name)
        log.info("serving pipeline %s (%d nodes, models %s)", name, len(model.pipeline.nodes),
                 sorted(n for n, _ in model.pipeline.model_names))
    return registered


def _split_step(step: str) -> tuple[str, str]:
    pipeline, sep, node = step.partition("/")
    if not sep or not pipeline or not node:
        raise MlkitError(f"graph step {step!r} must be PIPELINE/NODE")
    return pipeline, node


# --------------------------------------------------------------------------- in-process use
class Graph:
    """A pipeline config loaded in this process: ``run`` a pipeline on numpy inputs, no server needed.

    ``Graph.load("models/ensemble/config.json").run("helmet_ensemble", image=[crop1, crop2])``.
    """

    def __init__(self, repository, pipelines: dict[str, PipelineModel]) -> None:
        self.repository = repository
        self.pipelines = pipelines

    @classmethod
    def load(cls, config: str | Path | GraphConfig, num_threads: int = 1, max_batch_size: int = 1) -> Graph:
        from mlkit.serving.repository import TFLiteModelRepository

        repository = TFLiteModelRepository(None, num_threads=num_threads, max_batch_size=max_batch_size)
        return cls(repository, attach_graph(repository, config))

    def pipeline(self, name: str) -> PipelineModel:
        try:
            return self.pipelines[name]
        except KeyError:
            raise MlkitError(f"no pipeline {name!r}; pipelines: {sorted(self.pipelines)}") from None

    def model(self, name: str):
        model = self.repository.get_model(name)
        if model is None:
            raise MlkitError(f"no model {name!r}; models: {sorted(self.repository.versions)}")
        return model

    async def arun(self, name: str, trace: list[NodeRun] | None = None, **inputs: Any) -> dict[str, Any]:
        pm = self.pipeline(name)
        return await execute(pm.pipeline, inputs, pm.runtime, trace)

    def run(self, name: str, trace: list[NodeRun] | None = None, **inputs: Any) -> dict[str, Any]:
        """Run pipeline ``name``; inputs by pipeline input name (images: a list of RGB uint8 arrays)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.arun(name, trace, **inputs))
        # Inside a running loop (Jupyter): asyncio.run is refused there, so run on a helper thread's loop.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, self.arun(name, trace, **inputs)).result()

    def close(self) -> None:
        for pm in self.pipelines.values():
            pm.runtime.close()
        self.repository.stop_all()

    def __enter__(self) -> Graph:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
