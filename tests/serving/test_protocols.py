"""Every protocol against a real server on 127.0.0.1 gives what TFLiteDetector gives directly."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest

from mlkit.v2codec import v2_detections


def test_v1_b64_png(server, detector, images, h):
    body = {"instances": [{"b64": base64.b64encode(h.png(im)).decode()} for im in images],
            "parameters": {"score_threshold": h.SCORE, "iou_threshold": 0.6}}
    r = httpx.post(f"{server.url}/v1/models/helmet:predict", json=body, timeout=30)
    assert r.status_code == 200, r.text
    want = detector.predict(images, score_threshold=h.SCORE, iou_threshold=0.6)
    assert r.json()["predictions"] == [d.to_list(detector.meta.class_names) for d in want]
    assert all(len(d) for d in want)


def test_v2_rest_binary_bytes(server, detector, images, h):
    body, headers = h.v2_binary(images[:3], {"score_threshold": h.SCORE})
    r = httpx.post(f"{server.url}/v2/models/helmet/infer", content=body, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["model_name"] == "helmet" and data["model_version"] == "1"
    shapes = {o["name"]: (o["shape"], o["datatype"]) for o in data["outputs"]}
    assert shapes == {"boxes": ([3, 100, 4], "FP32"), "scores": ([3, 100], "FP32"),
                      "classes": ([3, 100], "INT32"), "num_detections": ([3], "INT32")}
    want = detector.predict(images[:3], score_threshold=h.SCORE)
    for got, exp in zip(v2_detections(data), want, strict=True):
        assert h.same(got, exp)


def test_v2_rest_json_bytes_base64_and_uint8_tensor(server, detector, images, h):
    img = images[1]
    body = {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                        "data": [base64.b64encode(h.png(img)).decode()]}],
            "parameters": {"score_threshold": h.SCORE}}
    r = httpx.post(f"{server.url}/v2/models/helmet/infer", json=body, timeout=30)
    assert r.status_code == 200, r.text
    [want] = detector.predict([img], score_threshold=h.SCORE)
    assert h.same(v2_detections(r.json())[0], want)
    body = {"inputs": [{"name": "image", "shape": [1, *img.shape], "datatype": "UINT8",
                        "data": img.reshape(-1).tolist()}], "parameters": {"score_threshold": h.SCORE}}
    r = httpx.post(f"{server.url}/v2/models/helmet/infer", json=body, timeout=30)
    assert r.status_code == 200, r.text
    assert h.same(v2_detections(r.json())[0], want)


def test_v2_grpc_bytes_and_uint8(server, detector, images, h):
    from mlkit.client.grpc import GRPCServingClient

    want = detector.predict(images[:2], score_threshold=h.SCORE)
    with GRPCServingClient(server.grpc_url, "helmet", encoding="png", timeout=30) as client:
        got = client.predict(images[:2], score_threshold=h.SCORE)
    assert all(h.same(g, w) for g, w in zip(got, want, strict=True))
    same_size = [images[0], np.ascontiguousarray(images[0][::-1])]
    with GRPCServingClient(server.grpc_url, "helmet", encoding="raw", version=1) as client:
        got = client.predict(same_size, score_threshold=h.SCORE)
    want = detector.predict(same_size, score_threshold=h.SCORE)
    assert all(h.same(g, w) for g, w in zip(got, want, strict=True))


def test_versioned_infer_and_ready(server, images, h):
    body, headers = h.v2_binary(images[:1])
    r = httpx.post(f"{server.url}/v2/models/helmet/versions/1/infer", content=body, headers=headers, timeout=30)
    assert r.status_code == 200 and r.json()["model_version"] == "1"
    assert httpx.get(f"{server.url}/v2/models/helmet/versions/1/ready").status_code == 200


def test_batching_off_runs_batch_size_one(server, images, h):
    """The module server has max_batch_size=1: every batch holds one request's instances."""
    import concurrent.futures

    before_n, before_sum = h.metric(server.url, "mlkit_batch_size_count"), h.metric(server.url, "mlkit_batch_size_sum")
    body = {"instances": [{"b64": base64.b64encode(h.png(images[0])).decode()}]}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(lambda _: httpx.post(f"{server.url}/v1/models/helmet:predict", json=body,
                                                   timeout=30).status_code, range(6)))
    assert codes == [200] * 6
    n = h.metric(server.url, "mlkit_batch_size_count") - before_n
    assert n == 6 and h.metric(server.url, "mlkit_batch_size_sum") - before_sum == 6


def test_v2_returns_the_outputs_asked_for_and_refuses_unknown_names(server, images, h):
    from mlkit.client.grpc import GRPCServingClient
    from mlkit.client.http import ServingError

    url = f"{server.url}/v2/models/helmet/infer"
    inputs = [{"name": "image", "shape": [1], "datatype": "BYTES",
               "data": [base64.b64encode(h.png(images[0])).decode()]}]
    r = httpx.post(url, json={"inputs": inputs, "outputs": [{"name": "num_detections"}, {"name": "boxes"}]},
                   timeout=30)
    assert r.status_code == 200, r.text
    assert sorted(o["name"] for o in r.json()["outputs"]) == ["boxes", "num_detections"]
    r = httpx.post(url, json={"inputs": inputs, "outputs": [{"name": "box"}]}, timeout=30)
    assert r.status_code == 400, r.text
    assert "unknown output 'box': this model's outputs are boxes, scores, classes, num_detections" in r.text
    r = httpx.post(url, json={"inputs": inputs, "outputs": "boxes"}, timeout=30)
    assert r.status_code == 400 and "'outputs' must be a list of objects with a 'name'" in r.text, r.text
    with GRPCServingClient(server.grpc_url, "helmet", encoding="png", timeout=30) as client:
        request = client.build(images[:1])
        request.outputs.add().name = "labels"
        with pytest.raises(ServingError, match="INVALID_ARGUMENT: unknown output 'labels'"):
            client.infer(request)
    # A client's mistake is one WARNING line in the server log, for REST and gRPC alike: no ERROR, no traceback.
    log = server.log_path.read_text()
    assert "gRPC INVALID_ARGUMENT ModelInfer: unknown output 'labels'" in log
    assert "400 POST /v2/models/helmet/infer: unknown output 'box'" in log
    assert "unknown output 'labels'" not in "".join(line for line in log.splitlines(True) if "ERROR" in line)
    assert "Traceback" not in log


# --- model control and versions (the module server runs the default model control, poll) ----------------

def _grpc_stub(server):
    import grpc
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc

    channel = grpc.insecure_channel(server.grpc_url)
    return channel, grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel), pb


def _grpc_error(call, *args) -> tuple[str, str]:
    import grpc

    with pytest.raises(grpc.RpcError) as info:
        call(*args, timeout=30)
    return info.value.code().name, info.value.details()


def test_by_default_the_repository_api_is_refused_and_the_model_keeps_serving(server, images, h):
    body, headers = h.v2_binary(images[:1])
    for action in ("unload", "load"):
        r = httpx.post(f"{server.url}/v2/repository/models/helmet/{action}", timeout=30)
        assert r.status_code == 403, r.text
        assert r.json()["error"].startswith("model control is 'poll': loading and unloading through the API needs "
                                            "--model-control explicit"), r.text
    channel, stub, pb = _grpc_stub(server)
    with channel:
        code, details = _grpc_error(stub.RepositoryModelUnload, pb.RepositoryModelUnloadRequest(model_name="helmet"))
        assert code == "PERMISSION_DENIED" and "--model-control explicit" in details
        code, _ = _grpc_error(stub.RepositoryModelLoad, pb.RepositoryModelLoadRequest(model_name="helmet"))
        assert code == "PERMISSION_DENIED"
    r = httpx.post(f"{server.url}/v2/models/helmet/infer", content=body, headers=headers, timeout=30)
    assert r.status_code == 200 and r.json()["model_version"] == "1", r.text
    log = server.log_text()
    assert "403 POST /v2/repository/models/helmet/unload: model control is 'poll'" in log
    assert "gRPC PERMISSION_DENIED RepositoryModelUnload: model control is 'poll'" in log


# '³' is a digit to str.isdigit() but not to int(): it gave a 500 with int()'s message
MALFORMED_VERSIONS = ["%C2%B3", "abc", "-1", "1.0", "%20"]


def _answers_for_version(server, images, h, version: str) -> list[httpx.Response]:
    """Metadata, ready and infer of model helmet at ``version``: by REST path and by ?model_version=."""
    body, headers = h.v2_binary(images[:1])
    base = f"{server.url}/v2/models/helmet"
    return [httpx.get(f"{base}/versions/{version}"), httpx.get(f"{base}/versions/{version}/ready"),
            httpx.post(f"{base}/versions/{version}/infer", content=body, headers=headers, timeout=30),
            httpx.get(f"{base}?model_version={version}"), httpx.get(f"{base}/ready?model_version={version}"),
            httpx.post(f"{base}/infer?model_version={version}", content=body, headers=headers, timeout=30)]


@pytest.mark.parametrize("version", MALFORMED_VERSIONS)
def test_a_malformed_version_is_a_400_on_every_route(server, images, h, version):
    for r in _answers_for_version(server, images, h, version):
        assert r.status_code == 400, (r.request.url, r.text)
        assert "is malformed: a model version is the name of a version folder, a positive integer" in r.text


def test_an_unknown_version_is_a_404_naming_the_versions(server, images, h):
    for r in _answers_for_version(server, images, h, "9"):
        assert r.status_code == 404, (r.request.url, r.text)
        assert r.json()["error"] == "model helmet has no version 9; its versions: 1"
    r = httpx.get(f"{server.url}/v2/models/nope?model_version=1")
    assert r.status_code == 404 and "nope" in r.json()["error"]


def test_the_model_version_query_parameter_is_honoured(server, images, h):
    """KServe answers 501 "Model versioning not supported yet" to ?model_version=; the same as /versions/{v} here."""
    base = f"{server.url}/v2/models/helmet"
    r = httpx.get(f"{base}?model_version=1")
    assert r.status_code == 200, r.text
    assert r.json() == httpx.get(f"{base}/versions/1").json() and r.json()["versions"] == ["1"]
    r = httpx.get(f"{base}/ready?model_version=01")  # the folder name's number: 01 is version 1
    assert r.status_code == 200 and r.json() == {"name": "helmet", "version": "1", "ready": True}, r.text
    body, headers = h.v2_binary(images[:1])
    r = httpx.post(f"{base}/infer?model_version=1", content=body, headers=headers, timeout=30)
    assert r.status_code == 200 and r.json()["model_version"] == "1", r.text
    # without a version: KServe's answers, unchanged
    r = httpx.get(base)
    assert r.status_code == 200 and r.json()["name"] == "helmet" and {t["name"] for t in r.json()["inputs"]}
    assert httpx.get(f"{base}/ready").json() == {"name": "helmet", "ready": True}


def test_grpc_versions(server, images):
    from mlkit.client.grpc import GRPCServingClient
    from mlkit.client.http import ServingError

    channel, stub, pb = _grpc_stub(server)
    with channel:
        assert stub.ModelReady(pb.ModelReadyRequest(name="helmet", version="1"), timeout=30).ready
        meta = stub.ModelMetadata(pb.ModelMetadataRequest(name="helmet", version="1"), timeout=30)
        assert meta.name == "helmet" and list(meta.versions) == ["1"] and meta.inputs
        for call, request in ((stub.ModelReady, pb.ModelReadyRequest), (stub.ModelMetadata, pb.ModelMetadataRequest)):
            code, details = _grpc_error(call, request(name="helmet", version="9"))
            assert (code, details) == ("NOT_FOUND", "model helmet has no version 9; its versions: 1")
            code, details = _grpc_error(call, request(name="helmet", version="³"))
            assert code == "INVALID_ARGUMENT" and "model version '³' is malformed" in details
    for version, status in (("³", "INVALID_ARGUMENT: model version '³' is malformed"),
                            ("9", "NOT_FOUND: model helmet has no version 9; its versions: 1")):
        with (GRPCServingClient(server.grpc_url, "helmet", encoding="png", version=version, timeout=30) as client,
              pytest.raises(ServingError, match=status)):
            client.predict(images[:1])


def test_version_errors_are_one_warning_line_not_a_traceback(server):
    import time

    assert httpx.get(f"{server.url}/v2/models/helmet/versions/%C2%B3").status_code == 400
    line = "400 GET /v2/models/helmet/versions/³: model version '³' is malformed"
    for _ in range(50):  # the server writes its log asynchronously
        if line in server.log_text():
            break
        time.sleep(0.1)
    log = server.log_text()
    assert line in log and "Traceback" not in log and "invalid literal for int()" not in log
    assert not [line for line in log.splitlines() if " ERROR " in line]
