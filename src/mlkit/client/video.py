"""Video sources for streaming: a file, an RTSP/HTTP URL or a camera index, read by OpenCV in a thread.

A reader thread decodes frames into a bounded queue; the consumer takes them with :meth:`VideoSource.get`.

- **Live sources** (URL, camera) keep only the latest frames: when the queue is full the oldest frame is
  dropped and counted (``dropped``), so a slow consumer sees fresh frames instead of an ever older backlog.
- **Files** never drop: the reader waits for room. They run as fast as they decode, or at the file's own
  frame rate with ``realtime=True``.
- When a source ends or fails the queue yields a :class:`SourceEnd` with a message saying why. A live URL
  can be reopened ``reconnect`` times before it counts as failed.

>>> with open_source("data/vtest.avi") as src:
...     for frame in src:            # Frame(index, RGB image, timestamp, captured)
...         ...
...     print(src.end.message)
"""

from __future__ import annotations

import dataclasses
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import numpy as np

from mlkit.errors import MlkitError

log = logging.getLogger(__name__)

# URL schemes OpenCV's FFmpeg backend reads as a network stream.
URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")


@dataclasses.dataclass(frozen=True)
class Frame:
    """One decoded frame. ``index`` counts every frame the source produced, dropped ones included."""

    index: int
    image: np.ndarray  # RGB uint8 [H, W, 3]
    timestamp: float  # files: seconds into the video; live sources: UNIX time of capture
    captured: float  # time.perf_counter() when it was read: the origin of end-to-end latency


@dataclasses.dataclass(frozen=True)
class SourceEnd:
    """Why a source stopped: the end of a file (``failed=False``) or a source that gave up."""

    message: str
    failed: bool = False


class Capture(Protocol):
    """What a source reads from: ``cv2.VideoCapture`` or anything with the same two methods."""

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def release(self) -> None: ...


@dataclasses.dataclass(frozen=True)
class SourceInfo:
    """What is known about a source once it is open."""

    name: str
    live: bool
    fps: float | None  # None: unknown (many cameras and streams do not say)
    frames: int | None  # None: unknown or endless
    width: int
    height: int


class VideoSource:
    """Frames from ``opener()`` (a :class:`Capture`) through a reader thread and a bounded queue.

    ``opener`` is called to open (and, for a live source with ``reconnect > 0``, to reopen) the capture;
    it returns the capture plus the fps and frame count it reports (``None`` when unknown).
    """

    def __init__(self, name: str, opener: Callable[[], tuple[Capture, float | None, int | None]], *, live: bool,
                 realtime: bool = False, queue_size: int = 8, reconnect: int = 0,
                 reconnect_delay: float = 1.0) -> None:
        if queue_size < 1:
            raise MlkitError(f"queue_size must be >= 1, got {queue_size}")
        if reconnect < 0 or reconnect_delay < 0:
            raise MlkitError("reconnect and reconnect_delay must be >= 0")
        self.name, self.live, self.realtime = name, live, realtime
        self.reconnect, self.reconnect_delay = reconnect, reconnect_delay
        self._opener = opener
        self._queue: queue.Queue[Frame | SourceEnd] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._capture: Capture | None = None
        self._first: np.ndarray | None = None
        self.info: SourceInfo | None = None
        self.read = 0  # frames decoded
        self.dropped = 0  # frames a live source threw away because the consumer was behind
        self.reconnects = 0
        self.end: SourceEnd | None = None  # set once the consumer has received it

    # --- lifecycle ---------------------------------------------------------------------------------
    def open(self) -> SourceInfo:
        """Open the capture and decode the first frame (so an undecodable source fails here, clearly)."""
        if self.info is not None:
            return self.info
        capture, fps, frames = self._opener()
        ok, bgr = capture.read()
        if not ok or bgr is None:
            capture.release()
            raise MlkitError(f"{self.name}: opened, but no frame could be decoded (corrupt file, unsupported codec "
                             f"or a stream that sends nothing)")
        self._capture, self._first = capture, bgr
        fps = fps if fps and math.isfinite(fps) and fps > 0 else None
        self.info = SourceInfo(self.name, self.live, fps, frames if frames and frames > 0 else None,
                               int(bgr.shape[1]), int(bgr.shape[0]))
        if self.realtime and fps is None and not self.live:
            log.warning("%s does not report its frame rate; reading it as fast as possible", self.name)
        return self.info

    def start(self) -> VideoSource:
        """Open (if needed) and start the reader thread."""
        self.open()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"video-{self.name}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the reader thread and release the capture (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)  # the reader releases the capture itself (it may be inside read())
        elif self._capture is not None:
            self._release()

    def __enter__(self) -> VideoSource:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- consumer side ----------------------------------------------------------------------------
    def get(self, timeout: float | None = None) -> Frame | SourceEnd | None:
        """The next frame, the :class:`SourceEnd` (then again on every call), or ``None`` after ``timeout``
        seconds (``0``: do not wait; ``None``: wait as long as it takes)."""
        if self.end is not None:
            return self.end
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(item, SourceEnd):
            self.end = item
        return item

    def __iter__(self) -> Iterator[Frame]:
        """Every frame until the source ends (its reason is then in ``self.end``)."""
        self.start()
        while True:
            item = self.get()
            if isinstance(item, SourceEnd):
                return
            if item is not None:
                yield item

    # --- reader thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        fps = self.info.fps if self.info else None
        pace = 1.0 / fps if self.realtime and fps and not self.live else 0.0
        start = time.perf_counter()
        try:
            index = 0
            while not self._stop.is_set():
                if pace:  # a file "arrives" at its own rate: wait before reading, so latency starts on time
                    delay = start + index * pace - time.perf_counter()
                    if delay > 0 and self._stop.wait(delay):
                        break
                bgr = self._next_bgr()
                if bgr is None:
                    self._finish(self._end_of_stream(index))
                    return
                self._put(self._frame(index, bgr, fps))
                index += 1
        except Exception as exc:  # noqa: BLE001 - a thread boundary: hand any failure to the consumer
            log.exception("reader of %s failed", self.name)
            self._finish(SourceEnd(f"{self.name}: reading failed after {self.read} frames: "
                                   f"{type(exc).__name__}: {exc}", failed=True))
        finally:
            self._release()

    def _release(self) -> None:
        capture, self._capture = self._capture, None
        if capture is not None:
            capture.release()

    def _next_bgr(self) -> np.ndarray | None:
        if self._first is not None:
            bgr, self._first = self._first, None
            return bgr
        while not self._stop.is_set():
            ok, bgr = self._capture.read() if self._capture is not None else (False, None)
            if ok and bgr is not None:
                return bgr
            if not (self.live and self.reconnects < self.reconnect):
                return None
            self.reconnects += 1
            log.warning("%s stopped sending frames; reconnecting (%d of %d)", self.name, self.reconnects,
                        self.reconnect)
            self._release()
            if self._stop.wait(self.reconnect_delay):
                return None
            try:
                self._capture = self._opener()[0]
            except MlkitError as exc:
                log.warning("%s", exc)
        return None

    def _frame(self, index: int, bgr: np.ndarray, fps: float | None) -> Frame:
        import cv2

        captured = time.perf_counter()
        self.read += 1
        # live: when it was seen; file: where it is in the video (index when the file has no frame rate)
        timestamp = time.time() if self.live else (index / fps if fps else float(index))
        return Frame(index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), timestamp, captured)

    def _end_of_stream(self, index: int) -> SourceEnd:
        if self._stop.is_set():
            return SourceEnd(f"{self.name}: stopped after {self.read} frames")
        if not self.live:
            expected = self.info.frames if self.info else None
            if expected and index < expected - 1:  # containers often over-report by one
                return SourceEnd(f"{self.name}: decoding stopped at frame {index} of {expected} (truncated or "
                                 f"corrupt file)", failed=True)
            return SourceEnd(f"{self.name}: end of file after {self.read} frames")
        tried = f" and {self.reconnects} reconnect attempt(s)" if self.reconnect else ""
        return SourceEnd(f"{self.name}: live source stopped sending frames after {self.read} frames{tried}",
                         failed=True)

    def _put(self, frame: Frame) -> None:
        if not self.live:
            self._put_blocking(frame)
            return
        with self._lock:  # one producer; the lock keeps drop-then-put together
            try:
                self._queue.put_nowait(frame)
                return
            except queue.Full:
                pass
            try:
                old = self._queue.get_nowait()
                if isinstance(old, Frame):
                    self.dropped += 1
            except queue.Empty:
                pass
            self._queue.put_nowait(frame)

    def _put_blocking(self, item: Frame | SourceEnd) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _finish(self, end: SourceEnd) -> None:
        log.info("%s", end.message)
        self._put_blocking(end)
        if self._stop.is_set():  # nobody is reading any more; leave the end where get() finds it
            self.end = self.end or end


# --- opening by name --------------------------------------------------------------------------------------

def parse_source(source: str | int | Path) -> tuple[str, str | int]:
    """``("file" | "url" | "camera", target)`` for a path, a URL or a camera index."""
    if isinstance(source, int) and not isinstance(source, bool):
        return "camera", source
    text = str(source).strip()
    if not text:
        raise MlkitError("the video source is empty: give a file path, a URL or a camera index")
    if "://" in text:
        scheme = text.split("://", 1)[0].lower()
        if scheme == "file":
            return "file", text.split("://", 1)[1]
        if scheme not in URL_SCHEMES:
            raise MlkitError(f"unsupported URL scheme {scheme!r} in {text}; use one of {', '.join(URL_SCHEMES)}")
        return "url", text
    if text.isdigit() and not Path(text).exists():
        return "camera", int(text)
    return "file", text


def _cv_opener(kind: str, target: str | int, open_timeout: float):
    def opener():
        import cv2

        if kind == "camera":
            cap = cv2.VideoCapture(int(target))
        else:
            ms = int(open_timeout * 1000)
            cap = cv2.VideoCapture(str(target), cv2.CAP_FFMPEG,
                                   [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
        if not cap.isOpened():
            cap.release()
            raise MlkitError({
                "camera": f"cannot open camera {target}: no such device, or it is busy",
                "url": f"cannot open {target}: the stream is unreachable or sends no video "
                       f"(gave up after {open_timeout:g}s)",
                "file": f"cannot open {target}: not a video OpenCV can decode",
            }[kind])
        fps = cap.get(cv2.CAP_PROP_FPS) or None
        frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if kind == "file" else 0
        return cap, fps, frames or None

    return opener


def open_source(source: str | int | Path, *, realtime: bool = False, queue_size: int = 8, reconnect: int = 0,
                reconnect_delay: float = 1.0, open_timeout: float = 10.0, live: bool | None = None) -> VideoSource:
    """Open a file path, an RTSP/HTTP(S) URL or a camera index (``0`` or ``"0"``); reads the first frame.

    URLs and cameras are live (drop oldest) unless ``live=False``; files are not. ``reconnect`` applies to
    live sources. Raises ``MlkitError`` for a missing file, an unreachable URL or an undecodable source.
    """
    kind, target = parse_source(source)
    if kind == "file":
        path = Path(target)
        if not path.exists():
            raise MlkitError(f"video file not found: {path}")
        if not path.is_file():
            raise MlkitError(f"{path} is not a file")
        name = path.name
    else:
        name = f"camera {target}" if kind == "camera" else str(target)
    is_live = kind != "file" if live is None else live
    src = VideoSource(name, _cv_opener(kind, target, open_timeout), live=is_live, realtime=realtime,
                      queue_size=queue_size, reconnect=reconnect, reconnect_delay=reconnect_delay)
    src.open()
    return src


def head_clip(source: str | Path, out: str | Path, frames: int) -> Path:
    """Write the first ``frames`` frames of a video file to ``out`` (MJPG .avi, same frame rate), atomically."""
    import os
    import uuid

    import cv2

    out = Path(out)
    if out.suffix.lower() != ".avi":
        raise MlkitError(f"{out}: the clip is written as MJPG, name it .avi")
    if frames < 1:
        raise MlkitError(f"frames must be >= 1, got {frames}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.{uuid.uuid4().hex[:12]}.tmp.avi")  # OpenCV picks the container by extension
    src = open_source(source, queue_size=4)
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"MJPG"), src.info.fps or 10.0,
                             (src.info.width, src.info.height))
    try:
        with src:
            for frame in src:
                writer.write(cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
                if frame.index + 1 >= frames:
                    break
        writer.release()
        os.replace(tmp, out)
    finally:
        writer.release()
        tmp.unlink(missing_ok=True)
    return out
