"""Bad input against a real server: 400 (404 for unknown model/version) with a message, never 500."""

from __future__ import annotations

import base64

import httpx
import pytest


@pytest.fixture(scope="module")
def bad_server(exported_model, tmp_path_factory, h):
    from mlkit.serving.server import start_background_server

    repo = tmp_path_factory.mktemp("badrepo")
    h.make_version(repo, "helmet", 1, exported_model)
    broken = repo / "broken" / "1"
    broken.mkdir(parents=True)
    (broken / "model.tflite").write_bytes(b"\x00" * 64)
    (broken / "metadata.json").write_text((exported_model / "metadata.json").read_text())
    nometa = repo / "nometa" / "1"
    nometa.mkdir(parents=True)
    (nometa / "model.tflite").write_bytes((exported_model / "model.tflite").read_bytes())
    handle = start_background_server(repo, max_payload_mb=0.25, log_path=repo.parent / "bad.log")
    yield handle
    handle.stop()


def post(server, path, **kw):
    return httpx.post(f"{server.url}{path}", timeout=30, **kw)


def assert_error(r, status, *words):
    assert r.status_code == status, r.text
    msg = r.json()["error"]
    for w in words:
        assert w in msg, msg


V1, V2 = "/v1/models/helmet:predict", "/v2/models/helmet/infer"


def test_malformed_json(bad_server):
    hdr = {"content-type": "application/json"}
    assert_error(post(bad_server, V1, content=b'{"instances": [', headers=hdr), 400, "request format")
    assert_error(post(bad_server, V2, content=b'{"inputs": [', headers=hdr), 400, "JSON")
    assert_error(post(bad_server, V2, json={"nothing": 1}), 400, "inputs")


def test_binary_body_without_or_with_a_wrong_json_length_header_names_the_header(bad_server, images, h):
    body, headers = h.v2_binary(images[:1])
    length = int(headers["inference-header-content-length"])
    bare = {k: v for k, v in headers.items() if k.lower() != "inference-header-content-length"}
    assert_error(post(bad_server, V2, content=body, headers=bare), 400, "needs the inference-header-content-length")
    longer = {**bare, "inference-header-content-length": str(length + 20)}
    assert_error(post(bad_server, V2, content=body, headers=longer), 400, f"the first {length + 20} bytes",
                 "exact length of the JSON part")
    assert_error(post(bad_server, V1, json="x"), 400, "must be a JSON object with 'instances', got a string")


def test_wrong_shape_or_dtype(bad_server):
    assert_error(post(bad_server, V1, json={"instances": [[[1, 2], [3, 4]]]}), 400, "shape")
    four = {"inputs": [{"name": "image", "shape": [1, 2, 2, 4], "datatype": "UINT8", "data": [0] * 16}]}
    assert_error(post(bad_server, V2, json=four), 400, "shape")
    wrong = {"inputs": [{"name": "image", "shape": [1, 2, 2, 3], "datatype": "INT64", "data": [0] * 12}]}
    assert_error(post(bad_server, V2, json=wrong), 400, "datatype")
    short = {"inputs": [{"name": "image", "shape": [1, 2, 2, 3], "datatype": "UINT8", "data": [0] * 5}]}
    assert_error(post(bad_server, V2, json=short), 400, "shape")
    assert_error(post(bad_server, V1, json={"instances": [[[[300, 0, 0]]]]}), 400)
    assert_error(post(bad_server, V1, json={"instances": [[[[1, 2, 3]]]], "parameters": {"score_threshold": 7}}),
                 400, "score_threshold")


def test_undecodable_image(bad_server):
    junk = base64.b64encode(b"definitely not a jpeg").decode()
    assert_error(post(bad_server, V1, json={"instances": [{"b64": junk}]}), 400, "decoded")
    assert_error(post(bad_server, V1, json={"instances": [{"b64": "%%%"}]}), 400, "base64")
    body = {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [junk]}]}
    assert_error(post(bad_server, V2, json=body), 400, "decoded")


def test_image_too_large_is_refused_from_its_header(bad_server):
    import cv2
    import numpy as np

    # 9000x9000 grey PNG: about 80 KB on the wire, 243 MB once decoded to RGB. Refused before decoding.
    ok, png = cv2.imencode(".png", np.zeros((9000, 9000), np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    b64 = base64.b64encode(png.tobytes()).decode()
    assert_error(post(bad_server, V1, json={"instances": [{"b64": b64}]}), 400, "9000x9000", "sides must be 1..8192")
    body = {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [b64]}]}
    assert_error(post(bad_server, V2, json=body), 400, "sides must be")


def test_empty_instances(bad_server):
    assert_error(post(bad_server, V1, json={"instances": []}), 400, "empty")
    body = {"inputs": [{"name": "image", "shape": [0], "datatype": "BYTES", "data": []}]}
    assert_error(post(bad_server, V2, json=body), 400, "empty")


def test_oversized_payload(bad_server):
    big = {"instances": [{"b64": "A" * (400 * 1024)}]}
    assert_error(post(bad_server, V1, json=big), 400, "exceeds the limit")


def test_unknown_model_or_version(bad_server, images, h):
    body, headers = h.v2_binary(images[:1])
    assert_error(post(bad_server, "/v2/models/nope/infer", content=body, headers=headers), 404, "nope")
    assert_error(post(bad_server, "/v2/models/helmet/versions/7/infer", content=body, headers=headers), 404, "7")
    assert_error(post(bad_server, "/v1/models/nope:predict", json={"instances": []}), 404)


def test_broken_models_logged_and_others_served(bad_server, images, h):
    log = bad_server.log_text()
    assert "cannot load model broken version 1" in log and "model.tflite" in log
    assert "cannot load model nometa version 1" in log and "metadata.json" in log
    assert httpx.get(f"{bad_server.url}/v2/models/broken/ready").status_code == 503
    body, headers = h.v2_binary(images[:1])
    assert post(bad_server, "/v2/models/broken/infer", content=body, headers=headers).status_code == 503
    assert post(bad_server, V2, content=body, headers=headers).status_code == 200


def test_client_errors_are_one_warning_line_in_the_log_not_a_traceback(bad_server):
    import time

    before = len(bad_server.log_text().splitlines())
    assert post(bad_server, V1, json={"instances": [{"b64": "%%%"}]}).status_code == 400
    assert post(bad_server, "/v2/models/marker-missing-model/infer", json={"inputs": []}).status_code == 404
    for _ in range(50):  # the server writes its log asynchronously
        new = bad_server.log_text().splitlines()[before:]
        if sum("POST" in line for line in new) >= 2:
            break
        time.sleep(0.1)
    assert any(" WARNING " in line and "400 POST /v1/models/helmet:predict: instance 0: invalid base64" in line
               for line in new), new
    assert any(" WARNING " in line and "404 POST /v2/models/marker-missing-model/infer" in line for line in new), new
    assert not any("Traceback" in line or " ERROR " in line for line in new), new
