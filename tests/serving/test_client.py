"""mlkit.client: sync/async REST (v1, v2), gRPC, JPEG encoding, retries on 503 and connection errors."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest

from mlkit.client import AsyncServingClient, GRPCServingClient, ServingClient, ServingError
from mlkit.client.http import encode_image
from mlkit.serving.payload import decode_image


def test_jpeg_round_trip():
    y, x = np.mgrid[0:60, 0:80]
    img = np.stack([x * 3, y * 4, (x + y) * 2], axis=-1).astype(np.uint8)  # smooth, RGB order matters
    back = decode_image(encode_image(img, "jpeg", 95))
    assert back.shape == img.shape and np.abs(back.astype(int) - img).mean() < 3


@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_sync_client_jpeg_matches_direct_on_decoded_image(server, detector, images, h, protocol):
    with ServingClient(server.url, "helmet", protocol=protocol, jpeg_quality=90) as client:
        client.wait_ready(10)
        got = client.predict(images[:2], score_threshold=h.SCORE)
    decoded = [decode_image(encode_image(im, "jpeg", 90)) for im in images[:2]]
    want = detector.predict(decoded, score_threshold=h.SCORE)
    assert all(h.same(g, w) for g, w in zip(got, want, strict=True))


def test_async_and_grpc_clients(server, detector, images, h):
    async def go():
        async with AsyncServingClient(server.url, "helmet", encoding="png", version=1) as client:
            assert await client.ready()
            return await client.predict(images[2:], score_threshold=h.SCORE)

    want = detector.predict(images[2:], score_threshold=h.SCORE)
    assert all(h.same(g, w) for g, w in zip(asyncio.run(go()), want, strict=True))
    with GRPCServingClient(server.grpc_url, "helmet", encoding="png") as client:
        got = client.predict(images[2:], score_threshold=h.SCORE)
    assert all(h.same(g, w) for g, w in zip(got, want, strict=True))


def test_errors_carry_the_server_message(server, images):
    with ServingClient(server.url, "nope") as client, pytest.raises(ServingError) as info:
        client.predict(images[:1])
    assert info.value.status == 404 and "nope" in str(info.value)
    grpc_client = GRPCServingClient(server.grpc_url, "nope", retries=0)
    with grpc_client, pytest.raises(ServingError, match="NOT_FOUND"):
        grpc_client.predict(images[:1])


def test_retries_on_503_with_backoff(images):
    calls = []

    def handler(request):
        calls.append(request.url.path)
        if len(calls) < 3:
            return httpx.Response(503, json={"error": "Model with name helmet is not ready."})
        return httpx.Response(200, json={"predictions": [[{"label": "helmet", "class_id": 1, "score": 0.9,
                                                            "box": [1, 2, 3, 4]}]]})

    client = ServingClient("http://test", "helmet", protocol="v1", retries=3, backoff=0.01)
    client._http = httpx.Client(base_url="http://test", transport=httpx.MockTransport(handler))
    [det] = client.predict(images[:1])
    assert len(calls) == 3 and det.labels.tolist() == [1]


def test_connection_errors_are_retried_then_reported(images):
    from mlkit.serving.server import free_port

    client = ServingClient(f"http://127.0.0.1:{free_port()}", "helmet", retries=2, backoff=0.01, timeout=2)
    with pytest.raises(ServingError, match="cannot reach"):
        client.predict(images[:1])
