"""The fast parts of the request path give the same answers as KServe's own, and logging per request is opt-in."""

from __future__ import annotations

import copy

import httpx
import numpy as np
import pytest
from kserve.protocol.infer_type import InferOutput, InferResponse

from mlkit.serving.payload import v2_rest_response


def _response(**kw) -> InferResponse:
    rng = np.random.default_rng(0)
    outputs = [InferOutput("boxes", [2, 3, 4], "FP32", data=rng.random((2, 3, 4), np.float32)),
               InferOutput("scores", [2, 3], "FP32", data=rng.random((2, 3), np.float32)),
               InferOutput("classes", [2, 3], "INT32", data=rng.integers(0, 4, (2, 3)).astype(np.int32)),
               InferOutput("num_detections", [2], "INT32", data=np.array([3, 1], np.int32))]
    return InferResponse(response_id="r1", model_name="helmet", infer_outputs=outputs, model_version="2", **kw)


def test_fast_json_answer_equals_kserves():
    response = _response()
    fast = v2_rest_response(copy.deepcopy(response))
    kserve_doc, _ = response.to_rest()
    assert fast == kserve_doc


@pytest.mark.parametrize("kw", [{"use_binary_outputs": True}, {"requested_outputs": ["boxes"]}])
def test_binary_or_requested_outputs_are_left_to_kserve(kw):
    assert v2_rest_response(_response(**kw)) is None


def test_bytes_outputs_are_left_to_kserve():
    out = InferOutput("label", [1], "BYTES", data=np.array([b"helmet"], dtype=object))
    assert v2_rest_response(InferResponse("r", "m", [out])) is None


def _infer(url: str, h, images) -> None:
    body, headers = h.v2_binary(images[:1])
    r = httpx.post(f"{url}/v2/models/helmet/infer", content=body, headers=headers, timeout=60)
    assert r.status_code == 200, r.text


def test_no_log_line_per_request_unless_asked(server, model_repo, images, h, tmp_path):
    from mlkit.serving.server import start_background_server

    _infer(server.url, h, images)
    assert "POST /v2/models/helmet/infer" not in server.log_text()
    assert "kserve.trace" not in server.log_text()
    with start_background_server(model_repo, access_log=True, log_path=tmp_path / "loud.log") as loud:
        _infer(loud.url, h, images)
        httpx.get(f"{loud.url}/v2/health/ready", timeout=10)  # the access line may trail the answer
        log = loud.log_text()
    assert '"POST /v2/models/helmet/infer HTTP/1.1" 200' in log
    assert "kserve.trace" in log
