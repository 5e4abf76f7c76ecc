"""Pipelines through a real server on 127.0.0.1: metadata, v1, v2 REST, v2 gRPC, next to the models they use.

The expected answers are computed without the server: each classifier run directly, the argmax of the
sum of their probabilities (what the argmax model and the seed's pipeline compute).
"""

from __future__ import annotations

import base64
import concurrent.futures

import httpx
import numpy as np
import pytest


def _b64(image) -> str:
    from mlkit.client.http import encode_image

    return base64.b64encode(encode_image(image, "png")).decode()


def expected_label(direct, images) -> list[int]:
    return (direct("cls-a", images) + direct("cls-b", images)).argmax(axis=1).tolist()


def test_metadata_of_pipelines_and_models(server):
    meta = httpx.get(f"{server.url}/v2/models/ensemble", timeout=10).json()
    assert meta["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    assert meta["outputs"] == [{"name": "label", "datatype": "INT32", "shape": [-1]}]
    meta = httpx.get(f"{server.url}/v2/models/average", timeout=10).json()
    assert meta["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
                               {"name": "label", "datatype": "INT32", "shape": [-1]},
                               {"name": "a", "datatype": "FP32", "shape": [-1, 3]},
                               {"name": "b", "datatype": "FP32", "shape": [-1, 3]}]
    meta = httpx.get(f"{server.url}/v2/models/guarded", timeout=10).json()
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]
    classifier = httpx.get(f"{server.url}/v2/models/cls-a", timeout=10).json()
    assert classifier["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    assert [o["name"] for o in classifier["outputs"]] == ["probabilities", "classes", "scores"]
    argmax = httpx.get(f"{server.url}/v2/models/argmax", timeout=10).json()
    assert argmax["inputs"] == [{"name": "input1", "datatype": "FP32", "shape": [-1, 3]},
                                {"name": "input2", "datatype": "FP32", "shape": [-1, 3]}]
    for name in ("ensemble", "average", "cls-a", "argmax"):
        assert httpx.get(f"{server.url}/v2/models/{name}/ready", timeout=10).status_code == 200


def test_v1_pipeline(server, images, direct):
    body = {"instances": [{"b64": _b64(im)} for im in images]}
    r = httpx.post(f"{server.url}/v1/models/ensemble:predict", json=body, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": [{"label": c} for c in expected_label(direct, images)]}
    r = httpx.post(f"{server.url}/v1/models/average:predict", json=body, timeout=30)
    preds = r.json()["predictions"]
    # v2 returns the outputs a request names, and only those
    v2 = {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [_b64(images[0])]}],
          "outputs": [{"name": "a"}]}
    answer = httpx.post(f"{server.url}/v2/models/average/infer", json=v2, timeout=30)
    assert answer.status_code == 200 and [o["name"] for o in answer.json()["outputs"]] == ["a"], answer.text
    assert len(preds) == len(images)
    np.testing.assert_allclose([p["a"] for p in preds], direct("cls-a", images), atol=1e-5)
    np.testing.assert_allclose([p["probabilities"] for p in preds],
                               (direct("cls-a", images) + direct("cls-b", images)) / 2, atol=1e-5)


def test_v2_rest_pipeline_json_and_binary(server, images, direct):
    from mlkit.v2codec import serialize_bytes

    want = expected_label(direct, images)
    body = {"inputs": [{"name": "image", "shape": [len(images)], "datatype": "BYTES", "data": [_b64(im)
                                                                                              for im in images]}]}
    r = httpx.post(f"{server.url}/v2/models/ensemble/infer", json=body, timeout=30)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["model_name"] == "ensemble"
    assert data["outputs"] == [{"name": "label", "shape": [len(images)], "datatype": "INT32", "data": want}]
    same = [images[0], images[0][::-1].copy()]
    pixels = np.stack(same)
    body = {"inputs": [{"name": "image", "shape": list(pixels.shape), "datatype": "UINT8",
                        "data": pixels.reshape(-1).tolist()}]}
    r = httpx.post(f"{server.url}/v2/models/ensemble/infer", json=body, timeout=30)
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == expected_label(direct, same)
    import orjson

    from mlkit.client.http import encode_image

    raw = serialize_bytes([encode_image(im, "png") for im in images])
    head = orjson.dumps({"inputs": [{"name": "image", "shape": [len(images)], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(raw)}}]})
    r = httpx.post(f"{server.url}/v2/models/ensemble/infer", content=head + raw, timeout=30,
                   headers={"inference-header-content-length": str(len(head)),
                            "content-type": "application/octet-stream"})
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == want


def test_v2_grpc_pipeline_and_metadata(server, images, direct):
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.infer_type import InferResponse

    from mlkit.client.grpc import GRPCServingClient

    with GRPCServingClient(server.grpc_url, "ensemble", encoding="png", timeout=30) as client:
        response = InferResponse.from_grpc(client.infer(client.build(images)))
        meta = client._stub.ModelMetadata(pb.ModelMetadataRequest(name="ensemble"), timeout=10)
    (label,) = response.outputs
    assert label.name == "label" and label.as_numpy().tolist() == expected_label(direct, images)
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [("image", "BYTES", [-1])]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.outputs] == [("label", "INT32", [-1])]


def test_the_models_stay_callable_on_their_own(server, images, direct):
    body = {"instances": [{"b64": _b64(im)} for im in images[:2]]}
    r = httpx.post(f"{server.url}/v1/models/cls-b:predict", json=body, timeout=30)
    assert r.status_code == 200, r.text
    probs = direct("cls-b", images[:2])
    for pred, p in zip(r.json()["predictions"], probs, strict=True):
        assert pred["class_id"] == int(p.argmax()) and pred["label"] == ["helmet-on", "helmet-off",
                                                                         "background"][int(p.argmax())]
        np.testing.assert_allclose(pred["probabilities"], p, atol=1e-5)
    x1, x2 = [[0.1, 0.2, 0.7], [0.6, 0.3, 0.1]], [[0.5, 0.4, 0.1], [0.1, 0.1, 0.2]]
    body = {"inputs": [{"name": "input1", "shape": [2, 3], "datatype": "FP32", "data": sum(x1, [])},
                       {"name": "input2", "shape": [2, 3], "datatype": "FP32", "data": sum(x2, [])}]}
    r = httpx.post(f"{server.url}/v2/models/argmax/infer", json=body, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"] == [{"name": "label", "shape": [2], "datatype": "INT32", "data": [2, 0]}]
    r = httpx.post(f"{server.url}/v1/models/argmax:predict", json={"instances": [{"input1": x1[0], "input2": x2[0]}]},
                   timeout=30)
    assert r.status_code == 200 and r.json() == {"predictions": [2]}


def test_a_failing_node_fails_its_request_with_the_node_name(server):
    def call(x):
        body = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": x}]}
        return httpx.post(f"{server.url}/v2/models/guarded/infer", json=body, timeout=30)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(call, [[1, 2, 3], [-1, 0, 0], [4, 5, 6], [0, 0, 1]]))
    assert [r.status_code for r in results] == [200, 500, 200, 200]
    assert results[1].json() == {"error": "pipeline 'guarded': node 'guard_node' failed: RuntimeError: negative "
                                          "value: this node breaks on purpose"}
    assert results[2].json()["outputs"][0]["data"] == [8.0, 10.0, 12.0]
    # a node that refuses the request's data answers 400, also named
    r = httpx.post(f"{server.url}/v1/models/checked:predict", json={"instances": [{"x": [-1, 0, 0]}]}, timeout=30)
    assert r.status_code == 400
    assert r.json()["error"] == "pipeline 'checked': node 'check_node' failed: x must not be negative"


@pytest.mark.parametrize("path, body, status, message", [
    ("v2/models/ensemble/infer", {"inputs": [{"name": "img", "shape": [1], "datatype": "BYTES", "data": ["x"]}]},
     400, "pipeline 'ensemble' has no input 'img' (inputs: ['image'])"),
    ("v2/models/ensemble/infer", {"inputs": []}, 400, "pipeline 'ensemble' needs input 'image'"),
    ("v2/models/ensemble/infer", {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                                              "data": [base64.b64encode(b"not an image").decode()]}]},
     400, "could not be decoded"),
    ("v1/models/ensemble:predict", {"instances": []}, 400, "'instances' is empty"),
    ("v1/models/guarded:predict", {"instances": [{"x": [1, 2]}]}, 400, "input 'x' has shape [1, 2]; expected [-1, 3]"),
    ("v1/models/guarded:predict", {"instances": [{"y": [1, 2, 3]}]}, 400, "instance 0 must have exactly the inputs"),
    ("v2/models/guarded/infer", {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "UINT8", "data": [1, 2, 3]}]},
     400, "input 'x' has datatype UINT8; expected FP32"),
    ("v2/models/ensemble/infer", {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["x"]}],
                                  "outputs": [{"name": "labels"}]},
     400, "unknown output 'labels': this model's outputs are label"),
    ("v2/models/argmax/infer", {"inputs": [{"name": "input1", "shape": [1, 3], "datatype": "FP32", "data": [0, 1, 0]},
                                           {"name": "input2", "shape": [1, 3], "datatype": "FP32", "data": [1, 0, 0]}],
                                "outputs": [{"name": "argmax"}]},
     400, "unknown output 'argmax': this model's outputs are label"),
])
def test_bad_requests_get_400_with_a_reason(server, path, body, status, message):
    r = httpx.post(f"{server.url}/{path}", json=body, timeout=30)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]


def test_the_server_refuses_an_invalid_pipeline_config_before_serving(config_dir, tmp_path):
    """The image entrypoint exits with code 2 and the checker's message (a subprocess: it configures logging)."""
    import json
    import subprocess
    import sys

    def serve(*args):
        return subprocess.run([sys.executable, "-m", "mlkit.serving", "--host", "127.0.0.1", "--model-control", "none",
                               *args], capture_output=True, text=True, timeout=120)

    cfg = json.loads((config_dir / "config.json").read_text())
    cfg["pipeline_config_list"][0]["nodes"][2]["inputs"].pop()  # argmax input2 loses its connection
    bad = config_dir / "bad-config.json"  # next to the models: relative base paths still resolve
    bad.write_text(json.dumps(cfg))
    clash = tmp_path / "repo" / "average" / "1"  # a model folder named like a pipeline
    clash.mkdir(parents=True)
    try:
        r = serve("--graph-config", str(bad))
    finally:
        bad.unlink()
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Error: pipeline 'ensemble': node 'argmax_node': input 'input2' of model 'argmax' has no connection" \
        in r.stderr
    r = serve("--graph-config", str(config_dir / "config.json"), "--model-dir", str(tmp_path / "repo"))
    assert r.returncode == 2 and "pipeline 'average' is named like the model folder" in r.stderr, r.stderr[-2000:]


def test_a_new_model_version_reaches_the_pipelines_without_a_restart(config_dir, tmp_path, images, direct):
    """Hot reload covers the config's models: the next pipeline request runs the new version."""
    import asyncio
    import shutil

    from ensemble_helpers import copy_version

    from mlkit.serving.graph.loading import Graph

    folder = tmp_path / "ensemble"
    shutil.copytree(config_dir, folder)
    with Graph.load(folder / "config.json") as g:
        np.testing.assert_allclose(g.run("average", image=images)["a"], direct("cls-a", images), atol=1e-5)
        copy_version(folder / "cls-b" / "1", folder / "cls-a" / "2", name="cls-a")  # cls-b's weights as cls-a v2
        (folder / "cls-a" / "2" / "READY").touch()
        assert asyncio.run(g.repository.poll_once()) == ["cls-a@2"]
        np.testing.assert_allclose(g.run("average", image=images)["a"], direct("cls-b", images), atol=1e-5)


def test_graph_run_works_inside_a_running_event_loop_and_names_missing_models(config_dir, tmp_path, images, direct):
    import asyncio
    import json

    from mlkit.errors import MlkitError
    from mlkit.serving.graph.loading import Graph

    with Graph.load(config_dir / "config.json") as g:
        async def notebook_cell():  # Jupyter runs cells inside an event loop
            return g.run("ensemble", image=images)

        out = asyncio.run(notebook_cell())
    assert out["label"].tolist() == expected_label(direct, images)
    cfg = json.loads((config_dir / "config.json").read_text())
    for item in cfg["model_config_list"]:
        item["config"]["base_path"] = str(config_dir / item["config"]["base_path"])
    cfg["model_config_list"][1]["config"]["base_path"] = str(tmp_path / "nowhere")
    cfg["custom_node_library_config_list"], cfg["pipeline_config_list"] = [], cfg["pipeline_config_list"][:1]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(MlkitError, match=r"pipeline 'ensemble': node 'cls-b_node': model 'cls-b' is not loaded: no "
                                         r"version folder <n>/model.tflite under .*nowhere"):
        Graph.load(tmp_path / "config.json")
