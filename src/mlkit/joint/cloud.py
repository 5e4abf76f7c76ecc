"""The edge's view of the cloud model: asynchronous calls, bounded in flight, each with a timeout.

``CloudClient.submit(jpeg)`` returns at once with a ``concurrent.futures.Future`` that always resolves
to a ``CloudOutcome``: detections, or the reason the edge result must stand (``timeout``,
``connection``, ``http_5xx``, ``http_4xx``, ``bad_response``, or ``busy`` when ``max_in_flight``
frames are already out or the cloud answered 503 because its queue is full). The edge never retries: a frame's
answer is only useful now, and the edge result stands. Nothing raises into the edge loop, and a cloud that comes
back is used again from the next call on: every call is independent.

With ``upload_batch`` > 1, hard frames that arrive within ``upload_wait_ms`` of the first share one
request (a v2 BYTES tensor of N JPEGs, or N v1 instances). Each request costs the edge about 0.85 ms of
CPU however many frames it carries, so merging them buys frame rate for a later cloud answer. The
request's outcome (answer, timeout, error) applies to every frame in it.

Frames reach the loop thread with as few thread hand-offs as possible, because on a one-core edge box each
costs the frame rate a wake-up and a GIL switch: an encoded frame joins a locked list, and the loop is woken
only to start a request's wait (its first frame) or to send it (full). The frame is shrunk and encoded in the
caller's thread when the process has one CPU, else in an encoder thread (``encode_in_thread``).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import dataclasses
import json
import os
import threading
import time

import numpy as np

from mlkit.detections import Detections
from mlkit.errors import MlkitError


@dataclasses.dataclass(frozen=True)
class CloudConfig:
    endpoint: str  # http://host:port of a KServe server
    model: str  # the served model's name
    protocol: str = "v2"  # v2 sends the JPEG as binary data; v1 as base64 in JSON
    timeout_s: float = 2.0
    # Frames out at once, gathering or sent: the cloud's work is per frame, so this bounds the load the edge puts
    # on it. Counting requests instead let batched uploads pile 8x the frames on a saturated cloud (timeouts).
    max_in_flight: int = 8
    score_threshold: float | None = None  # sent as a request parameter
    # (height, width): frames larger than this are shrunk to fit (aspect kept) before upload. The cloud
    # model's input size is the natural choice: the server letterboxes to it anyway.
    upload_max_hw: tuple[int, int] | None = None
    upload_batch: int = 1  # hard frames per request (1: each frame is sent at once)
    upload_wait_ms: float = 50.0  # with upload_batch > 1: how long the first frame waits for others
    # Shrink and encode hard frames in a thread of their own (None: only when this process may use more than one
    # CPU; on one core that thread would take the same CPU and add hand-offs).
    encode_in_thread: bool | None = None
    # The cloud server's bearer token (a server started with --auth-token-file): sent as 'Authorization: Bearer'.
    # Out of the repr, which logs and error messages may show.
    token: str | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.endpoint.startswith(("http://", "https://")):
            raise MlkitError(f"cloud endpoint must be an http:// or https:// URL, got {self.endpoint!r}")
        if self.protocol not in ("v1", "v2"):
            raise MlkitError(f"cloud protocol must be 'v1' or 'v2', got {self.protocol!r}")
        if not self.timeout_s > 0:
            raise MlkitError(f"cloud timeout must be > 0 seconds, got {self.timeout_s}")
        if self.max_in_flight < 1:
            raise MlkitError(f"max_in_flight must be >= 1, got {self.max_in_flight}")
        if self.upload_batch < 1:
            raise MlkitError(f"upload_batch must be >= 1, got {self.upload_batch}")
        if self.upload_batch > self.max_in_flight:
            raise MlkitError(f"upload_batch ({self.upload_batch}) cannot exceed max_in_flight ({self.max_in_flight}), "
                             f"which counts frames: raise max_in_flight to at least twice upload_batch, so that one "
                             f"request can gather while another is out")
        if not 0 <= self.upload_wait_ms <= 1000:
            raise MlkitError(f"upload_wait_ms must be between 0 and 1000, got {self.upload_wait_ms}")
        if self.encode_in_thread is not None and not isinstance(self.encode_in_thread, bool):
            raise MlkitError(f"encode_in_thread must be true, false or unset, got {self.encode_in_thread!r}")
        if self.upload_max_hw is not None and (len(self.upload_max_hw) != 2 or min(self.upload_max_hw) < 1):
            raise MlkitError(f"upload size must be two positive integers (height, width), got {self.upload_max_hw}")
        if self.token is not None and (not self.token or any(c.isspace() for c in self.token)):
            raise MlkitError("the cloud token must be a non-empty string without spaces (the content of the "
                             "cloud server's --auth-token-file)")


@dataclasses.dataclass(frozen=True)
class CloudOutcome:
    detections: Detections | None
    fallback: str | None  # None when the cloud answered
    latency_ms: float | None  # None when nothing was sent (busy)
    detail: str = ""
    uploaded_bytes: int = 0  # the encoded frame's size (0 when nothing was sent)


def shrink_to_fit(rgb, max_h: int, max_w: int):
    """``rgb`` resized to fit ``max_h x max_w`` with its aspect kept, never enlarged.

    The same resize the server's letterbox makes, so a frame shrunk to the cloud model's input reaches the
    model with the same pixels (up to JPEG noise), for fewer bytes.
    """
    from mlkit.models.postprocess import fit_size, shrink

    h, w = rgb.shape[:2]
    scale, nw, nh = fit_size(w, h, max_w, max_h)
    return rgb if scale >= 1.0 else shrink(rgb, nw, nh)


def encode_upload(rgb, jpeg_quality: int, max_hw: tuple[int, int] | None = None) -> tuple[bytes, tuple[int, int]]:
    """A hard frame as uploaded: shrunk to fit ``max_hw`` (height, width) if given, JPEG-encoded.

    Returns (JPEG, (width, height) sent).
    """
    from mlkit.imaging import encode_jpeg

    if max_hw is not None:
        rgb = shrink_to_fit(rgb, *max_hw)
    return encode_jpeg(rgb, jpeg_quality), (rgb.shape[1], rgb.shape[0])


def _unscale(det: Detections, shrunk: tuple[int, int], captured: tuple[int, int]) -> Detections:
    """Boxes found on a frame shrunk to ``shrunk`` (width, height), back in the ``captured`` frame's pixels."""
    width, height = captured
    boxes = det.boxes * np.array([width / shrunk[0], height / shrunk[1]] * 2, np.float32)
    np.clip(boxes[:, 0::2], 0, width, out=boxes[:, 0::2])
    np.clip(boxes[:, 1::2], 0, height, out=boxes[:, 1::2])
    return Detections(boxes, det.scores, det.labels)


def env_proxy(url: str) -> str | None:
    """The proxy that HTTP_PROXY / HTTPS_PROXY / NO_PROXY (any case) name for ``url``, as httpx and curl use them.

    Read once: aiohttp only reads them when asked, and then on every request.
    """
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


@dataclasses.dataclass(frozen=True)
class _Upload:
    """An encoded hard frame waiting for its request."""

    jpeg: bytes
    captured: tuple[int, int] | None  # (width, height) of the frame, None when it came as JPEG bytes
    sent: tuple[int, int] | None  # (width, height) of what is sent
    future: concurrent.futures.Future
    t0: float  # perf_counter() at submit


@dataclasses.dataclass(frozen=True)
class _Reply:
    """What one request brought back for one of its frames."""

    detections: Detections | None
    fallback: str | None = None
    detail: str = ""


def _done(outcome: CloudOutcome) -> concurrent.futures.Future:
    f: concurrent.futures.Future = concurrent.futures.Future()
    f.set_result(outcome)
    return f


class CloudClient:
    """An asyncio loop in a daemon thread that owns an ``aiohttp.ClientSession``; use as a context manager.

    aiohttp rather than httpx here: it costs the edge's CPU 0.8-1.1 ms per upload where httpx costs 3 ms
    (measured against the same server). On a small edge box that CPU comes straight out of the frame rate
    (benchmarks/joint.py).
    """

    def __init__(self, config: CloudConfig) -> None:
        self.config = config
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mlkit-cloud", daemon=True)
        self._in_flight = 0
        self._lock = threading.Lock()  # guards _in_flight and _gathered
        self._http = None
        self._proxy = env_proxy(config.endpoint)
        self._closed = False
        self._gathered: list[_Upload] = []  # encoded frames for the next request
        self._timer: asyncio.TimerHandle | None = None  # the first gathered frame's wait (loop thread only)
        self._posts: set[asyncio.Task] = set()  # requests out (close waits for them)
        in_thread = config.encode_in_thread
        if in_thread is None:
            in_thread = len(os.sched_getaffinity(0)) > 1 if hasattr(os, "sched_getaffinity") else True
        self._encoder = (concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mlkit-encode")
                         if in_thread else None)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._open(), self._loop).result()

    async def _open(self) -> None:
        import aiohttp

        from mlkit.client.http import auth_headers

        connector = aiohttp.TCPConnector(limit=self.config.max_in_flight)
        self._http = aiohttp.ClientSession(self.config.endpoint.rstrip("/") + "/", connector=connector,
                                           timeout=aiohttp.ClientTimeout(total=self.config.timeout_s),
                                           headers=auth_headers(self.config.token))

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def submit(self, frame, jpeg_quality: int = 85) -> concurrent.futures.Future:
        """Send one frame (RGB array, or JPEG bytes); never waits for the cloud.

        The future resolves to a ``CloudOutcome``.
        """
        if self._closed:
            raise MlkitError("the cloud client is closed")
        with self._lock:
            if self._in_flight >= self.config.max_in_flight:
                return _done(CloudOutcome(None, "busy", None, f"{self._in_flight} calls already in flight"))
            self._in_flight += 1
        fut: concurrent.futures.Future = concurrent.futures.Future()
        fut.add_done_callback(self._release)
        t0 = time.perf_counter()
        if isinstance(frame, bytes | bytearray):
            self._gather(_Upload(bytes(frame), None, None, fut, t0))
        elif self._encoder is None:
            self._encode_and_gather(frame, jpeg_quality, fut, t0)
        else:
            self._encoder.submit(self._encode_and_gather, frame, jpeg_quality, fut, t0)
        return fut

    def _release(self, _fut) -> None:
        with self._lock:
            self._in_flight -= 1

    def _encode_and_gather(self, frame, jpeg_quality: int, fut: concurrent.futures.Future, t0: float) -> None:
        try:
            jpeg, sent = encode_upload(frame, jpeg_quality, self.config.upload_max_hw)
        except Exception as exc:  # not an image cv2 can encode: the caller's mistake, raised from result()
            fut.set_exception(exc)
            return
        self._gather(_Upload(jpeg, (frame.shape[1], frame.shape[0]), sent, fut, t0))

    def _gather(self, upload: _Upload) -> None:
        """Add a frame to the next request; wake the loop only to start its wait or to send it."""
        with self._lock:
            self._gathered.append(upload)
            n = len(self._gathered)
        if n % self.config.upload_batch == 0:
            self._loop.call_soon_threadsafe(self._send_full)
        elif n == 1:
            self._loop.call_soon_threadsafe(self._start_wait)

    def _start_wait(self) -> None:
        """Loop thread: the first frame of a request waits ``upload_wait_ms`` for others."""
        with self._lock:
            waiting = bool(self._gathered)
        if waiting and self._timer is None:
            self._timer = self._loop.call_later(self.config.upload_wait_ms / 1000, self._send_all)

    def _send_full(self) -> None:
        """Loop thread: send every full request; frames left over wait for more (until the running deadline, if any)."""
        self._send(everything=False)
        self._start_wait()

    def _send_all(self) -> None:
        """Loop thread: the wait is over (or the client is closing): send every gathered frame."""
        self._send(everything=True)

    def _send(self, everything: bool) -> None:
        batch = self.config.upload_batch
        with self._lock:
            keep = 0 if everything else len(self._gathered) % batch
            items = self._gathered[:len(self._gathered) - keep]
            del self._gathered[:len(items)]
            left = bool(self._gathered)
        if self._timer is not None and (everything or not left):  # frames left over keep the earlier deadline
            self._timer.cancel()
            self._timer = None
        for i in range(0, len(items), batch):
            task = self._loop.create_task(self._post_gathered(items[i:i + batch]))
            self._posts.add(task)  # the loop keeps only weak references to tasks
            task.add_done_callback(self._posts.discard)

    async def _post_gathered(self, items: list[_Upload]) -> None:
        try:
            replies = await self._post([u.jpeg for u in items])
        except BaseException as exc:  # a bug or a cancelled loop: the futures must still resolve
            for u in items:
                if not u.future.done():
                    u.future.set_exception(exc if isinstance(exc, Exception) else MlkitError("cloud client stopped"))
            raise
        done = time.perf_counter()
        for u, reply in zip(items, replies, strict=True):
            u.future.set_result(self._outcome(u, reply, (done - u.t0) * 1000))

    @staticmethod
    def _outcome(u: _Upload, reply: _Reply, ms: float) -> CloudOutcome:
        if reply.detections is None:
            nbytes = 0 if reply.fallback == "connection" else len(u.jpeg)  # a refused connection delivered nothing
            return CloudOutcome(None, reply.fallback, ms, reply.detail, nbytes)
        det = reply.detections if u.sent == u.captured else _unscale(reply.detections, u.sent, u.captured)
        return CloudOutcome(det, None, ms, "", len(u.jpeg))

    def _request(self, jpegs: list[bytes]) -> tuple[str, dict]:
        c = self.config
        params = {} if c.score_threshold is None else {"score_threshold": c.score_threshold}
        if c.protocol == "v1":
            body = {"instances": [{"b64": base64.b64encode(j).decode()} for j in jpegs]}
            if params:
                body["parameters"] = params
            return f"v1/models/{c.model}:predict", {"json": body}
        from mlkit.v2codec import binary_request

        headers, content = binary_request(jpegs, params)
        return f"v2/models/{c.model}/infer", {"data": content, "headers": headers}

    def _parse(self, data: dict, n: int) -> list[Detections]:
        if self.config.protocol == "v1":
            dets = [Detections.from_list(pred) for pred in data["predictions"]]
        else:
            from mlkit.v2codec import v2_detections

            dets = v2_detections(data)
        if len(dets) != n:
            raise MlkitError(f"{len(dets)} predictions for {n} images")
        return dets

    async def _post(self, jpegs: list[bytes]) -> list[_Reply]:
        """One request for ``jpegs``: a reply per frame, never an exception."""
        import aiohttp

        path, kw = self._request(jpegs)
        try:
            async with self._http.post(path, proxy=self._proxy, **kw) as r:
                status, body = r.status, await r.read()
        except TimeoutError:  # the session's total timeout covers connecting, sending and reading
            return [_Reply(None, "timeout", f"no answer within {self.config.timeout_s:g}s")] * len(jpegs)
        except aiohttp.ClientError as exc:
            return [_Reply(None, "connection", f"{type(exc).__name__}: {exc}")] * len(jpegs)
        if status >= 400:
            text = body[:300].decode(errors="replace")  # 401's reason says how to pass the token: keep it whole
            reason = "busy" if status == 503 else "http_5xx" if status >= 500 else "http_4xx"  # 503: its queue is full
            return [_Reply(None, reason, f"{status}: {text}")] * len(jpegs)
        try:
            return [_Reply(d) for d in self._parse(json.loads(body), len(jpegs))]
        except (ValueError, KeyError, TypeError, MlkitError) as exc:
            return [_Reply(None, "bad_response", str(exc)[:200])] * len(jpegs)

    async def _shutdown(self) -> None:
        """Answer every submitted frame (each request is bounded by the timeout), then close the session."""
        self._send_all()
        while self._posts:
            await asyncio.wait(set(self._posts))
        await self._http.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._encoder is not None:
            self._encoder.shutdown(wait=True)  # every frame handed to it is gathered now
        if self._http is not None:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(
                timeout=self.config.timeout_s + self.config.upload_wait_ms / 1000 + 10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> CloudClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
