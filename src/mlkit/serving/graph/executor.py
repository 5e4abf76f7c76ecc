"""Run a pipeline for one request: each node starts as soon as its inputs are ready; independent nodes overlap.

``execute`` is plain asyncio: every node is a task, started the moment the last node it reads from
finishes. Tensors pass between nodes as in-memory numpy arrays (nothing is serialised). The work
itself happens off the event loop: ``runner(node, inputs)`` awaits a served model's batcher (each model
has its own interpreter thread) or a custom node's function in a thread pool, so two independent
branches really run at the same time.

A node that fails fails this request only, with ``NodeError`` naming the pipeline and the node; the
nodes still running for the same request are cancelled. Other requests share nothing but the models.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any

from mlkit.errors import MlkitError
from mlkit.serving.graph.config import REQUEST
from mlkit.serving.graph.pipeline import Node, Pipeline
from mlkit.serving.graph.tensors import batch_size
from mlkit.serving.overload import ServerBusy

NodeRunner = Callable[[Node, dict[str, Any]], Awaitable[dict[str, Any]]]


class NodeError(Exception):
    """Node ``node`` of pipeline ``pipeline`` failed; ``bad_input`` when the request caused it (HTTP 400)."""

    def __init__(self, pipeline: str, node: str, message: str, bad_input: bool = False) -> None:
        super().__init__(f"pipeline {pipeline!r}: node {node!r} failed: {message}")
        self.pipeline, self.node, self.bad_input = pipeline, node, bad_input


@dataclasses.dataclass(frozen=True)
class NodeRun:
    """One node's run inside one request (``time.perf_counter`` seconds)."""

    node: str
    start: float
    end: float
    ok: bool


async def execute(pipeline: Pipeline, request: dict[str, Any], runner: NodeRunner,
                  trace: list[NodeRun] | None = None) -> dict[str, Any]:
    """Run ``pipeline`` on ``request`` (pipeline input name -> value); returns pipeline output name -> value."""
    missing = [n for n in pipeline.inputs if n not in request]
    if missing:
        raise MlkitError(f"pipeline {pipeline.name!r} needs input {missing[0]!r} (inputs: {list(pipeline.inputs)})")
    values: dict[tuple[str, str], Any] = {(REQUEST, k): v for k, v in request.items()}
    waiting = {name: set(node.deps) for name, node in pipeline.nodes.items()}
    running: dict[asyncio.Task, str] = {}

    async def run(node: Node) -> dict[str, Any]:
        inputs = {inp: values[(src.node, src.item)] for inp, src in node.inputs.items()}
        start, ok = time.perf_counter(), False
        try:
            try:
                raw = await runner(node, inputs)
            except MlkitError as exc:  # the request's data was wrong for this node
                raise NodeError(pipeline.name, node.name, str(exc), bad_input=True) from exc
            except (NodeError, ServerBusy, asyncio.CancelledError):  # a busy model: the whole request gets 503
                raise
            except Exception as exc:  # noqa: BLE001 - any failure fails this request, named by its node
                raise NodeError(pipeline.name, node.name, f"{type(exc).__name__}: {exc}") from exc
            out = {}
            for alias, item in node.outputs.items():
                if item not in raw:
                    raise NodeError(pipeline.name, node.name, f"{node.describe()} returned no {item!r} "
                                    f"(it returned {sorted(raw)})")
                try:
                    batch_size(raw[item], node.output_specs[alias], f"output {item!r}")
                except MlkitError as exc:  # a node that breaks its own declared specs is a server-side fault
                    raise NodeError(pipeline.name, node.name, str(exc)) from None
                out[alias] = raw[item]
            ok = True
            return out
        finally:
            if trace is not None:
                trace.append(NodeRun(node.name, start, time.perf_counter(), ok))

    def start_ready() -> None:
        for name in [n for n, deps in waiting.items() if not deps]:
            del waiting[name]
            running[asyncio.ensure_future(run(pipeline.nodes[name]))] = name

    start_ready()
    try:
        while running:
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                name = running.pop(task)
                for alias, value in task.result().items():  # raises the node's NodeError
                    values[(name, alias)] = value
                for deps in waiting.values():
                    deps.discard(name)
            start_ready()
    finally:
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
    return {out: values[(src.node, src.item)] for out, src in pipeline.outputs.items()}
