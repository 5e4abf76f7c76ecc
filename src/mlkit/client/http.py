"""REST clients for the mlkit model server (KServe v1 and v2), sync and async (httpx).

Images (RGB uint8 numpy arrays) are JPEG-encoded by default (``encoding="png"`` is lossless,
``"raw"`` sends a v2 UINT8 tensor). Requests time out, and 502/503/504 answers and connection errors are
retried with jittered exponential backoff, never longer than the server's ``Retry-After`` (a server that is
starting, swapping a model, or shedding load: ``mlkit.serving.overload``). Results are
``mlkit.detections.Detections`` per image. ``token=`` sends ``Authorization: Bearer <token>`` with every request
(a server started with ``--auth-token-file``); a refused or missing token is a ``ServingError`` with status 401.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Sequence

import httpx
import numpy as np

from mlkit.detections import Detections
from mlkit.errors import MlkitError
from mlkit.imaging import encode_image  # noqa: F401 - part of the client API too (mlkit.client.encode_image)

RETRY_STATUS = (502, 503, 504)
MAX_RETRY_WAIT_S = 5.0


def retry_delay(attempt: int, backoff: float, retry_after: str | float | None = None) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): ``backoff * 2**attempt``, jittered down by up to half so
    that clients refused together do not come back together, and capped by the server's ``Retry-After``."""
    import contextlib
    import random

    cap = MAX_RETRY_WAIT_S
    with contextlib.suppress(ValueError, TypeError):  # an HTTP date, or none: the default cap
        cap = min(cap, float(retry_after))
    delay = min(cap, backoff * 2 ** attempt)
    return delay * random.uniform(0.5, 1.0)


class ServingError(MlkitError):
    """The server refused a request (4xx/5xx) or could not be reached; the message has its reason."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def auth_headers(token: str | None) -> dict:
    """The headers that carry ``token`` (none for None); a token that no header can carry is refused here."""
    if token is None:
        return {}
    if not token or any(c.isspace() for c in token):
        raise MlkitError("token must be a non-empty string without spaces (the server's --auth-token-file holds it)")
    from mlkit.serving.auth import bearer

    return {"Authorization": bearer(token)}


def _params(score_threshold: float | None, iou_threshold: float | None) -> dict:
    return {k: v for k, v in (("score_threshold", score_threshold), ("iou_threshold", iou_threshold))
            if v is not None}


class _Base:
    def __init__(self, url: str, model: str, *, protocol: str = "v2", version: int | str | None = None,
                 encoding: str = "jpeg", jpeg_quality: int = 90, timeout: float = 30.0, retries: int = 3,
                 backoff: float = 0.2, token: str | None = None) -> None:
        if protocol not in ("v1", "v2"):
            raise MlkitError(f"protocol must be 'v1' or 'v2', got {protocol!r}")
        if encoding not in ("jpeg", "png", "raw"):
            raise MlkitError(f"encoding must be 'jpeg', 'png' or 'raw', got {encoding!r}")
        if encoding == "raw" and protocol == "v1":
            raise MlkitError("encoding='raw' needs protocol='v2' (v1 would send pixels as JSON lists)")
        if not url.startswith(("http://", "https://")):
            raise MlkitError(f"server URL must start with http:// or https://, got {url!r}")
        self.url, self.model, self.protocol, self.version = url.rstrip("/"), model, protocol, version
        self.encoding, self.jpeg_quality = encoding, jpeg_quality
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        # sent with every request, readiness checks included
        self._headers = auth_headers(token)

    @property
    def infer_path(self) -> str:
        if self.protocol == "v1":
            return f"/v1/models/{self.model}:predict"
        if self.version is not None:
            return f"/v2/models/{self.model}/versions/{self.version}/infer"
        return f"/v2/models/{self.model}/infer"

    def build(self, images: Sequence[np.ndarray], score_threshold: float | None = None,
              iou_threshold: float | None = None) -> tuple[dict, dict, bytes]:
        """(json body or {}, headers, raw body) for one request."""
        params = _params(score_threshold, iou_threshold)
        if not len(images):
            raise MlkitError("no images to send")
        if self.protocol == "v1":
            enc = "png" if self.encoding == "png" else "jpeg"
            body = {"instances": [{"b64": base64.b64encode(encode_image(im, enc, self.jpeg_quality)).decode()}
                                  for im in images]}
            if params:
                body["parameters"] = params
            return body, {}, b""
        from mlkit.v2codec import serialize_bytes

        if self.encoding == "raw":
            arr = np.stack([np.asarray(im, np.uint8) for im in images])
            raw = arr.tobytes()
            spec = {"name": "image", "shape": list(arr.shape), "datatype": "UINT8"}
        else:
            raw = serialize_bytes([encode_image(im, self.encoding, self.jpeg_quality) for im in images])
            spec = {"name": "image", "shape": [len(images)], "datatype": "BYTES"}
        spec["parameters"] = {"binary_data_size": len(raw)}
        import json

        head = json.dumps({"inputs": [spec], "parameters": params}, separators=(",", ":")).encode()
        headers = {"inference-header-content-length": str(len(head)), "content-type": "application/octet-stream"}
        return {}, headers, head + raw

    def parse(self, response: httpx.Response) -> list[Detections]:
        if response.status_code >= 400:
            try:
                reason = response.json().get("error", response.text)
            except ValueError:
                reason = response.text
            raise ServingError(f"{response.request.method} {response.request.url} -> {response.status_code}: "
                               f"{reason}", response.status_code)
        data = response.json()
        if self.protocol == "v1":
            return [Detections.from_list(p) for p in data["predictions"]]
        from mlkit.v2codec import v2_detections

        return v2_detections(data)

    def _sleep_for(self, attempt: int, response: httpx.Response | None = None) -> float:
        return retry_delay(attempt, self.backoff, None if response is None else response.headers.get("retry-after"))


_UNAUTHORIZED = {False: "the server requires a bearer token (HTTP 401): pass token=... (the content of the server's "
                         "--auth-token-file)",
                 True: "the server refused the token (HTTP 401): it is not the one in the server's --auth-token-file"}


class ServingClient(_Base):
    """Synchronous client: ``ServingClient(url, "helmet").predict([image])`` -> ``[Detections]``."""

    def __init__(self, url: str, model: str, **kw) -> None:
        super().__init__(url, model, **kw)
        self._http = httpx.Client(base_url=self.url, timeout=self.timeout, headers=self._headers)

    def _send(self, method: str, path: str, **kw) -> httpx.Response:
        for attempt in range(self.retries + 1):
            r = None
            try:
                r = self._http.request(method, path, **kw)
                if r.status_code not in RETRY_STATUS or attempt == self.retries:
                    return r
            except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:
                if attempt == self.retries:
                    raise ServingError(f"cannot reach {self.url}: {exc}") from exc
            time.sleep(self._sleep_for(attempt, r))
        raise AssertionError("unreachable")

    def predict(self, images: Sequence[np.ndarray], score_threshold: float | None = None,
                iou_threshold: float | None = None) -> list[Detections]:
        body, headers, raw = self.build(images, score_threshold, iou_threshold)
        if raw:
            r = self._send("POST", self.infer_path, content=raw, headers=headers)
        else:
            r = self._send("POST", self.infer_path, json=body)
        return self.parse(r)

    def ready(self) -> bool:
        return self._readiness()[1] is None

    def _readiness(self) -> tuple[int | None, str | None]:
        """(HTTP status or None when unreachable, None when the model is ready else why not)."""
        try:
            status = self._http.get(f"/v2/models/{self.model}/ready").status_code
        except httpx.TransportError as exc:
            return None, f"cannot reach the server ({type(exc).__name__}: {exc}); is it running?"
        if status == 404:
            return status, f"the server does not serve a model named {self.model!r} (HTTP 404)"
        if status == 401:
            return status, _UNAUTHORIZED[bool(self._headers)]
        return status, None if status == 200 else f"the model is not ready (HTTP {status})"

    def wait_ready(self, timeout: float = 30.0, unknown_model_s: float = 5.0) -> None:
        """Wait for the model; a server that keeps answering 404 for ``unknown_model_s`` fails at once (a model still
        loading is listed within a poll or two)."""
        start = time.monotonic()
        first_404 = None
        while (answer := self._readiness())[1] is not None:
            status, why = answer
            now = time.monotonic()
            first_404 = (first_404 or now) if status == 404 else None
            if status == 401:  # a token does not become right by waiting
                raise ServingError(f"model {self.model} at {self.url}: {why}", 401)
            if now - start > timeout or (first_404 is not None and now - first_404 > unknown_model_s):
                raise ServingError(f"model {self.model} at {self.url} not ready after {now - start:.0f}s: {why}")
            time.sleep(0.2)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ServingClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncServingClient(_Base):
    """Asynchronous client: ``await AsyncServingClient(url, "helmet").predict([image])``."""

    def __init__(self, url: str, model: str, **kw) -> None:
        super().__init__(url, model, **kw)
        self._http = httpx.AsyncClient(base_url=self.url, timeout=self.timeout, headers=self._headers)

    async def _send(self, method: str, path: str, **kw) -> httpx.Response:
        for attempt in range(self.retries + 1):
            r = None
            try:
                r = await self._http.request(method, path, **kw)
                if r.status_code not in RETRY_STATUS or attempt == self.retries:
                    return r
            except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:
                if attempt == self.retries:
                    raise ServingError(f"cannot reach {self.url}: {exc}") from exc
            await asyncio.sleep(self._sleep_for(attempt, r))
        raise AssertionError("unreachable")

    async def predict(self, images: Sequence[np.ndarray], score_threshold: float | None = None,
                      iou_threshold: float | None = None) -> list[Detections]:
        body, headers, raw = self.build(images, score_threshold, iou_threshold)
        if raw:
            r = await self._send("POST", self.infer_path, content=raw, headers=headers)
        else:
            r = await self._send("POST", self.infer_path, json=body)
        return self.parse(r)

    async def ready(self) -> bool:
        try:
            return (await self._http.get(f"/v2/models/{self.model}/ready")).status_code == 200
        except httpx.TransportError:
            return False

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncServingClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()
