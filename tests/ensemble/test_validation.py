"""Every load-time error of a pipeline config, each with a message naming the node or the item.

Model signatures come from a table here (what the served models' v2 metadata would say), so these
tests need no model files.
"""

from __future__ import annotations

import copy
import json

import pytest

from mlkit.errors import MlkitError
from mlkit.serving.graph.config import load_config, parse_config
from mlkit.serving.graph.pipeline import GraphError, ModelSignature, build_pipelines
from mlkit.serving.graph.tensors import IMAGE, TensorSpec

SIGS = {
    "cls_a": ModelSignature({"image": IMAGE}, {"probabilities": TensorSpec("FP32", (-1, 3)),
                                               "classes": TensorSpec("INT32", (-1,))}),
    "cls_b": ModelSignature({"image": IMAGE}, {"probabilities": TensorSpec("FP32", (-1, 3))}),
    "cls_4": ModelSignature({"image": IMAGE}, {"probabilities": TensorSpec("FP32", (-1, 4))}),
    "argmax": ModelSignature({"input1": TensorSpec("FP32", (-1, 3)), "input2": TensorSpec("FP32", (-1, 3))},
                             {"label": TensorSpec("INT32", (-1,))}),
}


def signature(name, version):
    return SIGS[name]


def src(node, item):
    return {"node_name": node, "data_item": item}


def base() -> dict:
    """A valid config: cls_a and cls_b in parallel, then argmax (the seed's shape)."""
    return {
        "model_config_list": [{"config": {"name": n, "base_path": f"/models/{n}"}} for n in SIGS],
        "pipeline_config_list": [{
            "name": "pipe", "inputs": ["image"],
            "nodes": [
                {"name": "a", "model_name": "cls_a", "type": "DL model", "inputs": [{"image": src("request", "image")}],
                 "outputs": [{"data_item": "probabilities", "alias": "prob"}]},
                {"name": "b", "model_name": "cls_b", "type": "DL model", "inputs": [{"image": src("request", "image")}],
                 "outputs": [{"data_item": "probabilities", "alias": "prob"}]},
                {"name": "c", "model_name": "argmax", "type": "DL model",
                 "inputs": [{"input1": src("a", "prob")}, {"input2": src("b", "prob")}],
                 "outputs": [{"data_item": "label", "alias": "label"}]},
            ],
            "outputs": [{"label": src("c", "label")}]}]}


def build(cfg: dict):
    return build_pipelines(parse_config(cfg), signature)


def nodes(cfg: dict) -> dict:
    return {n["name"]: n for n in cfg["pipeline_config_list"][0]["nodes"]}


def test_the_base_config_is_valid_and_typed():
    (p,) = build(base()).values()
    assert list(p.nodes)[-1] == "c" and p.levels() == [["a", "b"], ["c"]]
    assert p.inputs == {"image": IMAGE} and p.output_specs == {"label": TensorSpec("INT32", (-1,))}
    assert p.nodes["c"].input_specs == {"input1": TensorSpec("FP32", (-1, 3)), "input2": TensorSpec("FP32", (-1, 3))}


def _cycle(cfg):  # a reads c's label: a -> c -> a
    nodes(cfg)["a"]["inputs"] = [{"image": src("c", "label")}]
    cfg["pipeline_config_list"][0]["nodes"].append(
        {"name": "d", "model_name": "cls_a", "inputs": [{"image": src("request", "image")}],
         "outputs": [{"data_item": "probabilities", "alias": "p"}]})


def _unconnected(cfg):
    cfg["pipeline_config_list"][0]["nodes"].append(
        {"name": "lonely", "model_name": "cls_a", "inputs": [{"image": src("request", "image")}],
         "outputs": [{"data_item": "probabilities", "alias": "p"}]})


def _missing_node(cfg):
    nodes(cfg)["c"]["inputs"][1] = {"input2": src("ghost", "prob")}


def _missing_model(cfg):
    nodes(cfg)["b"]["model_name"] = "resnet"


def _missing_data_item(cfg):
    nodes(cfg)["c"]["inputs"][0] = {"input1": src("a", "probability")}


def _missing_model_output(cfg):
    nodes(cfg)["a"]["outputs"] = [{"data_item": "softmax_tensor", "alias": "prob"}]


def _missing_request_item(cfg):
    nodes(cfg)["b"]["inputs"] = [{"image": src("request", "picture")}]


def _unknown_model_input(cfg):
    nodes(cfg)["c"]["inputs"].append({"input3": src("a", "prob")})


def _no_connection(cfg):
    nodes(cfg)["c"]["inputs"].pop()


def _two_connections(cfg):
    nodes(cfg)["c"]["inputs"].append({"input1": src("b", "prob")})


def _shape_mismatch(cfg):
    nodes(cfg)["b"]["model_name"] = "cls_4"


def _dtype_mismatch(cfg):
    nodes(cfg)["a"]["outputs"].append({"data_item": "classes", "alias": "cls"})
    nodes(cfg)["c"]["inputs"][0] = {"input1": src("a", "cls")}


def _named_like_model(cfg):
    cfg["pipeline_config_list"][0]["name"] = "argmax"


def _unused_input(cfg):
    cfg["pipeline_config_list"][0]["inputs"].append("depth")


def _unknown_custom(cfg):
    nodes(cfg)["c"].update({"type": "custom", "library_name": "majority_vote", "model_name": None})


def _custom_shape_mismatch(cfg):
    nodes(cfg)["b"]["model_name"] = "cls_4"
    nodes(cfg)["c"].update({"type": "custom", "library_name": "argmax_sum", "model_name": None,
                            "outputs": [{"data_item": "label", "alias": "label"}]})


def _custom_missing_output(cfg):
    nodes(cfg)["c"].update({"type": "custom", "library_name": "argmax_sum", "model_name": None,
                            "outputs": [{"data_item": "argmax/Squeeze", "alias": "label"}]})


def _bad_custom_params(cfg):
    nodes(cfg)["c"].update({"type": "custom", "library_name": "softmax_average", "model_name": None,
                            "params": {"weights": {"input9": 2.0}}})


@pytest.mark.parametrize("mutate, message", [
    (_cycle, "pipeline 'pipe': has a cycle: a -> c -> a"),
    (_unconnected, "node 'lonely' is unconnected: nothing leads from its outputs to the pipeline outputs"),
    (_missing_node, "node 'c' input 'input2' reads from node 'ghost', which does not exist"),
    (_missing_model, "node 'b' refers to model 'resnet', which is not in model_config_list"),
    (_missing_data_item, "node 'c' input 'input1' reads data item 'probability' of node 'a', which has no such "
                         "output (its outputs: ['prob'])"),
    (_missing_model_output, "node 'a': model 'cls_a' has no output 'softmax_tensor' (its outputs: ['classes', "
                            "'probabilities'])"),
    (_missing_request_item, "node 'b' input 'image' reads 'picture' from the request, but the pipeline has no input "
                            "'picture'"),
    (_unknown_model_input, "node 'c': model 'argmax' has no input 'input3'"),
    (_no_connection, "node 'c': input 'input2' of model 'argmax' has no connection"),
    (_two_connections, "node 'c': input 'input1' has two connections (node 'a' output 'prob' and node 'b' output "
                       "'prob')"),
    (_shape_mismatch, "shape mismatch: node 'c' input 'input2' (model 'argmax') expects FP32 [-1, 3], but it is "
                      "connected to node 'b' output 'prob', which is FP32 [-1, 4]"),
    (_dtype_mismatch, "datatype mismatch: node 'c' input 'input1' (model 'argmax') expects FP32 [-1, 3], but it is "
                      "connected to node 'a' output 'cls', which is INT32 [-1]"),
    (_named_like_model, "pipeline 'argmax': a pipeline cannot be named like a model"),
    (_unused_input, "pipeline input 'depth' is unconnected: no node reads it"),
    (_unknown_custom, "node 'c' uses custom node 'majority_vote', which is not registered (registered: "
                      "['argmax_sum', 'softmax_average'"),
    (_custom_shape_mismatch, "node 'c' (custom node 'argmax_sum'): shape mismatch between its inputs"),
    (_custom_missing_output, "node 'c': custom node 'argmax_sum' has no output 'argmax/Squeeze'"),
    (_bad_custom_params, "params.weights names ['input9'], which are not its inputs"),
])
def test_invalid_pipelines_are_refused_with_a_specific_message(mutate, message):
    cfg = base()
    mutate(cfg)
    with pytest.raises(GraphError) as err:
        build(cfg)
    assert message in str(err.value)


def test_a_request_input_read_with_two_shapes_is_a_mismatch():
    cfg = base()
    SIGS["depth_model"] = ModelSignature({"image": TensorSpec("FP32", (-1, 8))}, {"probabilities":
                                                                                 TensorSpec("FP32", (-1, 3))})
    try:
        cfg["model_config_list"].append({"config": {"name": "depth_model", "base_path": "/m/d"}})
        nodes(cfg)["b"]["model_name"] = "depth_model"
        with pytest.raises(GraphError, match="datatype mismatch on request input 'image': node 'b' input 'image' "
                                             r"expects FP32 \[-1, 8\], but node 'a' input 'image' makes it BYTES"):
            build(cfg)
    finally:
        del SIGS["depth_model"]


def test_two_pipelines_with_one_name_and_a_model_defined_twice():
    cfg = base()
    cfg["pipeline_config_list"].append(copy.deepcopy(cfg["pipeline_config_list"][0]))
    with pytest.raises(GraphError, match="pipeline 'pipe' is defined twice"):
        build(cfg)
    cfg = base()
    cfg["model_config_list"].append(copy.deepcopy(cfg["model_config_list"][0]))
    with pytest.raises(MlkitError, match="model 'cls_a' is defined twice"):
        build(cfg)


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c["pipeline_config_list"][0]["nodes"][0].update(model_nam="x"),
     r"pipeline_config_list\[0\]\(name='pipe'\).nodes\[0\]\(name='a'\).model_nam: Extra inputs are not permitted"),
    (lambda c: c["pipeline_config_list"][0]["nodes"][2]["inputs"].__setitem__(0, {"input1": src("a", "prob"),
                                                                                  "x": src("b", "prob")}),
     "input 0 must map exactly one name"),
    (lambda c: c["pipeline_config_list"][0]["nodes"][1].update(type="DL-model"),
     r"nodes\[1\]\(name='b'\).type: Input should be 'DL model' or 'custom'"),
    (lambda c: c["pipeline_config_list"][0].pop("outputs"), r"pipeline_config_list\[0\]\(name='pipe'\).outputs: "
                                                            "Field required"),
])
def test_malformed_config_names_the_field(mutate, message):
    cfg = base()
    mutate(cfg)
    with pytest.raises(MlkitError, match=message):
        build(cfg)


def test_load_config_errors_name_the_file(tmp_path):
    with pytest.raises(MlkitError, match="not found"):
        load_config(tmp_path / "missing.json")
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(MlkitError, match=f"{bad}: invalid JSON"):
        load_config(bad)
    bad.write_text(json.dumps([1]))
    with pytest.raises(MlkitError, match="expected a JSON object"):
        load_config(bad)


def test_custom_only_input_must_be_declared():
    cfg = {"pipeline_config_list": [{"name": "p", "inputs": ["x"], "nodes": [
        {"name": "s", "type": "custom", "library_name": "softmax_average", "inputs": [{"x": src("request", "x")}],
         "outputs": [{"data_item": "label", "alias": "l"}]}], "outputs": [{"l": src("s", "l")}]}]}
    with pytest.raises(GraphError, match="pipeline input 'x' feeds only custom nodes, so its shape and datatype are "
                                         "unknown; declare it"):
        build(cfg)
    cfg["pipeline_config_list"][0]["inputs"] = [{"name": "x", "datatype": "FP32", "shape": [-1, 5]}]
    (p,) = build(cfg).values()
    assert p.output_specs == {"l": TensorSpec("INT32", (-1,))}
