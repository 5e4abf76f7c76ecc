"""One pipeline node as its own service: what a KServe InferenceGraph calls on a cluster.

On a cluster there is no in-server DAG: KServe's graph router POSTs the request (or the previous
step's response) to one InferenceService per step, and an ``Ensemble`` router merges the responses of
parallel steps into ``{stepName: response}``. So every node, custom ones included, becomes a service
running the mlkit serving image with ``--graph-config CONFIG --graph-step PIPELINE/NODE``. That service
serves one ``StepModel`` named like the InferenceService (the router calls
``/v1/models/<service>:predict``), which:

- for a node that reads the request (level 0): decodes the client's body like the pipeline does (v1
  instances or a v2 ``{"inputs": [...]}`` JSON body);
- for a node at level k > 0: takes its inputs from the body, which is the previous step's response or the
  Ensemble's ``{stepName: response}`` (step names are node names);
- runs the node (the same executor and runtime as in-server) and answers a v2-shaped JSON response with
  the node's outputs (named by alias).

A router step only sees the step just before it, so data that a later level (or the pipeline's
outputs) needs from an earlier level is *forwarded*: the first node of each level in between copies it
into its response as ``"<node>/<alias>"``. The last level, when it has one node, answers with the
pipeline's output names, so the graph's answer looks like the in-server pipeline's v2 answer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable
from typing import Any

import numpy as np
from kserve.errors import InvalidInput

from mlkit.errors import MlkitError
from mlkit.serving.graph.config import REQUEST, GraphConfig
from mlkit.serving.graph.pipeline import ModelSignature, Pipeline, Source, build_pipelines
from mlkit.serving.graph.serving import Decoded, GraphRuntime, PipelineModel, decode_request
from mlkit.serving.graph.tensors import TensorSpec, datatype_of


def dns_name(*parts: str, limit: int = 63) -> str:
    """A DNS-1035 label (Kubernetes object name) from free-form names, stable and at most ``limit`` characters."""
    raw = "-".join(parts)
    name = re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-")
    name = re.sub(r"-{2,}", "-", name)
    if not name or not name[0].isalpha():
        name = f"x-{name}".rstrip("-")
    if len(name) > limit:
        digest = hashlib.sha1(raw.encode()).hexdigest()[:6]
        name = f"{name[:limit - 7].rstrip('-')}-{digest}"
    return name


def step_service_name(pipeline: str, node: str) -> str:
    # Knative derives longer names from an InferenceService's (route, revision); KServe advises <= 45 characters.
    return dns_name(pipeline, node, limit=45)


@dataclasses.dataclass
class StepPlan:
    """How one node's service reads its body and names its answer."""

    pipeline: Pipeline  # the one-node pipeline it runs; input keys: request items, or "<node>/<alias>"
    reads_request: bool
    prev_single: bool  # the previous level has one step: the body is its response, not {stepName: response}
    lookups: dict[str, tuple[str, str]]  # input key -> (previous-level step, output name in its response)
    forward: dict[str, tuple[str, str, TensorSpec]]  # emitted name -> (step, output name, spec)
    rename: dict[str, str]  # own alias -> emitted name


def plan_step(full: Pipeline, node_name: str) -> StepPlan:
    """The service plan of ``node_name``; ``MlkitError`` when the router's data flow cannot feed it."""
    if node_name not in full.nodes:
        raise MlkitError(f"pipeline {full.name!r} has no node {node_name!r} (nodes: {list(full.nodes)})")
    levels = full.levels()
    level_of = {n: i for i, names in enumerate(levels) for n in names}
    carrier = [names[0] for names in levels]
    last = len(levels)  # pipeline outputs are read "after" the last level
    node, k = full.nodes[node_name], level_of[node_name]
    for inp, src in node.inputs.items():
        if k > 0 and src.node == REQUEST:
            raise MlkitError(f"pipeline {full.name!r}: node {node_name!r} input {inp!r} reads the request, but the "
                             "node also reads other nodes; an InferenceGraph step gets either the request or the "
                             "previous step's response, not both")

    def locate(src: Source, at: int) -> tuple[str, str]:
        """Where an item produced before level ``at`` sits in the body that level ``at`` receives."""
        if level_of[src.node] == at - 1:
            return src.node, src.item
        return carrier[at - 1], f"{src.node}/{src.item}"

    inputs, connections, lookups = {}, {}, {}
    for inp, src in node.inputs.items():
        if src.node == REQUEST:
            key, spec = src.item, full.inputs[src.item]
        else:
            key, spec = f"{src.node}/{src.item}", full.nodes[src.node].output_specs[src.item]
            lookups[key] = locate(src, k)
        inputs[key] = spec
        connections[inp] = Source(REQUEST, key)
    final = k == last - 1 and len(levels[k]) == 1
    reads = [(level_of[n], s) for n, nd in full.nodes.items() for s in nd.inputs.values() if s.node != REQUEST]
    reads += [(last, s) for s in full.outputs.values()]
    forward: dict[str, tuple[str, str, TensorSpec]] = {}
    if carrier[k] == node_name:
        for at, src in reads:
            if level_of[src.node] < k < at:
                forward[f"{src.node}/{src.item}"] = (*locate(src, k), full.nodes[src.node].output_specs[src.item])
    rename = {alias: alias for alias in node.outputs}
    if final:  # answer with the pipeline's names, like the in-server pipeline
        rename = {src.item: out for out, src in full.outputs.items() if src.node == node_name}
        forward = {out: forward[f"{src.node}/{src.item}"] for out, src in full.outputs.items()
                   if src.node != node_name}
    sub = Pipeline(step_service_name(full.name, node_name), inputs,
                   {node_name: dataclasses.replace(node, inputs=connections)},
                   {alias: Source(node_name, alias) for alias in rename},
                   {alias: node.output_specs[alias] for alias in rename})
    return StepPlan(sub, k == 0, k > 0 and len(levels[k - 1]) == 1, lookups, forward, rename)


def _from_response(body: Any, step: str, item: str, spec: TensorSpec, single: bool) -> np.ndarray:
    resp = body if single else body.get(step) if isinstance(body, dict) else None
    if resp is None:
        raise InvalidInput(f"the body lacks the response of step {step!r} (it has {sorted(body)})")
    outputs = resp.get("outputs") if isinstance(resp, dict) else None
    if not isinstance(outputs, list):
        raise InvalidInput(f"the response of step {step!r} is not a v2 response with 'outputs'")
    for out in outputs:
        if isinstance(out, dict) and out.get("name") == item:
            try:
                return np.asarray(out["data"], spec.numpy_type).reshape(out["shape"])
            except (KeyError, TypeError, ValueError) as exc:
                raise InvalidInput(f"output {item!r} of step {step!r} is malformed ({exc})") from None
    raise InvalidInput(f"the response of step {step!r} has no output {item!r} "
                       f"(outputs: {[o.get('name') for o in outputs if isinstance(o, dict)]})")


class StepModel(PipelineModel):
    """One node of a pipeline behind KServe's v1 route, fed by the InferenceGraph router."""

    def __init__(self, plan: StepPlan, runtime: GraphRuntime) -> None:
        super().__init__(plan.pipeline, runtime)
        self.plan = plan

    def _decode(self, payload: Any) -> Decoded:
        plan = self.plan
        if plan.reads_request:
            if isinstance(payload, dict) and "inputs" in payload and "instances" not in payload:
                import orjson

                from mlkit.serving.payload import parse_v2_rest

                payload = parse_v2_rest(orjson.dumps(payload), {}, self.name)
            return decode_request(self.pipeline, payload)
        if not isinstance(payload, dict):
            raise InvalidInput(f"step {self.name!r} expects the JSON response(s) of the previous step(s)")
        items = {key: _from_response(payload, step, item, self.pipeline.inputs[key], plan.prev_single)
                 for key, (step, item) in plan.lookups.items()}
        decoded = Decoded("v2", items, 0)
        decoded.forwarded = {name: _from_response(payload, step, item, spec, plan.prev_single)
                             for name, (step, item, spec) in plan.forward.items()}
        sizes = {len(v) for v in [*items.values(), *decoded.forwarded.values()]}
        if len(sizes) != 1:
            raise InvalidInput(f"step {self.name!r}: the previous steps answered different batch sizes {sizes}")
        decoded.n = sizes.pop()
        return decoded

    async def preprocess(self, payload: Any, headers: dict | None = None) -> Decoded:
        import asyncio

        return await asyncio.to_thread(self._decode, payload)

    async def postprocess(self, result: Any, headers: dict | None = None, response_headers: dict | None = None):
        decoded, outputs = result
        named = {self.plan.rename[k]: v for k, v in outputs.items()}
        named.update(decoded.forwarded)
        return {"model_name": self.name, "outputs": [
            {"name": k, "datatype": datatype_of(np.asarray(v).dtype), "shape": list(np.shape(v)),
             "data": np.asarray(v).reshape(-1).tolist()} for k, v in named.items()]}


def step_models(cfg: GraphConfig, step: tuple[str, str],
                signature: Callable[[str, int | None], ModelSignature], runtime: GraphRuntime) -> dict:
    """``{service name: StepModel}`` for node ``step = (pipeline, node)`` (the whole pipeline is validated)."""
    pipeline, node = step
    full = build_pipelines(cfg, signature, only=pipeline)[pipeline]
    plan = plan_step(full, node)
    return {plan.pipeline.name: StepModel(plan, runtime)}
