"""Build pipelines from a config and refuse invalid ones at load time, each error naming its node or item.

The checks (OpenVINO Model Server refuses the same pipelines):

- a pipeline named like a model (or like another pipeline);
- a missing node, model, custom node function, data item or model output, a missing pipeline input;
- a model input with no connection, or with two; a connection to an input the model does not have;
- a cycle;
- an unconnected node (nothing leads from it to the pipeline outputs), an unused pipeline input;
- a shape or datatype mismatch between connected tensors.

``build_pipelines`` takes a ``signature`` function that gives the input and output specs of a model by
name (the served models' v2 metadata), so the checks use what clients see.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from mlkit.errors import MlkitError
from mlkit.serving.graph import custom as custom_nodes
from mlkit.serving.graph.config import REQUEST, GraphConfig, InputSpec, PipelineConfig
from mlkit.serving.graph.tensors import TensorSpec, merge, mismatch


class GraphError(MlkitError):
    """An invalid pipeline (raised at load time)."""


@dataclasses.dataclass(frozen=True)
class ModelSignature:
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]


@dataclasses.dataclass(frozen=True)
class Source:
    node: str
    item: str

    def __str__(self) -> str:
        return f"request input {self.item!r}" if self.node == REQUEST else f"node {self.node!r} output {self.item!r}"


@dataclasses.dataclass
class Node:
    name: str
    model_name: str | None  # DL model nodes
    version: int | None
    custom: custom_nodes.CustomNode | None  # custom nodes
    params: dict
    inputs: dict[str, Source]  # node input name -> where its tensor comes from
    outputs: dict[str, str]  # alias -> the model's (or custom function's) output name
    input_specs: dict[str, TensorSpec] = dataclasses.field(default_factory=dict)
    output_specs: dict[str, TensorSpec] = dataclasses.field(default_factory=dict)  # by alias

    @property
    def kind(self) -> str:
        return "custom" if self.custom is not None else "model"

    @property
    def deps(self) -> set[str]:
        return {s.node for s in self.inputs.values() if s.node != REQUEST}

    def describe(self) -> str:
        return f"custom node {self.custom.name!r}" if self.custom else f"model {self.model_name!r}"


@dataclasses.dataclass
class Pipeline:
    name: str
    inputs: dict[str, TensorSpec]
    nodes: dict[str, Node]  # in a topological order
    outputs: dict[str, Source]
    output_specs: dict[str, TensorSpec]

    @property
    def model_names(self) -> set[tuple[str, int | None]]:
        return {(n.model_name, n.version) for n in self.nodes.values() if n.model_name is not None}

    def levels(self) -> list[list[str]]:
        """Nodes grouped by longest distance from the request (level 0 reads only the request)."""
        level: dict[str, int] = {}
        for name, node in self.nodes.items():  # topological order: deps first
            level[name] = 1 + max((level[d] for d in node.deps), default=-1)
        out: list[list[str]] = [[] for _ in range(1 + max(level.values(), default=-1))]
        for name, lv in level.items():
            out[lv].append(name)
        return out


Signature = Callable[[str, int | None], ModelSignature]


def _fail(pipeline: str, message: str) -> GraphError:
    return GraphError(f"pipeline {pipeline!r}: {message}")


def _find_cycle(deps: dict[str, set[str]]) -> list[str] | None:
    """A cycle as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for d in sorted(deps.get(n, ())):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state and (found := visit(d)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(deps):
        if n not in state and (found := visit(n)):
            return found
    return None


def _topological(deps: dict[str, set[str]], order: list[str]) -> list[str]:
    done: list[str] = []
    seen: set[str] = set()

    def visit(n: str) -> None:
        if n in seen:
            return
        seen.add(n)
        for d in sorted(deps[n], key=order.index):
            visit(d)
        done.append(n)

    for n in order:
        visit(n)
    return done


def build_pipeline(p: PipelineConfig, cfg: GraphConfig, signature: Signature,
                   libraries: dict[str, custom_nodes.CustomNode]) -> Pipeline:
    models = cfg.models()
    err = lambda msg: _fail(p.name, msg)  # noqa: E731
    if p.name in models:
        raise err(f"a pipeline cannot be named like a model: {p.name!r} is also in model_config_list "
                  "(requests find a model or a pipeline by name)")
    input_names = p.input_names()
    dup = sorted({n for n in input_names if input_names.count(n) > 1})
    if dup:
        raise err(f"input {dup[0]!r} is listed twice in inputs")
    names = [n.name for n in p.nodes]
    for n in names:
        if names.count(n) > 1:
            raise err(f"node {n!r} is defined twice")
        if n == REQUEST:
            raise err(f"a node cannot be named {REQUEST!r}: that name is the pipeline's request")

    # --- references: models, custom functions, outputs, connections -----------------------------------
    nodes: dict[str, Node] = {}
    sigs: dict[str, ModelSignature] = {}
    for nc in p.nodes:
        where = f"node {nc.name!r}"
        custom = None
        if nc.type == "DL model":
            if not nc.model_name:
                raise err(f"{where} is a DL model node without model_name")
            if nc.library_name:
                raise err(f"{where} is a DL model node; library_name is for custom nodes")
            if nc.model_name not in models:
                raise err(f"{where} refers to model {nc.model_name!r}, which is not in model_config_list "
                          f"(models: {sorted(models)})")
            try:
                sig = signature(nc.model_name, nc.version)
            except MlkitError as exc:
                raise err(f"{where}: {exc}") from None
            sigs[nc.name] = sig
            available = sig.outputs
        else:
            if not nc.library_name:
                raise err(f"{where} is a custom node without library_name (registered custom nodes: "
                          f"{sorted(set(custom_nodes.registered()) | set(libraries))})")
            if nc.model_name:
                raise err(f"{where} is a custom node; model_name is for DL model nodes")
            custom = libraries.get(nc.library_name) or custom_nodes.get(nc.library_name)
            if custom is None:
                raise err(f"{where} uses custom node {nc.library_name!r}, which is not registered (registered: "
                          f"{sorted(set(custom_nodes.registered()) | set(libraries))})")
            available = None
        if not nc.outputs:
            raise err(f"{where} has no outputs: list the data items it produces in 'outputs'")
        outputs: dict[str, str] = {}
        for out in nc.outputs:
            if out.alias in outputs:
                raise err(f"{where} has two outputs with alias {out.alias!r}")
            if available is not None and out.data_item not in available:
                raise err(f"{where}: model {nc.model_name!r} has no output {out.data_item!r} "
                          f"(its outputs: {sorted(available)})")
            outputs[out.alias] = out.data_item
        inputs: dict[str, Source] = {}
        for inp, ref in nc.connections():
            src = Source(ref.node_name, ref.data_item)
            if inp in inputs:
                raise err(f"{where}: input {inp!r} has two connections ({inputs[inp]} and {src}); "
                          "an input takes exactly one")
            if nc.type == "DL model" and inp not in sigs[nc.name].inputs:
                raise err(f"{where}: model {nc.model_name!r} has no input {inp!r} "
                          f"(its inputs: {sorted(sigs[nc.name].inputs)})")
            inputs[inp] = src
        if nc.type == "DL model":
            missing = [i for i in sigs[nc.name].inputs if i not in inputs]
            if missing:
                raise err(f"{where}: input {missing[0]!r} of model {nc.model_name!r} has no connection")
        elif not inputs:
            raise err(f"{where} has no inputs: a node must read the request or another node's output")
        params = custom.check_params(nc.params) if custom else {}
        if nc.type == "DL model" and nc.params:
            raise err(f"{where}: params are for custom nodes")
        nodes[nc.name] = Node(nc.name, nc.model_name, nc.version, custom, params, inputs, outputs)

    def check_source(src: Source, where: str) -> None:
        if src.node == REQUEST:
            if src.item not in input_names:
                raise err(f"{where} reads {src.item!r} from the request, but the pipeline has no input "
                          f"{src.item!r} (inputs: {input_names})")
        elif src.node not in nodes:
            raise err(f"{where} reads from node {src.node!r}, which does not exist in the pipeline "
                      f"(nodes: {names})")
        elif src.item not in nodes[src.node].outputs:
            raise err(f"{where} reads data item {src.item!r} of node {src.node!r}, which has no such output "
                      f"(its outputs: {sorted(nodes[src.node].outputs)})")

    for node in nodes.values():
        for inp, src in node.inputs.items():
            check_source(src, f"node {node.name!r} input {inp!r}")
    outputs: dict[str, Source] = {}
    for out, ref in p.output_refs():
        if out in outputs:
            raise err(f"output {out!r} is listed twice in outputs")
        src = Source(ref.node_name, ref.data_item)
        check_source(src, f"pipeline output {out!r}")
        outputs[out] = src

    # --- structure: cycles, unconnected nodes, unused inputs ---------------------------------------
    deps = {n: node.deps for n, node in nodes.items()}
    cycle = _find_cycle(deps)
    if cycle:
        raise err(f"has a cycle: {' -> '.join(reversed(cycle))}")
    needed: set[str] = set()
    todo = [s.node for s in outputs.values() if s.node != REQUEST]
    while todo:
        n = todo.pop()
        if n not in needed:
            needed.add(n)
            todo.extend(deps[n])
    for n in names:
        if n not in needed:
            raise err(f"node {n!r} is unconnected: nothing leads from its outputs to the pipeline outputs")
    read = {s.item for node in nodes.values() for s in node.inputs.values() if s.node == REQUEST}
    read |= {s.item for s in outputs.values() if s.node == REQUEST}
    for n in input_names:
        if n not in read:
            raise err(f"pipeline input {n!r} is unconnected: no node reads it")

    # --- tensors: request specs from their readers, then shapes and datatypes node by node ----------
    declared = {i.name: TensorSpec(i.datatype, tuple(i.shape)) for i in p.inputs if isinstance(i, InputSpec)}
    request_specs: dict[str, TensorSpec] = dict(declared)
    request_by: dict[str, str] = {n: "its declaration" for n in declared}
    for name in names:
        node = nodes[name]
        if node.model_name is None:
            continue
        for inp, src in node.inputs.items():
            if src.node != REQUEST:
                continue
            want = sigs[name].inputs[inp]
            have = request_specs.get(src.item)
            reader = f"node {name!r} input {inp!r}"
            if have is None:
                request_specs[src.item], request_by[src.item] = want, reader
            elif (kind := mismatch(have, want)) is not None:
                raise err(f"{kind} mismatch on request input {src.item!r}: {reader} expects {want}, but "
                          f"{request_by[src.item]} makes it {have}")
            else:
                request_specs[src.item] = merge(have, want)
    for n in input_names:
        if n not in request_specs:
            raise err(f"pipeline input {n!r} feeds only custom nodes, so its shape and datatype are unknown; "
                      f"declare it as {{\"name\": {n!r}, \"datatype\": ..., \"shape\": [...]}} in inputs")

    order = _topological(deps, names)

    def spec_of(src: Source) -> TensorSpec:
        return request_specs[src.item] if src.node == REQUEST else nodes[src.node].output_specs[src.item]

    for name in order:
        node = nodes[name]
        got = {inp: spec_of(src) for inp, src in node.inputs.items()}
        if node.model_name is not None:
            sig = sigs[name]
            for inp, src in node.inputs.items():
                want = sig.inputs[inp]
                if (kind := mismatch(want, got[inp])) is not None:
                    raise err(f"{kind} mismatch: node {name!r} input {inp!r} ({node.describe()}) expects {want}, "
                              f"but it is connected to {src}, which is {got[inp]}")
            node.input_specs = {inp: sig.inputs[inp] for inp in node.inputs}
            node.output_specs = {alias: sig.outputs[item] for alias, item in node.outputs.items()}
        else:
            try:
                produced = node.custom.outputs(got, node.params)
            except MlkitError as exc:
                conn = ", ".join(f"{inp} <- {src} ({got[inp]})" for inp, src in node.inputs.items())
                raise err(f"node {name!r} ({node.describe()}): {exc} [connections: {conn}]") from None
            for item in node.outputs.values():
                if item not in produced:
                    raise err(f"node {name!r}: custom node {node.custom.name!r} has no output {item!r} "
                              f"(its outputs: {sorted(produced)})")
            node.input_specs = got
            node.output_specs = {alias: produced[item] for alias, item in node.outputs.items()}
    output_specs = {out: spec_of(src) for out, src in outputs.items()}
    for out, spec in output_specs.items():
        if spec.is_image:
            raise err(f"pipeline output {out!r} is an image input passed through; outputs must be tensors")
    return Pipeline(p.name, {n: request_specs[n] for n in input_names}, {n: nodes[n] for n in order},
                    outputs, output_specs)


def build_pipelines(cfg: GraphConfig, signature: Signature, only: str | None = None) -> dict[str, Pipeline]:
    """Every pipeline of ``cfg`` (or just ``only``), checked; raises ``GraphError`` at the first problem."""
    libraries: dict[str, custom_nodes.CustomNode] = {}
    for lib in cfg.custom_node_library_config_list:
        if lib.name in libraries:
            raise GraphError(f"custom node library {lib.name!r} is defined twice")
        libraries[lib.name] = custom_nodes.load_library(lib.name, lib.base_path, cfg.folder)
    seen: set[str] = set()
    out: dict[str, Pipeline] = {}
    for p in cfg.pipeline_config_list:
        if p.name in seen:
            raise GraphError(f"pipeline {p.name!r} is defined twice")
        seen.add(p.name)
        if only is None or p.name == only:
            out[p.name] = build_pipeline(p, cfg, signature, libraries)
    if only is not None and only not in out:
        raise GraphError(f"no pipeline {only!r} in the config (pipelines: {sorted(seen)})")
    return out


def describe(pipeline: Pipeline) -> dict[str, Any]:
    """A JSON-able summary: inputs, outputs, nodes with their connections and specs, levels."""
    return {
        "name": pipeline.name,
        "inputs": [s.to_dict(n) for n, s in pipeline.inputs.items()],
        "outputs": [s.to_dict(n) for n, s in pipeline.output_specs.items()],
        "nodes": [{"name": n.name, "kind": n.kind, "target": n.model_name or n.custom.name,
                   "inputs": {i: str(s) for i, s in n.inputs.items()},
                   "outputs": {a: str(s) for a, s in n.output_specs.items()}} for n in pipeline.nodes.values()],
        "levels": pipeline.levels(),
    }
