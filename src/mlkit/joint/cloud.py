"""The edge's view of the cloud model: asynchronous calls, bounded in flight, each with a timeout.

``CloudClient.submit(jpeg)`` returns at once with a ``concurrent.futures.Future`` that always resolves
to a ``CloudOutcome``: detections, or the reason the edge result must stand (``timeout``,
``connection``, ``http_5xx``, ``http_4xx``, ``bad_response``, or ``busy`` when ``max_in_flight``
calls are already out). Nothing raises into the edge loop, and a cloud that comes back is used
again from the next call on: every call is independent.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import dataclasses
import threading
import time

from mlkit.detections import Detections
from mlkit.errors import MlkitError


@dataclasses.dataclass(frozen=True)
class CloudConfig:
    endpoint: str  # http://host:port of a KServe server
    model: str  # the served model's name
    protocol: str = "v2"  # v2 sends the JPEG as binary data; v1 as base64 in JSON
    timeout_s: float = 2.0
    max_in_flight: int = 8
    score_threshold: float | None = None  # sent as a request parameter

    def __post_init__(self) -> None:
        if not self.endpoint.startswith(("http://", "https://")):
            raise MlkitError(f"cloud endpoint must be an http:// or https:// URL, got {self.endpoint!r}")
        if self.protocol not in ("v1", "v2"):
            raise MlkitError(f"cloud protocol must be 'v1' or 'v2', got {self.protocol!r}")
        if not self.timeout_s > 0:
            raise MlkitError(f"cloud timeout must be > 0 seconds, got {self.timeout_s}")
        if self.max_in_flight < 1:
            raise MlkitError(f"max_in_flight must be >= 1, got {self.max_in_flight}")


@dataclasses.dataclass(frozen=True)
class CloudOutcome:
    detections: Detections | None
    fallback: str | None  # None when the cloud answered
    latency_ms: float | None  # None when nothing was sent (busy)
    detail: str = ""
    uploaded_bytes: int = 0  # the encoded frame's size (0 when nothing was sent)


def _done(outcome: CloudOutcome) -> concurrent.futures.Future:
    f: concurrent.futures.Future = concurrent.futures.Future()
    f.set_result(outcome)
    return f


class CloudClient:
    """An asyncio loop in a daemon thread that owns an ``httpx.AsyncClient``; use as a context manager."""

    def __init__(self, config: CloudConfig) -> None:
        self.config = config
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mlkit-cloud", daemon=True)
        self._in_flight = 0
        self._lock = threading.Lock()
        self._http = None
        self._closed = False
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._open(), self._loop).result()

    async def _open(self) -> None:
        import httpx

        limits = httpx.Limits(max_connections=self.config.max_in_flight,
                              max_keepalive_connections=self.config.max_in_flight)
        self._http = httpx.AsyncClient(base_url=self.config.endpoint.rstrip("/"), timeout=self.config.timeout_s,
                                       limits=limits)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def submit(self, frame, jpeg_quality: int = 85) -> concurrent.futures.Future:
        """Send one frame (RGB array, JPEG-encoded off the caller's thread, or JPEG bytes); never blocks.

        The future resolves to a ``CloudOutcome``.
        """
        if self._closed:
            raise MlkitError("the cloud client is closed")
        with self._lock:
            if self._in_flight >= self.config.max_in_flight:
                return _done(CloudOutcome(None, "busy", None, f"{self._in_flight} calls already in flight"))
            self._in_flight += 1
        fut = asyncio.run_coroutine_threadsafe(self._call(frame, jpeg_quality), self._loop)
        fut.add_done_callback(self._release)
        return fut

    def _release(self, _fut) -> None:
        with self._lock:
            self._in_flight -= 1

    def _request(self, jpeg: bytes) -> tuple[str, dict]:
        c = self.config
        params = {} if c.score_threshold is None else {"score_threshold": c.score_threshold}
        if c.protocol == "v1":
            body = {"instances": [{"b64": base64.b64encode(jpeg).decode()}]}
            if params:
                body["parameters"] = params
            return f"/v1/models/{c.model}:predict", {"json": body}
        from mlkit.client.v2codec import binary_request

        headers, content = binary_request([jpeg], params)
        return f"/v2/models/{c.model}/infer", {"content": content, "headers": headers}

    def _parse(self, data: dict) -> Detections:
        if self.config.protocol == "v1":
            (pred,) = data["predictions"]
            return Detections.from_list(pred)
        from mlkit.client.v2codec import v2_detections

        (det,) = v2_detections(data)
        return det

    async def _call(self, frame, jpeg_quality: int) -> CloudOutcome:
        import httpx

        t0 = time.perf_counter()
        if isinstance(frame, bytes | bytearray):
            jpeg = bytes(frame)
        else:  # cv2 releases the GIL: encoding in a worker thread keeps it off the edge loop
            from mlkit.joint.worker import encode_jpeg

            jpeg = await asyncio.get_running_loop().run_in_executor(None, encode_jpeg, frame, jpeg_quality)
        path, kw = self._request(jpeg)
        size = len(jpeg)

        def ms() -> float:
            return (time.perf_counter() - t0) * 1000

        try:
            r = await asyncio.wait_for(self._http.post(path, **kw), self.config.timeout_s)
        except (TimeoutError, httpx.TimeoutException):
            return CloudOutcome(None, "timeout", ms(), f"no answer within {self.config.timeout_s:g}s", size)
        except httpx.TransportError as exc:
            return CloudOutcome(None, "connection", ms(), f"{type(exc).__name__}: {exc}")  # nothing delivered
        if r.status_code >= 500:
            return CloudOutcome(None, "http_5xx", ms(), f"{r.status_code}: {r.text[:200]}", size)
        if r.status_code >= 400:
            return CloudOutcome(None, "http_4xx", ms(), f"{r.status_code}: {r.text[:200]}", size)
        try:
            return CloudOutcome(self._parse(r.json()), None, ms(), "", size)
        except (ValueError, KeyError, TypeError, MlkitError) as exc:
            return CloudOutcome(None, "bad_response", ms(), str(exc)[:200], size)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._http is not None:
            asyncio.run_coroutine_threadsafe(self._http.aclose(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> CloudClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
