"""The executor: independent nodes overlap, a node starts when its own inputs are ready, a failure stays in its
request. Custom nodes here sleep in worker threads, so overlap is observed from the nodes' run intervals."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from mlkit.errors import MlkitError
from mlkit.serving.graph import custom
from mlkit.serving.graph.config import parse_config
from mlkit.serving.graph.executor import NodeError, execute
from mlkit.serving.graph.pipeline import build_pipelines
from mlkit.serving.graph.serving import GraphRuntime
from mlkit.serving.graph.tensors import TensorSpec

SLOW = 0.3


def _same(inputs, params):
    return {"y": next(iter(inputs.values()))}


def _sleep(seconds):
    def run(inputs, params):
        time.sleep(seconds)
        return {"y": next(iter(inputs.values())) + 1}
    return run


def _sum(inputs, params):
    return {"y": sum(inputs.values())}


def _fail_on_negative(inputs, params):
    x = next(iter(inputs.values()))
    if (x < 0).any():
        raise RuntimeError("boom")
    return {"y": x}


@pytest.fixture(scope="module", autouse=True)
def nodes():
    made = [custom.CustomNode("t_slow", _sleep(SLOW), _same), custom.CustomNode("t_fast", _sleep(0.0), _same),
            custom.CustomNode("t_sum", _sum, _same), custom.CustomNode("t_fail", _fail_on_negative, _same)]
    for n in made:
        custom.register(n)
    yield
    for n in made:
        custom.unregister(n.name)


def src(node, item):
    return {"node_name": node, "data_item": item}


def node(name, fn, *sources):
    return {"name": name, "type": "custom", "library_name": fn,
            "inputs": [{f"in{i}": src(*s)} for i, s in enumerate(sources)], "outputs": [{"data_item": "y",
                                                                                       "alias": "y"}]}


def pipeline(nodes, outputs):
    cfg = {"pipeline_config_list": [{"name": "p", "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
                                     "nodes": nodes, "outputs": [{o: src(o, "y")} for o in outputs]}]}
    return build_pipelines(parse_config(cfg), lambda n, v: None)["p"]


def run(p, x, trace=None):
    runtime = GraphRuntime(lambda n, v: None)
    try:
        return asyncio.run(execute(p, {"x": x}, runtime, trace))
    finally:
        runtime.close()


def test_independent_slow_nodes_overlap_and_the_join_waits_for_both():
    p = pipeline([node("a", "t_slow", ("request", "x")), node("b", "t_slow", ("request", "x")),
                  node("join", "t_sum", ("a", "y"), ("b", "y"))], ["join"])
    trace = []
    out = run(p, np.ones((3, 2), np.float32), trace)
    np.testing.assert_array_equal(out["join"], np.full((3, 2), 4.0, np.float32))
    runs = {r.node: r for r in trace}
    a, b, join = runs["a"], runs["b"], runs["join"]
    assert all(r.ok for r in trace)
    assert max(a.start, b.start) < min(a.end, b.end), "the two branches did not run at the same time"
    assert join.start >= max(a.end, b.end)


def test_a_node_starts_when_its_own_inputs_are_ready():
    """c reads only the fast branch: it runs while the slow branch is still busy."""
    p = pipeline([node("fast", "t_fast", ("request", "x")), node("slow", "t_slow", ("request", "x")),
                  node("c", "t_fast", ("fast", "y")), node("join", "t_sum", ("c", "y"), ("slow", "y"))], ["join"])
    trace = []
    run(p, np.zeros((1, 2), np.float32), trace)
    runs = {r.node: r for r in trace}
    assert runs["c"].end < runs["slow"].end
    assert runs["join"].start >= runs["slow"].end


def test_a_failing_node_fails_its_own_request_only():
    p = pipeline([node("guard", "t_fail", ("request", "x")), node("slow", "t_slow", ("request", "x")),
                  node("join", "t_sum", ("guard", "y"), ("slow", "y"))], ["join"])
    runtime = GraphRuntime(lambda n, v: None)
    good, bad = np.ones((2, 2), np.float32), -np.ones((1, 2), np.float32)

    async def three():
        return await asyncio.gather(*(execute(p, {"x": x}, runtime) for x in (good, bad, good)),
                                    return_exceptions=True)

    try:
        first, failed, last = asyncio.run(three())
    finally:
        runtime.close()
    assert isinstance(failed, NodeError) and not failed.bad_input
    assert str(failed) == "pipeline 'p': node 'guard' failed: RuntimeError: boom" and failed.node == "guard"
    for ok in (first, last):
        np.testing.assert_array_equal(ok["join"], np.full((2, 2), 3.0, np.float32))


def test_a_node_that_breaks_its_declared_outputs_is_named():
    def wrong(inputs, params):
        return {"y": np.zeros((1, 7), np.int64)}

    custom.register(custom.CustomNode("t_wrong", wrong, _same))
    try:
        p = pipeline([node("w", "t_wrong", ("request", "x"))], ["w"])
        with pytest.raises(NodeError, match="node 'w' failed: output 'y' has datatype INT64; expected FP32"):
            run(p, np.zeros((1, 2), np.float32))
    finally:
        custom.unregister("t_wrong")


def test_missing_request_input_and_duplicate_registration():
    p = pipeline([node("a", "t_fast", ("request", "x"))], ["a"])
    runtime = GraphRuntime(lambda n, v: None)
    try:
        with pytest.raises(MlkitError, match="pipeline 'p' needs input 'x'"):
            asyncio.run(execute(p, {}, runtime))
    finally:
        runtime.close()
    with pytest.raises(MlkitError, match="a custom node named 't_fast' is already registered"):
        custom.register(custom.CustomNode("t_fast", _same, _same))


@pytest.mark.parametrize("name, params, want_label", [
    ("argmax_sum", {}, [1, 0]),
    ("argmax_sum", {"weights": {"in0": 10.0}}, [0, 0]),
    ("softmax_average", {}, [1, 0]),
    ("softmax_average", {"from_logits": True}, [1, 0]),
])
def test_builtin_combiners(name, params, want_label):
    a = np.array([[0.6, 0.4, 0.0], [0.9, 0.1, 0.0]], np.float32)
    b = np.array([[0.0, 1.0, 0.0], [0.5, 0.3, 0.2]], np.float32)
    fn = custom.get(name)
    checked = fn.check_params(params)
    spec = TensorSpec("FP32", (-1, 3))
    assert fn.outputs({"in0": spec, "in1": spec}, checked)["probabilities"] == spec
    out = fn.run({"in0": a, "in1": b}, checked)
    assert out["label"].tolist() == want_label and out["label"].dtype == np.int32
    if name == "argmax_sum" and not params:
        np.testing.assert_allclose(out["probabilities"], (a + b) / 2)
    if params.get("from_logits"):
        ea, eb = np.exp(a) / np.exp(a).sum(1, keepdims=True), np.exp(b) / np.exp(b).sum(1, keepdims=True)
        np.testing.assert_allclose(out["probabilities"], (ea + eb) / 2, rtol=1e-6)
