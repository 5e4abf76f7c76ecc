"""The predictor in-process: load, v1/v2 payloads, one prediction per instance, load failures."""

from __future__ import annotations

import asyncio
import base64

import numpy as np
import pytest
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput, InferRequest

from mlkit.serving.predictor import TFLiteDetectorModel
from mlkit.v2codec import v2_detections


@pytest.fixture(scope="module")
def model(model_repo):
    m = TFLiteDetectorModel("helmet", model_repo / "helmet" / "1", version=1)
    assert m.load() and m.ready
    yield m
    m.stop()


def run(model, body):
    async def go():
        response, _ = await model(body)
        return response

    return asyncio.run(go())


def test_v1_b64_matches_direct_prediction(h, model, detector, images):
    body = {"instances": [{"b64": base64.b64encode(h.png(im)).decode()} for im in images[:2]],
            "parameters": {"score_threshold": h.SCORE}}
    out = run(model, body)["predictions"]
    direct = detector.predict(images[:2], score_threshold=h.SCORE)
    assert len(out) == 2
    for got, want in zip(out, direct, strict=True):
        assert len(want) > 0
        assert got == want.to_list(detector.meta.class_names)


def test_v1_pixel_lists_and_default_threshold(h, model, detector, images):
    img = images[0][:20, :30]
    out = run(model, {"instances": [img.tolist()]})["predictions"]
    assert out == [d.to_list(detector.meta.class_names) for d in detector.predict([img])]


def test_v2_uint8_tensor_padded_outputs(h, model, detector, images):
    batch = np.stack([images[0], images[0][::-1].copy()])
    inp = InferInput("image", list(batch.shape), "UINT8", data=batch)
    resp = run(model, InferRequest("helmet", [inp], parameters={"score_threshold": h.SCORE}))
    out = {o.name: o for o in resp.outputs}
    assert out["boxes"].shape == [2, 100, 4] and out["classes"].datatype == "INT32"
    assert resp.model_version == "1"
    expected = detector.predict(list(batch), score_threshold=h.SCORE)
    for got, want in zip(v2_detections(resp.to_rest()[0]), expected, strict=True):
        assert h.same(got, want)


def test_bad_payloads_raise_invalid_input(h, model):
    for body in ({"instances": []}, {"instances": [{"b64": base64.b64encode(b"nope").decode()}]},
                 {"instances": [[[1, 2]]]}, {"foo": 1}, b"{not json"):
        with pytest.raises(InvalidInput):
            run(model, body)


def test_missing_and_corrupt_files_fail_at_load(h, model_repo, tmp_path, caplog):
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "model.tflite").write_bytes(b"garbage" * 10)
    (tmp_path / "1" / "metadata.json").write_text((model_repo / "helmet" / "1" / "metadata.json").read_text())
    m = TFLiteDetectorModel("bad", tmp_path / "1", version=1)
    with caplog.at_level("ERROR"):
        assert not m.load()
    assert not m.ready and "model.tflite" in caplog.text
    (tmp_path / "2").mkdir()
    (tmp_path / "2" / "model.tflite").write_bytes((model_repo / "helmet" / "1" / "model.tflite").read_bytes())
    m2 = TFLiteDetectorModel("bad", tmp_path / "2", version=2)
    caplog.clear()
    with caplog.at_level("ERROR"):
        assert not m2.load()
    assert "metadata.json" in caplog.text
