"""Near-real-time video inference against an mlkit (KServe) server, with server- or client-side batching.

Modes (``StreamConfig.mode``):

- ``server``: one frame per request, sent asynchronously with at most ``max_in_flight`` frames outstanding
  (default twice the batch size, so the server can fill one batch while it runs another); the server's
  dynamic batcher merges them.
- ``client``: ``batch_size`` frames per request, at most ``max_in_flight`` requests outstanding (default 2).
- ``unbounded``: one frame per request, sent the moment it is read, nothing bounded - what the TorchServe
  example's client does. Kept to show the difference between a send rate and a completed rate.

Results are written in frame order whatever order the answers arrive in: as JSON lines
(``results.jsonl``: frame, timestamp, latency, detections), each line with one ``write``, so a file cut
short by a failure is still valid JSON lines; optionally an annotated video (``annotated.avi``); and a
``summary.json`` with the figures. A request that fails ends the stream with a :class:`StreamError` that
says what happened and what was written.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from mlkit.client.stats import Reporter, StatsSnapshot, StreamStats
from mlkit.client.video import Frame, SourceEnd, VideoSource
from mlkit.detections import Detections
from mlkit.errors import MlkitError

log = logging.getLogger(__name__)

Mode = Literal["server", "client", "unbounded"]
MODES: tuple[str, ...] = ("server", "client", "unbounded")
RESULTS_FILE, SUMMARY_FILE, VIDEO_FILE = "results.jsonl", "summary.json", "annotated.avi"


class StreamError(MlkitError):
    """The stream stopped on a failed request; ``result`` holds what was done and written until then."""

    def __init__(self, message: str, result: StreamResult) -> None:
        super().__init__(message)
        self.result = result


class Predictor(Protocol):
    """What the streamer sends frames to: ``AsyncServingClient`` or a stand-in with the same method."""

    async def predict(self, images: Sequence[np.ndarray], score_threshold: float | None = None
                      ) -> list[Detections]: ...


@dataclasses.dataclass(frozen=True)
class StreamConfig:
    """How to stream. ``max_in_flight=None`` picks the mode's default (see the module doc)."""

    endpoint: str
    model: str
    mode: Mode = "server"
    batch_size: int = 1
    max_in_flight: int | None = None
    protocol: Literal["v1", "v2"] = "v2"
    encoding: Literal["jpeg", "png", "raw"] = "jpeg"
    score_threshold: float | None = None
    timeout: float = 30.0
    retries: int = 2
    # the server's bearer token (--auth-token-file); out of the repr and of summary.json, which are not secret
    token: str | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.endpoint.startswith(("http://", "https://")):
            raise MlkitError(f"endpoint must be an http:// or https:// URL, got {self.endpoint!r}")
        if not self.model or "/" in self.model:
            raise MlkitError(f"bad model name {self.model!r}")
        if self.mode not in MODES:
            raise MlkitError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.protocol not in ("v1", "v2"):
            raise MlkitError(f"protocol must be 'v1' or 'v2', got {self.protocol!r}")
        if self.encoding not in ("jpeg", "png", "raw"):
            raise MlkitError(f"encoding must be 'jpeg', 'png' or 'raw', got {self.encoding!r}")
        if self.encoding == "raw" and self.protocol == "v1":
            raise MlkitError("encoding 'raw' (an uncompressed UINT8 tensor) needs protocol v2")
        if int(self.batch_size) != self.batch_size or not 1 <= self.batch_size <= 256:
            raise MlkitError(f"batch_size must be an integer in 1..256, got {self.batch_size}")
        if self.mode == "unbounded" and self.max_in_flight is not None:
            raise MlkitError("mode 'unbounded' sends without a bound: leave max_in_flight unset")
        if self.max_in_flight is not None and not 1 <= self.max_in_flight <= 512:
            raise MlkitError(f"max_in_flight must be in 1..512, got {self.max_in_flight}")
        if self.score_threshold is not None and not 0 <= self.score_threshold <= 1:
            raise MlkitError(f"score_threshold must be in 0..1, got {self.score_threshold}")
        if self.timeout <= 0 or self.retries < 0:
            raise MlkitError("timeout must be > 0 and retries >= 0")

    @property
    def frames_per_request(self) -> int:
        return self.batch_size if self.mode == "client" else 1

    @property
    def in_flight(self) -> int | None:
        """Most requests outstanding at once (``None``: unbounded)."""
        if self.mode == "unbounded":
            return None
        if self.max_in_flight is not None:
            return self.max_in_flight
        return 2 * self.batch_size if self.mode == "server" else 2


@dataclasses.dataclass
class StreamResult:
    """What a stream did: figures, why it ended, and the files written."""

    stats: StatsSnapshot
    end: str
    source_failed: bool
    frames_read: int
    error: str | None = None
    results_path: Path | None = None
    video_path: Path | None = None
    summary_path: Path | None = None

    def to_dict(self) -> dict:
        return {"stats": self.stats.to_dict(), "end": self.end, "source_failed": self.source_failed,
                "frames_read": self.frames_read, "error": self.error,
                "results": str(self.results_path) if self.results_path else None,
                "video": str(self.video_path) if self.video_path else None}


# --- outputs -----------------------------------------------------------------------------------------------

class ResultWriter:
    """``results.jsonl``: one line per frame, each written whole by one ``os.write`` on an append-only file."""

    def __init__(self, path: Path, class_names: Sequence[str]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.class_names, self.lines = path, tuple(class_names), 0
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        self._named_all = True  # no class id beyond the names given has come yet

    def write(self, frame: Frame, det: Detections, latency: float) -> None:
        if self.class_names and self._named_all and len(det) and int(det.labels.max()) >= len(self.class_names):
            self._named_all = False  # said once: the names were probably another model's
            log.warning("the server returned class id %d, but only %d class names were given (%s); ids from %d "
                        "on are written as numbers. Pass the served model's names, or its metadata.json",
                        int(det.labels.max()), len(self.class_names), ", ".join(self.class_names),
                        len(self.class_names))
        line = json.dumps({"frame": frame.index, "timestamp": round(frame.timestamp, 6),
                           "latency_ms": round(1000 * latency, 3),
                           "detections": det.to_list(self.class_names)}, separators=(",", ":"))
        data = memoryview((line + "\n").encode())
        while data:  # regular files take it in one go; the loop covers a short write
            data = data[os.write(self._fd, data):]
        self.lines += 1

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class AnnotatedVideo:
    """``annotated.avi`` (MJPG), written under a temp name and renamed by ``close`` (also after a failure)."""

    def __init__(self, path: Path, fps: float, class_names: Sequence[str]) -> None:
        self.path, self.fps, self.class_names = path, fps, tuple(class_names)
        self._tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
        self._writer = None
        self.frames = 0

    def write(self, image: np.ndarray, det: Detections) -> None:
        import cv2

        from mlkit.imaging import draw_detections

        if self._writer is None:
            h, w = image.shape[:2]
            self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*"MJPG"), self.fps, (w, h))
            if not self._writer.isOpened():
                raise MlkitError(f"cannot write an MJPG video to {self.path}")
        drawn = draw_detections(image, det, self.class_names)
        self._writer.write(cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> Path | None:
        if self._writer is None:
            return None
        self._writer.release()
        self._writer = None
        os.replace(self._tmp, self.path)
        return self.path


# --- the streamer ------------------------------------------------------------------------------------------

class Streamer:
    """Reads ``source``, sends frames to ``predictor`` per ``config``, emits results in frame order."""

    def __init__(self, source: VideoSource, predictor: Predictor, config: StreamConfig, *,
                 writer: ResultWriter | None = None, video: AnnotatedVideo | None = None,
                 on_result: Callable[[Frame, Detections], None] | None = None,
                 reporter_echo: Callable[[str], None] | None = print, progress: bool = True,
                 report_interval: float = 2.0) -> None:
        self.source, self.predictor, self.config = source, predictor, config
        self.writer, self.video, self.on_result = writer, video, on_result
        self.stats = StreamStats()
        self._echo, self._progress, self._interval = reporter_echo, progress, report_interval
        self.error: str | None = None
        self.failed_at: int | None = None  # first frame index of the first failed request

    async def run(self) -> StreamResult:
        info = self.source.start().info
        reporter = Reporter(self.stats, total=None if info.live else info.frames, interval=self._interval,
                            echo=self._echo, progress=self._progress, desc=info.name)
        limit = self.config.in_flight
        self._slots = asyncio.Semaphore(limit) if limit else None
        self._tasks: asyncio.Queue = asyncio.Queue()
        end: SourceEnd | None = None
        try:
            emitter = asyncio.create_task(self._emit(reporter))
            try:
                end = await self._produce()
            finally:
                await self._tasks.put(None)
                await emitter
        finally:
            self.source.stop()
            self.stats.dropped = self.source.dropped
            snap = reporter.close()
        end = end or self.source.end or SourceEnd(f"{info.name}: stopped after {self.source.read} frames")
        return StreamResult(snap, end.message, end.failed, self.source.read, self.error)

    async def _produce(self) -> SourceEnd | None:
        """Read frames into requests until the source ends or a request failed."""
        batch: list[Frame] = []
        n = self.config.frames_per_request
        while self.error is None:
            # a fast file usually has a frame waiting: take it without the cost of a thread hop
            item = self.source.get(0) or await asyncio.to_thread(self.source.get, 0.25)
            if item is None:
                continue
            if isinstance(item, SourceEnd):
                if batch:
                    await self._submit(batch)
                return item
            self.stats.begin(item.captured)
            batch.append(item)
            if len(batch) == n:
                await self._submit(batch)
                batch = []
        return None

    async def _submit(self, frames: list[Frame]) -> None:
        if self._slots is not None:
            await self._slots.acquire()
        if self.error is not None:  # failed while we waited for a slot
            if self._slots is not None:
                self._slots.release()
            return
        self.stats.on_sent(len(frames))
        task = asyncio.create_task(self._predict(frames))
        await self._tasks.put((frames, task))

    async def _predict(self, frames: list[Frame]) -> list[Detections]:
        import httpx

        from mlkit.client.http import ServingError

        try:
            dets = await self.predictor.predict([f.image for f in frames], score_threshold=self.config.score_threshold)
        except httpx.HTTPError as exc:  # a read error or timeout the client does not retry
            raise ServingError(f"{type(exc).__name__}: {exc or 'no detail'}") from exc
        if len(dets) != len(frames):
            raise MlkitError(f"the server answered {len(dets)} results for {len(frames)} frames")
        return dets

    async def _emit(self, reporter: Reporter) -> None:
        """Await requests in the order they were sent, so results leave in frame order."""
        while (entry := await self._tasks.get()) is not None:
            frames, task = entry
            try:
                dets = await task
            except Exception as exc:  # noqa: BLE001 - any failed request ends the stream; the queue still drains
                dets = None
                self._fail(frames, exc)
            finally:
                if self._slots is not None:
                    self._slots.release()
            if dets is not None:
                try:
                    done = time.perf_counter()
                    for frame, det in zip(frames, dets, strict=True):
                        self._deliver(frame, det, done)
                    if self.video is not None:
                        await asyncio.to_thread(self._annotate, frames, dets)
                except (OSError, MlkitError) as exc:  # a full disk, an unwritable video
                    self._fail(frames, exc)
            self.stats.dropped = self.source.dropped
            reporter.update(len(frames))

    def _fail(self, frames: list[Frame], exc: Exception) -> None:
        self.stats.on_failed(len(frames))
        if self.error is None:
            detail = str(exc) if isinstance(exc, MlkitError) else f"{type(exc).__name__}: {exc}"
            self.error, self.failed_at = detail, frames[0].index
            log.debug("frames %d..%d failed: %s", frames[0].index, frames[-1].index, detail)

    def _deliver(self, frame: Frame, det: Detections, done: float) -> None:
        self.stats.on_result(frame.captured, done)
        if self.writer is not None:
            self.writer.write(frame, det, done - frame.captured)
        if self.on_result is not None:
            self.on_result(frame, det)

    def _annotate(self, frames: list[Frame], dets: list[Detections]) -> None:
        for frame, det in zip(frames, dets, strict=True):
            self.video.write(frame.image, det)


# --- entry points ------------------------------------------------------------------------------------------

def check_endpoint(config: StreamConfig) -> None:
    """Fail early and clearly when the server is unreachable, refuses the token or does not serve the model."""
    import httpx

    from mlkit.client.http import auth_headers

    path = f"/v1/models/{config.model}" if config.protocol == "v1" else f"/v2/models/{config.model}/ready"
    url = config.endpoint.rstrip("/") + path
    try:
        r = httpx.get(url, headers=auth_headers(config.token), timeout=min(config.timeout, 10.0))
    except httpx.HTTPError as exc:
        raise MlkitError(f"cannot reach the model server at {config.endpoint} ({type(exc).__name__}: {exc}); "
                         f"is it running? (mlkit serve --model-dir ...)") from None
    if r.status_code == 404:
        raise MlkitError(f"the server at {config.endpoint} does not serve a model named {config.model!r}")
    if r.status_code == 401:
        raise MlkitError(f"the server at {config.endpoint} " + (
            "refused the token: it is not the one in the server's --auth-token-file" if config.token else
            "requires a bearer token: pass --auth-token-file FILE (the file the server was started with)"))
    if r.status_code != 200:
        raise MlkitError(f"model {config.model!r} at {config.endpoint} is not ready (HTTP {r.status_code})")


async def stream_async(source: VideoSource, config: StreamConfig, *, output_dir: Path | str | None = None,
                       annotate: bool = False, class_names: Sequence[str] = (), predictor: Predictor | None = None,
                       on_result: Callable[[Frame, Detections], None] | None = None,
                       echo: Callable[[str], None] | None = print, progress: bool = True,
                       report_interval: float = 2.0) -> StreamResult:
    """Stream ``source`` to the server; see :func:`run_stream`."""
    from mlkit.client.http import AsyncServingClient

    out = Path(output_dir) if output_dir is not None else None
    if annotate and out is None:
        raise MlkitError("an annotated video needs an output folder")
    client = None
    if predictor is None:
        client = predictor = AsyncServingClient(config.endpoint, config.model, protocol=config.protocol,
                                                encoding=config.encoding, timeout=config.timeout,
                                                retries=config.retries, token=config.token)
    writer = ResultWriter(out / RESULTS_FILE, class_names) if out is not None else None
    info = source.open()
    video = AnnotatedVideo(out / VIDEO_FILE, info.fps or 10.0, class_names) if annotate else None
    streamer = Streamer(source, predictor, config, writer=writer, video=video, on_result=on_result,
                        reporter_echo=echo, progress=progress, report_interval=report_interval)
    try:
        result = await streamer.run()
    finally:
        if writer is not None:
            writer.close()
        video_path = video.close() if video is not None else None
        if client is not None:
            await client.aclose()
    result.results_path = writer.path if writer is not None else None
    result.video_path = video_path
    if out is not None:
        from mlkit.data.atomic import atomic_write_text

        settings = {k: v for k, v in dataclasses.asdict(config).items() if k != "token"}
        summary = {"config": settings, "source": dataclasses.asdict(info), **result.to_dict()}
        result.summary_path = atomic_write_text(out / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    if result.error is not None:
        written = f"; {writer.lines} results in frame order are in {writer.path}" if writer is not None else ""
        raise StreamError(f"the stream stopped at frame {streamer.failed_at}: the request to "
                          f"{config.endpoint} failed ({result.error}){written}", result)
    return result


def queue_size_for(config: StreamConfig) -> int:
    """A source queue that holds one request's frames and one more: enough to keep the sender busy, small
    enough that frames of a fast file do not wait long (their latency counts from capture)."""
    return max(2, config.frames_per_request + 1)


def run_stream(source: VideoSource, config: StreamConfig, *, preflight: bool = True, **kw) -> StreamResult:
    """Stream ``source`` through the server and return the figures; blocks until the source ends.

    Keywords: ``output_dir`` (results.jsonl, summary.json, and annotated.avi with ``annotate=True``),
    ``class_names`` (for labels in the outputs), ``echo``/``progress`` (periodic stats line or tqdm bar),
    ``on_result(frame, detections)`` (called in frame order), ``predictor`` (instead of an HTTP client; the
    endpoint check is then skipped, as with ``preflight=False``). Raises :class:`StreamError` when a
    request fails. Works inside Jupyter too (a running event loop): the stream then runs in a worker thread.
    """
    if preflight and kw.get("predictor") is None:
        check_endpoint(config)
    coro = stream_async(source, config, **kw)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
