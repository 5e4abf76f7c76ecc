"""The seed's OpenVINO config loads once its model paths point at mlkit models; the cluster form of a pipeline
(KServe InferenceGraph + one InferenceService per node) is valid against KServe's CRDs and computes the same
answer as the in-server pipeline when its steps are chained the way KServe's router chains them.

The CRDs come from ``../shared/kserve-crds`` (next to the repository); the schema checks skip when it is absent.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import functools
import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from ensemble_helpers import REPO, copy_version

from mlkit.errors import MlkitError

SEED_MD = (REPO / ".." / "shared" / "seeds" / "model-ensemble-dag.md").resolve()
SEED_COPY = REPO / "tests" / "ensemble" / "data" / "ovms_seed_config.json"
CRDS = (REPO / ".." / "shared" / "kserve-crds").resolve()


# --------------------------------------------------------------------------- the seed's config
def test_the_seed_copy_is_the_seed_config():
    if not SEED_MD.is_file():
        pytest.skip(f"seed document not found at {SEED_MD}")
    block = SEED_MD.read_text().split("~$ cat models/config.json", 1)[1].split("```", 1)[0]
    assert json.loads(block) == json.loads(SEED_COPY.read_text())


@pytest.fixture(scope="module")
def seed_models(tiny_exports, tmp_path_factory):
    """mlkit models with the seed models' tensor names (the names live in metadata.json)."""
    root = tmp_path_factory.mktemp("seed")
    copy_version(tiny_exports["cls-a"], root / "googlenet" / "1", input_name="input",
                 output_name="InceptionV2/Predictions/Softmax")
    copy_version(tiny_exports["cls-b"], root / "resnet" / "1", input_name="map/TensorArrayStack/TensorArrayGatherV3",
                 output_name="softmax_tensor")
    meta = json.loads((tiny_exports["argmax"] / "metadata.json").read_text())
    copy_version(tiny_exports["argmax"], root / "argmax" / "1",
                 outputs=[{**meta["outputs"][0], "name": "argmax/Squeeze"}])
    return root


def test_the_seed_example_loads_once_its_model_paths_are_replaced(seed_models, images, direct, tmp_path):
    from mlkit.serving.graph.loading import Graph

    cfg = json.loads(SEED_COPY.read_text())
    for item in cfg["model_config_list"]:  # the only change: where the models are
        item["config"]["base_path"] = str(seed_models / item["config"]["name"])
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    with Graph.load(path) as graph:
        pm = graph.pipeline("image_classification_pipeline")
        assert pm.get_input_types() == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
        assert pm.get_output_types() == [{"name": "label", "datatype": "INT32", "shape": [-1]}]
        assert pm.pipeline.levels() == [["googlenet_node", "resnet_node"], ["argmax_node"]]
        out = graph.run("image_classification_pipeline", image=images)
    want = (direct("cls-a", images) + direct("cls-b", images)).argmax(axis=1)
    assert out["label"].dtype == np.int32 and out["label"].tolist() == want.tolist()


def test_the_seed_with_its_original_tensor_names_is_refused_naming_the_item(tiny_exports, tmp_path):
    """Paths replaced but models that do not have the seed's tensor names: a clear load-time error."""
    from mlkit.serving.graph.loading import Graph

    cfg = json.loads(SEED_COPY.read_text())
    for item in cfg["model_config_list"]:
        item["config"]["base_path"] = str(tiny_exports[{"googlenet": "cls-a", "resnet": "cls-b",
                                                        "argmax": "argmax"}[item["config"]["name"]]].parent)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    with pytest.raises(MlkitError, match="node 'googlenet_node': model 'googlenet' has no output "
                                         r"'InceptionV2/Predictions/Softmax' \(its outputs: \['classes', "
                                         r"'probabilities', 'scores'\]\)"):
        Graph.load(path)


# --------------------------------------------------------------------------- CRD schemas
@functools.cache
def _schemas():
    from mlkit.serving.crd_schema import CrdSchemas

    return CrdSchemas(CRDS)


def crd_errors(doc: dict) -> list[str]:
    if not CRDS.is_dir():
        pytest.skip(f"KServe CRDs not found at {CRDS}")
    return _schemas().errors(doc)


@pytest.fixture(scope="module")
def compiled(config_dir):
    from mlkit.serving.graph.manifest import compile_config
    from mlkit.serving.manifests import to_dict

    objs = compile_config(config_dir / "config.json", "s3://models/ensemble", namespace="team-a")
    return {name: [to_dict(o) for o in docs] for name, docs in objs.items()}


def test_inference_graph_is_sequence_of_ensemble_and_combiner(compiled):
    graph, *services = compiled["ensemble"]
    assert crd_errors(graph) == []
    assert graph["kind"] == "InferenceGraph" and graph["metadata"]["name"] == "ensemble"
    nodes = graph["spec"]["nodes"]
    assert nodes["root"] == {"routerType": "Sequence", "steps": [
        {"data": "$request", "dependency": "Hard", "name": "level-0", "nodeName": "level-0"},
        {"data": "$response", "dependency": "Hard", "name": "argmax_node", "serviceName": "ensemble-argmax-node"}]}
    assert nodes["level-0"] == {"routerType": "Ensemble", "steps": [
        {"dependency": "Hard", "name": "cls-a_node", "serviceName": "ensemble-cls-a-node"},
        {"dependency": "Hard", "name": "cls-b_node", "serviceName": "ensemble-cls-b-node"}]}
    assert [s["metadata"]["name"] for s in services] == ["ensemble-cls-a-node", "ensemble-cls-b-node",
                                                         "ensemble-argmax-node"]
    for svc in services:
        assert crd_errors(svc) == []
        (container,) = svc["spec"]["predictor"]["containers"]
        assert {"name": "STORAGE_URI", "value": "s3://models/ensemble"} in container["env"]
        args = container["args"]
        assert args[:2] == ["--graph-config", "/mnt/models/config.json"] and args[2] == "--graph-step"
        assert args[3] == f"ensemble/{svc['metadata']['annotations']['mlkit.io/node']}"
        assert svc["metadata"]["namespace"] == "team-a"


def test_custom_nodes_get_their_own_service_and_a_single_node_is_one_step(compiled):
    graph, *services = compiled["average"]
    assert [s["metadata"]["annotations"]["mlkit.io/node"] for s in services] == ["cls-a_node", "cls-b_node", "avg"]
    graph, service = compiled["guarded"]
    assert crd_errors(graph) == [] and crd_errors(service) == []
    assert graph["spec"]["nodes"] == {"root": {"routerType": "Sequence", "steps": [
        {"data": "$request", "dependency": "Hard", "name": "guard_node", "serviceName": "guarded-guard-node"}]}}


def test_the_validator_bites(compiled):
    graph = copy.deepcopy(compiled["ensemble"][0])
    graph["spec"]["nodes"]["root"]["routerType"] = "Parallel"
    graph["spec"]["nodes"]["level-0"]["steps"][0]["serviceNmae"] = "x"
    errors = crd_errors(graph)
    assert any("'Parallel' is not one of" in e for e in errors) and any("serviceNmae" in e for e in errors)


def _skip_config(third: tuple[str, ...]) -> dict:
    """a reads the request, b reads a, c reads ``third``: with ("a", "b"), c skips a level."""
    def n(name, *sources):
        return {"name": name, "type": "custom", "library_name": "softmax_average",
                "inputs": [{f"i{k}": {"node_name": s, "data_item": "p" if s != "request" else "x"}}
                           for k, s in enumerate(sources)], "outputs": [{"data_item": "probabilities", "alias": "p"}]}

    return {"pipeline_config_list": [{"name": "skip", "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
                                      "nodes": [n("a", "request"), n("b", "a"), n("c", *third)],
                                      "outputs": [{"p": {"node_name": "c", "data_item": "p"}},
                                                  {"a": {"node_name": "a", "data_item": "p"}}]}]}


def test_a_node_reading_the_request_and_a_node_cannot_become_a_step():
    from mlkit.serving.graph.config import parse_config
    from mlkit.serving.graph.manifest import inference_graph
    from mlkit.serving.graph.pipeline import build_pipelines

    p = build_pipelines(parse_config(_skip_config(("request", "b"))), lambda *a: None)["skip"]
    with pytest.raises(MlkitError, match="node 'c' input 'i0' reads the request, but the node also reads other nodes"):
        inference_graph(p)


def test_data_that_skips_levels_is_forwarded_by_the_steps_in_between(tmp_path):
    """c (level 2) reads a (level 0) and the pipeline outputs a: b's step carries a's output along."""
    from mlkit.serving.graph.loading import Graph, attach_graph
    from mlkit.serving.repository import TFLiteModelRepository

    path = tmp_path / "config.json"
    path.write_text(json.dumps(_skip_config(("a", "b"))))
    x = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
    with Graph.load(path) as g:
        want = g.run("skip", x=np.asarray(x, np.float32))
    steps = {n: next(iter(attach_graph(TFLiteModelRepository(None), path, step=f"skip/{n}").values()))
             for n in "abc"}
    assert steps["b"].plan.forward == {"a/p": ("a", "p", steps["c"].pipeline.inputs["a/p"])}

    async def chain():
        body = {"instances": [{"x": row} for row in x]}
        for n in "abc":  # a Sequence of single steps: each gets the previous response
            body, _ = await steps[n](json.loads(json.dumps(body)))
        return body

    answer = asyncio.run(chain())
    assert [o["name"] for o in answer["outputs"]] == ["p", "a"]
    for out in answer["outputs"]:
        np.testing.assert_allclose(np.reshape(out["data"], out["shape"]), want[out["name"]], rtol=1e-6)


def test_absolute_base_paths_cannot_be_shipped(config_dir, tmp_path):
    from mlkit.serving.graph.manifest import compile_config

    cfg = json.loads((config_dir / "config.json").read_text())
    cfg["model_config_list"][0]["config"]["base_path"] = str(config_dir / "cls-a")
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(MlkitError, match="model 'cls-a': base_path .* must be relative to the config's folder"):
        compile_config(tmp_path / "config.json", "s3://m/e")


def test_steps_chained_like_the_router_give_the_pipeline_answer(config_dir, images, direct):
    """What KServe's router does, in-process: level 0 steps get the client body, their answers are merged as
    {stepName: response}, the argmax step gets that merge; its answer is the graph's answer."""
    from mlkit.serving.graph.loading import attach_graph
    from mlkit.serving.repository import TFLiteModelRepository

    def step(node):
        repo = TFLiteModelRepository(None)
        (model,) = attach_graph(repo, config_dir / "config.json", step=f"ensemble/{node}").values()
        return repo, model

    steps = {n: step(n) for n in ("cls-a_node", "cls-b_node", "argmax_node")}
    assert {n: sorted(r.models) for n, (r, _) in steps.items()} == {
        "cls-a_node": ["cls-a", "ensemble-cls-a-node"], "cls-b_node": ["cls-b", "ensemble-cls-b-node"],
        "argmax_node": ["argmax", "ensemble-argmax-node"]}
    v1 = {"instances": [{"b64": base64.b64encode(_png(im)).decode()} for im in images]}
    v2 = {"inputs": [{"name": "image", "shape": [len(images)], "datatype": "BYTES",
                      "data": [i["b64"] for i in v1["instances"]]}]}

    async def graph(body):
        level0 = await asyncio.gather(*(steps[n][1](copy.deepcopy(body)) for n in ("cls-a_node", "cls-b_node")))
        merged = json.loads(json.dumps({n: r for n, (r, _) in zip(("cls-a_node", "cls-b_node"), level0,
                                                                  strict=True)}))
        answer, _ = await steps["argmax_node"][1](merged)
        return merged, answer

    want = (direct("cls-a", images) + direct("cls-b", images)).argmax(axis=1).tolist()
    for body in (v1, v2):
        merged, answer = asyncio.run(graph(body))
        a = merged["cls-a_node"]["outputs"][0]
        assert a["name"] == "probability" and a["shape"] == [len(images), 3]
        np.testing.assert_allclose(np.reshape(a["data"], a["shape"]), direct("cls-a", images), atol=1e-5)
        assert answer == {"model_name": "ensemble-argmax-node", "outputs": [
            {"name": "label", "datatype": "INT32", "shape": [len(images)], "data": want}]}
    # the "average" pipeline has the same level 0; its last step also answers the members' outputs, by the
    # pipeline's output names, forwarded from the merged body
    repo = TFLiteModelRepository(None)
    (avg,) = attach_graph(repo, config_dir / "config.json", step="average/avg").values()
    answer, _ = asyncio.run(avg(merged))
    out = {o["name"]: np.reshape(o["data"], o["shape"]) for o in answer["outputs"]}
    assert list(out) == ["probabilities", "label", "a", "b"]
    np.testing.assert_allclose(out["b"], direct("cls-b", images), atol=1e-5)
    np.testing.assert_allclose(out["probabilities"], (direct("cls-a", images) + direct("cls-b", images)) / 2,
                               atol=1e-5)
    from kserve.errors import InvalidInput

    with pytest.raises(InvalidInput, match="the body lacks the response of step 'cls-b_node'"):
        asyncio.run(steps["argmax_node"][1]({"cls-a_node": merged["cls-a_node"]}))
    for r in [repo, *(r for r, _ in steps.values())]:
        r.stop_all()


def _png(image):
    from mlkit.client.http import encode_image

    return encode_image(image, "png")


# --------------------------------------------------------------------------- CLI
def _cli(*args):
    from mlkit.cli import main

    result = CliRunner().invoke(main, ["graph", *map(str, args)])
    assert "Traceback" not in result.output, result.output
    return result


def test_cli_validate_and_manifest(config_dir, tmp_path):
    r = _cli("validate", config_dir / "config.json")
    assert r.exit_code == 0, r.output
    assert "pipeline ensemble: inputs image BYTES [-1] -> outputs label INT32 [-1]" in r.output
    assert "level 0: cls-a_node, cls-b_node  (in parallel)" in r.output
    r = _cli("manifest", config_dir / "config.json", "--storage-uri", "s3://m/e", "--out", tmp_path / "k8s",
             "--pipeline", "ensemble")
    assert r.exit_code == 0, r.output
    docs = list(yaml.safe_load_all((tmp_path / "k8s" / "ensemble.yaml").read_text()))
    assert [d["kind"] for d in docs] == ["InferenceGraph"] + ["InferenceService"] * 3
    for d in docs:
        assert crd_errors(d) == []
    r = _cli("manifest", config_dir / "config.json", "--storage-uri", "s3://m/e", "--pipeline", "nope")
    assert r.exit_code == 2 and "no pipeline 'nope'" in r.output


def test_service_names_are_dns_labels_that_fit_knative():
    import re

    from mlkit.serving.graph.step import dns_name, step_service_name

    long_a = step_service_name("image_classification_pipeline", "a_very_long_node_name_number_one")
    long_b = step_service_name("image_classification_pipeline", "a_very_long_node_name_number_two")
    for name in (long_a, long_b, dns_name("9_Lives"), step_service_name("P", "googlenet_node")):
        assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name), name
    assert len(long_a) == len(long_b) == 45 and long_a != long_b
    assert step_service_name("P", "googlenet_node") == "p-googlenet-node" and dns_name("9_Lives") == "x-9-lives"
