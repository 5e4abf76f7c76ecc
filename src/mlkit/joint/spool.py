"""The offline queue: hard frames the cloud could not answer wait on disk, and are replayed when it answers again.

When a hard frame's cloud call fails for a reason that may pass (``timeout``, ``connection``, ``http_5xx``,
``busy``), its edge result is still the frame's result, in order, at once; with ``QueueConfig.directory`` set the
frame is also put on a bounded on-disk queue (``Spool``). A background thread (``Replayer``) sends the queued frames
to the cloud again, oldest first, with jittered exponential backoff (``mlkit.client.http.retry_delay``) between
failures, cut short when a live call of the edge loop gets an answer. A late answer becomes a *correction record*
appended to the results JSON lines (``"source": "cloud-late"``, with the frame index) and reaches the hard-example
store with the cloud's labels. The edge loop never waits for any of this: it hands the frame over and goes on.

Bounds: ``max_mb`` (JPEGs plus metadata), ``max_count`` and ``max_age_s``. A new entry that would pass the size or
count bound makes room by dropping the oldest entries first; entries older than ``max_age_s`` are removed unanswered
("expired"). Frames handed over while ``PENDING`` frames are already waiting to be written are dropped too (the disk
cannot keep up). Every drop and expiry is counted (``JointStats``).

On disk, one entry is three files named by its key ``<enqueue time ns>-<run id>-<frame>`` (so names sort by age):

- ``KEY.jpg``: the JPEG as uploaded (shrunk to ``upload_max_shape`` like a live upload);
- ``KEY.json``: frame index, timestamp, capture and upload sizes, the edge detections, the enqueue time, why it
  was queued. Written last: an entry exists (is *queued*) exactly when its ``.json`` does;
- ``KEY.answer``: the *answered* marker, written once the cloud has answered: the cloud's detections and where
  the correction record goes (results file and byte offset).

Every file is written to a temp file, fsynced, renamed, and the folder fsynced; ``.tmp`` files and files without
their ``.json`` are leftovers of a crash and are removed when the queue is opened. One worker uses a queue at a
time (an exclusive ``flock`` on ``.lock``, released by the kernel when the process dies, ``kill -9`` included).

Exactly once, across crashes. Replay handles one entry at a time:

1. send ``KEY.jpg``; on a failure, back off and try again (the entry is untouched);
2. on an answer, under the results writer's lock: write ``KEY.answer`` durably (the answer, the results file and
   the byte offset the record will start at); then append the record and fsync the results file;
3. write the hard-example store (idempotent: the same names are rewritten);
4. remove ``KEY.json`` (fsync the folder), then ``KEY.jpg`` and ``KEY.answer``.

A crash before 2 leaves an entry without a marker: no record can exist for it (a record is only written after its
marker), so it is sent again. A crash after 4's first unlink leaves no entry. A crash between 2 and 4 leaves an
entry with a marker, and the record may or may not have been written: when the queue is opened, such an entry
(at most one, since replay is sequential) is settled before anything else by reading the results file at the
marker's offset; if the line there is this entry's record, only steps 3 and 4 are redone; if not (the crash came
before the append, or that results file was replaced since), the record is written now, with a new marker first.
So each queued frame gets one correction record, and the cloud's answer is never asked for twice once it is on disk.

Replay is strictly oldest first: a frame the cloud keeps failing on (a 5xx or a timeout for that frame alone) holds
the frames behind it until it is answered or expires (``max_age_s``), tried again at most every few seconds (the
backoff's cap). A 4xx or a malformed answer drops the entry at once (counted ``rejected``): the same bytes would be
refused again.

Records go to the results file of the run that replays them: a worker restarted with the same ``results`` path
replaces that file (as every run does), so late answers to the earlier run's frames land in the new file, marked
``"earlier_run": true`` with that run's id; frame indices are those of the run that queued them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from mlkit.data.atomic import atomic_path, fsync_dir
from mlkit.detections import Detections
from mlkit.errors import MlkitError

log = logging.getLogger(__name__)

QUEUED_FALLBACKS = frozenset({"timeout", "connection", "http_5xx", "busy"})  # the cloud may answer later
PENDING = 16  # frames handed over but not yet on disk; beyond that a frame is dropped (counted)
_FORMAT = 1


@dataclasses.dataclass(frozen=True)
class QueueConfig:
    directory: Path | None = None  # None: no queue (a hard frame the cloud did not answer keeps its edge result)
    max_mb: float = 512.0  # JPEGs and metadata on disk
    max_age_s: float = 86400.0  # older entries are removed unanswered
    max_count: int = 10000
    # At the end of the stream, replay goes on for at most this long while entries remain; the rest stays on disk
    # for the next run on the same directory.
    drain_s: float = 10.0
    backoff_s: float = 0.5  # the first retry's wait, doubled per failure (jittered, capped: retry_delay)

    def __post_init__(self) -> None:
        if self.directory is not None and not str(self.directory).strip():
            raise MlkitError("the offline queue directory must be a path (or unset for no queue)")
        if not self.max_mb > 0:
            raise MlkitError(f"queue_max_mb must be > 0, got {self.max_mb}")
        if not self.max_age_s > 0:
            raise MlkitError(f"queue_max_age_seconds must be > 0, got {self.max_age_s}")
        if self.max_count < 1:
            raise MlkitError(f"queue_max_count must be >= 1, got {self.max_count}")
        if not self.drain_s >= 0:
            raise MlkitError(f"queue_drain_seconds must be >= 0, got {self.drain_s}")
        if not self.backoff_s > 0:
            raise MlkitError(f"the queue's backoff must be > 0 seconds, got {self.backoff_s}")


def new_run_id() -> str:
    """A run's id: entries and correction records name the run that queued the frame (indices restart per run)."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def _raw(det: Detections) -> dict:
    """Detections without class names (the queue does not know them), exact enough to rebuild."""
    return {"boxes": det.boxes.tolist(), "scores": det.scores.tolist(), "labels": det.labels.tolist()}


def _det(raw: dict) -> Detections:
    return Detections(np.asarray(raw["boxes"], np.float32), raw["scores"], raw["labels"])


def durable_write(path: Path, data: bytes) -> None:
    """``data`` to ``path``: temp file, fsync, rename, fsync the folder (the rename itself is durable)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(path.parent)


def record_written(results: str | Path, offset: int, key: str) -> bool:
    """Whether the line at byte ``offset`` of ``results`` is entry ``key``'s correction record (whole)."""
    try:
        with open(results, "rb") as f:
            f.seek(offset)
            line = f.readline()
    except OSError:
        return False
    if not line.endswith(b"\n"):
        return False  # nothing there, or a line the crash cut
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and record.get("source") == "cloud-late" and record.get("entry") == key


@dataclasses.dataclass(frozen=True)
class Entry:
    """One queued frame (its metadata; the JPEG stays on disk until it is sent)."""

    key: str
    run: str
    frame: int
    timestamp: float
    enqueued: float  # time.time()
    captured: tuple[int, int]  # (width, height) of the frame the edge saw
    sent: tuple[int, int]  # (width, height) of the JPEG
    hem_score: float
    edge: Detections
    reason: str  # why the live call did not answer

    @classmethod
    def from_json(cls, data: dict) -> Entry:
        return cls(data["key"], data["run"], int(data["frame"]), float(data["timestamp"]), float(data["enqueued"]),
                   tuple(data["captured"]), tuple(data["sent"]), float(data["hem_score"]), _det(data["edge"]),
                   data["reason"])

    def to_json(self) -> dict:
        return {"format": _FORMAT, "key": self.key, "run": self.run, "frame": self.frame, "timestamp": self.timestamp,
                "enqueued": self.enqueued, "captured": list(self.captured), "sent": list(self.sent),
                "hem_score": self.hem_score, "edge": _raw(self.edge), "reason": self.reason}


@dataclasses.dataclass(frozen=True)
class LateAnswer:
    """The cloud's answer to a queued frame: what the results writer and the hard-example store need."""

    entry: Entry
    cloud: Detections  # in the captured frame's pixels, like every other record
    cloud_ms: float | None
    answered: float  # time.time()
    jpeg: bytes  # the uploaded JPEG (the store's image when the frame's own clean copy is not there)
    same_run: bool  # queued by the run writing the record (its index names a frame of this results file)

    def record(self, class_names) -> dict:
        e = self.entry
        return {"frame": e.frame, "timestamp": round(e.timestamp, 4), "source": "cloud-late", "is_hard": True,
                "hem_score": round(e.hem_score, 5), "edge": e.edge.to_list(class_names),
                "cloud": self.cloud.to_list(class_names), "final": self.cloud.to_list(class_names),
                "cloud_ms": None if self.cloud_ms is None else round(self.cloud_ms, 3),
                "queued_reason": e.reason, "queued_s": round(self.answered - e.enqueued, 3),
                "entry": e.key, "run": e.run, "earlier_run": not self.same_run}

    def in_sent_pixels(self, det: Detections) -> Detections:
        """``det`` (captured pixels) on the uploaded JPEG, for a store entry whose image is that JPEG."""
        from mlkit.joint.cloud import _unscale  # the client's own box scaling, used the other way round

        e = self.entry
        return det if e.sent == e.captured else _unscale(det, e.captured, e.sent)


class Spool:
    """The queue's directory: entries in age order, bounded; thread-safe. ``close()`` releases the directory."""

    def __init__(self, config: QueueConfig, clock: Callable[[], float] = time.time) -> None:
        if config.directory is None:
            raise MlkitError("the offline queue needs a directory")
        self.config, self.clock = config, clock
        self.dir = Path(config.directory)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MlkitError(f"cannot create the offline queue directory {self.dir}: {exc}") from None
        self._lockfd = self._lock_dir()
        self._lock = threading.Lock()
        self._sizes: dict[str, int] = {}  # key -> bytes on disk, in age order (keys sort by enqueue time)
        self._enqueued: dict[str, float] = {}
        self.answered: list[str] = []  # keys with an answered marker when the queue was opened
        self._leased: str | None = None
        self._bytes = 0
        self._recover()

    def _lock_dir(self) -> int:
        import fcntl

        fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise MlkitError(f"the offline queue {self.dir} is in use by another worker; give each worker its own "
                             f"queue directory") from None
        return fd

    def _recover(self) -> None:
        """Index the committed entries; remove what a crash left half-written."""
        names = {p.name for p in self.dir.iterdir() if p.name != ".lock"}
        keys = sorted(n[:-5] for n in names if n.endswith(".json") and not n.startswith("."))
        for key in keys:
            try:
                entry = self.entry(key)
                size = (self.dir / f"{key}.jpg").stat().st_size + (self.dir / f"{key}.json").stat().st_size
            except (OSError, ValueError, KeyError, TypeError, MlkitError) as exc:
                log.warning("offline queue: removing unreadable entry %s (%s)", key, exc)
                self._unlink(key)
                continue
            self._sizes[key], self._enqueued[key] = size, entry.enqueued
            self._bytes += size
            if f"{key}.answer" in names:
                self.answered.append(key)
        for name in names:
            stem = name.split(".", 1)[0]
            if name.endswith(".tmp") or stem not in self._sizes:  # temp files, and files of no committed entry
                (self.dir / name).unlink(missing_ok=True)

    def entry(self, key: str) -> Entry:
        return Entry.from_json(json.loads((self.dir / f"{key}.json").read_text()))

    def __len__(self) -> int:
        return len(self._sizes)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def queued_keys(self) -> list[str]:
        with self._lock:
            return list(self._sizes)

    def put(self, entry: Entry, jpeg: bytes) -> tuple[bool, int]:
        """Queue ``entry``; returns (queued, how many older entries were dropped to make room)."""
        meta = json.dumps(entry.to_json(), separators=(",", ":")).encode()
        size = len(jpeg) + len(meta)
        limit = self.config.max_mb * 1e6
        if size > limit:
            return False, 0  # larger than the whole queue
        dropped = 0
        with self._lock:
            for key in list(self._sizes):
                if len(self._sizes) + 1 <= self.config.max_count and self._bytes + size <= limit:
                    break
                if key != self._leased:  # the one being replayed leaves soon on its own
                    self._remove(key)
                    dropped += 1
            if len(self._sizes) + 1 > self.config.max_count or self._bytes + size > limit:
                return False, dropped  # only the entry being replayed is left, and the new one does not fit beside it
        # One thread puts (Replayer's writer), so the room made above is still there; the entry joins the index
        # once its files are committed, so the replayer never leases a half-written one.
        durable_write(self.dir / f"{entry.key}.jpg", jpeg)
        durable_write(self.dir / f"{entry.key}.json", meta)  # the commit: the entry exists from here on
        with self._lock:
            self._sizes[entry.key], self._enqueued[entry.key] = size, entry.enqueued
            self._bytes += size
        return True, dropped

    def expire(self) -> int:
        """Remove entries older than ``max_age_s``; how many."""
        old = self.clock() - self.config.max_age_s
        n = 0
        with self._lock:
            for key in list(self._sizes):
                if self._enqueued[key] < old and key != self._leased:
                    self._remove(key)
                    n += 1
        return n

    def lease(self) -> Entry | None:
        """The oldest entry, held by the replayer until ``release`` or ``remove`` (never dropped meanwhile)."""
        while True:
            with self._lock:
                key = next(iter(self._sizes), None)
                self._leased = key
            if key is None:
                return None
            try:
                return self.entry(key)
            except (OSError, ValueError, KeyError, TypeError, MlkitError) as exc:  # removed by hand, say
                log.warning("offline queue: removing unreadable entry %s (%s)", key, exc)
                self.remove(key)

    def release(self) -> None:
        with self._lock:
            self._leased = None

    def jpeg(self, entry: Entry) -> bytes:
        return (self.dir / f"{entry.key}.jpg").read_bytes()

    def mark_answered(self, entry: Entry, cloud: Detections, cloud_ms: float | None, answered: float,
                      results: str | None, offset: int | None) -> None:
        marker = {"cloud": _raw(cloud), "cloud_ms": cloud_ms, "answered": answered, "results": results,
                  "offset": offset}
        durable_write(self.dir / f"{entry.key}.answer", json.dumps(marker).encode())

    def answer(self, key: str) -> dict:
        return json.loads((self.dir / f"{key}.answer").read_text())

    def remove(self, key: str) -> None:
        with self._lock:
            self._remove(key)

    def _remove(self, key: str) -> None:
        self._bytes -= self._sizes.pop(key, 0)
        self._enqueued.pop(key, None)
        if self._leased == key:
            self._leased = None
        self._unlink(key)

    def _unlink(self, key: str) -> None:
        (self.dir / f"{key}.json").unlink(missing_ok=True)  # no longer queued, from here on
        fsync_dir(self.dir)
        for suffix in (".jpg", ".answer"):
            (self.dir / f"{key}{suffix}").unlink(missing_ok=True)

    def close(self) -> None:
        if self._lockfd is not None:
            os.close(self._lockfd)  # releases the flock
            self._lockfd = None


class Replayer:
    """Puts frames on the queue and replays them, in threads of its own; the edge loop only calls ``offer``.

    ``cloud`` is the worker's ``CloudClient`` (a replayed frame takes one of its ``max_in_flight`` places).
    ``sink`` writes late answers: ``write_late(late, mark, record=True)`` calls ``mark(results_path, offset)``
    under its lock before it appends the record (``OutputWriter``); None: answers are only counted.
    """

    def __init__(self, config: QueueConfig, cloud, stats, sink=None, *, run_id: str | None = None,
                 jpeg_quality: int = 85, clock: Callable[[], float] = time.time) -> None:
        self.config, self.cloud, self.stats, self.sink = config, cloud, stats, sink
        self.run_id = run_id or new_run_id()
        self.jpeg_quality = jpeg_quality
        self.clock = clock
        self.spool = Spool(config, clock)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="mlkit-queue-put")
        self._pending = 0
        self._lock = threading.Lock()  # guards _pending
        self._wake = threading.Event()
        self._deadline: float | None = None  # draining: stop at this monotonic time, or once the queue is empty
        self._stop = False
        self._idle = False  # waiting for entries (not backing off)
        self._heed_nudge = True
        self._told: set[str] = set()
        self._thread = threading.Thread(target=self._loop, name="mlkit-queue-replay", daemon=True)
        self._closed = False
        stats.queue_backlog = len(self.spool)
        if len(self.spool):
            log.info("offline queue %s: %d frames waiting from earlier runs", self.spool.dir, len(self.spool))
        try:
            self._settle_answered()
        except BaseException:
            self.spool.close()
            raise
        self._thread.start()

    # -- the edge loop's side

    def offer(self, frame: int, timestamp: float, image: np.ndarray, edge: Detections, hem_score: float,
              reason: str) -> None:
        """Queue a hard frame the cloud did not answer; returns at once (encoding and writing happen in a thread)."""
        with self._lock:
            if self._pending >= PENDING:
                self.stats.count_queue(dropped=1, reason="overflow")
                return
            self._pending += 1
        self._writer.submit(self._put, frame, timestamp, image, edge, hem_score, reason)

    def nudge(self) -> None:
        """A live call was answered: the cloud is back, retry now instead of after the backoff (unless a retry a
        nudge brought has failed since the last late answer: then live answers would set the replay rate)."""
        if self._heed_nudge:
            self._wake.set()

    # -- threads

    def _put(self, frame, timestamp, image, edge, hem_score, reason) -> None:
        from mlkit.joint.cloud import encode_upload

        try:
            jpeg, sent = encode_upload(image, self.jpeg_quality, self.cloud.config.upload_max_hw)
            now = self.clock()
            entry = Entry(f"{time.time_ns():020d}-{self.run_id}-{frame:08d}", self.run_id, frame, timestamp, now,
                          (image.shape[1], image.shape[0]), sent, hem_score, edge, reason)
            queued, dropped = self.spool.put(entry, jpeg)
            expired = self.spool.expire()
            self.stats.count_queue(queued=int(queued), expired=expired, backlog=len(self.spool))
            if dropped:
                self.stats.count_queue(dropped=dropped, reason="full")
            if not queued:
                self.stats.count_queue(dropped=1, reason="full")
        except Exception:  # a full disk, say: the frame keeps its edge result, the stream goes on
            log.exception("offline queue: could not queue frame %d", frame)
            self.stats.count_queue(dropped=1, reason="error")
        finally:
            with self._lock:
                self._pending -= 1
            if self._idle:  # not during a backoff: frames queued in an outage must not make the replayer retry
                self._wake.set()

    def _done(self) -> bool:
        if self._stop:
            return True
        if self._deadline is None:
            return False
        return time.monotonic() >= self._deadline or (not len(self.spool) and not self._pending)

    def _sleep(self, seconds: float | None) -> bool:
        """Wait ``seconds`` (None: until woken), never past the drain deadline; whether something woke the loop."""
        if self._deadline is not None:
            left = max(0.0, self._deadline - time.monotonic())
            seconds = left if seconds is None else min(seconds, left)
        woken = self._wake.wait(seconds)
        self._wake.clear()
        return woken

    def _loop(self) -> None:
        from mlkit.client.http import retry_delay

        attempt = 0
        nudged = False  # this try ended a backoff early (a live answer)
        while not self._done():
            n = self.spool.expire()
            if n:
                self.stats.count_queue(expired=n, backlog=len(self.spool))
            self._idle = True  # before looking: a put from now on wakes the loop
            entry = self.spool.lease()
            if entry is None:
                self._sleep(None if self._deadline is None else 0.05)
                continue
            self._idle = False
            try:
                outcome = self.cloud.submit(self.spool.jpeg(entry)).result(timeout=self.cloud.config.timeout_s + 5)
            except Exception as exc:  # the client closed under us, or a file vanished: stop, entries stay queued
                self.spool.release()
                log.warning("offline queue: replay stopped (%s: %s)", type(exc).__name__, exc)
                return
            if outcome.detections is not None:
                attempt, nudged, self._heed_nudge = 0, False, True
                try:
                    self._commit(entry, outcome.detections, outcome.latency_ms)
                except Exception:  # the outputs were closed under us, a full disk: the entry stays queued
                    self.spool.release()
                    log.exception("offline queue: could not write the late answer to frame %d; replay stopped",
                                  entry.frame)
                    return
            elif outcome.fallback in QUEUED_FALLBACKS:
                self.spool.release()
                self._tell(outcome.fallback, f"replay of frame {entry.frame}: cloud {outcome.fallback} "
                                             f"({outcome.detail}); retrying with backoff")
                if nudged:
                    self._heed_nudge = False
                nudged = self._sleep(retry_delay(attempt, self.config.backoff_s))
                attempt += 1
            else:  # refused (4xx) or answered nonsense: sending the same bytes again will not help
                self._tell(outcome.fallback, f"replay of frame {entry.frame}: cloud {outcome.fallback} "
                                             f"({outcome.detail}); dropping the entry")
                self.spool.remove(entry.key)
                self.stats.count_queue(dropped=1, reason="rejected", backlog=len(self.spool))

    def _tell(self, kind: str, message: str) -> None:
        log.log(logging.DEBUG if kind in self._told else logging.WARNING, "offline queue: %s", message)
        self._told.add(kind)

    def _commit(self, entry: Entry, detections: Detections, cloud_ms: float | None) -> None:
        """Steps 2-4 of the protocol (module docstring) for an answer just received."""
        from mlkit.joint.cloud import _unscale

        cloud = detections if entry.sent == entry.captured else _unscale(detections, entry.sent, entry.captured)
        late = LateAnswer(entry, cloud, cloud_ms, self.clock(), self.spool.jpeg(entry), entry.run == self.run_id)
        self._write(late, record=True)

    def _write(self, late: LateAnswer, record: bool) -> None:
        e = late.entry

        def mark(results: str | None, offset: int | None) -> None:
            self.spool.mark_answered(e, late.cloud, late.cloud_ms, late.answered, results, offset)

        if self.sink is not None:
            self.sink.write_late(late, mark, record=record)
        elif record:
            mark(None, None)
        self.spool.remove(e.key)
        self.stats.count_queue(replayed=1, backlog=len(self.spool))

    def _settle_answered(self) -> None:
        """An entry answered before a crash: write its record unless the results file already has it."""
        for key in self.spool.answered:
            try:
                entry, marker = self.spool.entry(key), self.spool.answer(key)
                jpeg = (self.spool.dir / f"{key}.jpg").read_bytes()
            except (OSError, ValueError, KeyError, TypeError, MlkitError) as exc:
                log.warning("offline queue: answered entry %s unreadable (%s); it is sent again", key, exc)
                (self.spool.dir / f"{key}.answer").unlink(missing_ok=True)
                continue
            written = marker["results"] is not None and record_written(marker["results"], marker["offset"], key)
            late = LateAnswer(entry, _det(marker["cloud"]), marker["cloud_ms"], marker["answered"], jpeg, False)
            log.info("offline queue: frame %d of run %s was answered before a stop; its record %s", entry.frame,
                     entry.run, "was written" if written else "is written now")
            self._write(late, record=not written)
        self.spool.answered = []

    def close(self, drain: bool) -> None:
        """Stop: with ``drain``, first every handed-over frame is written and replay goes on for up to
        ``drain_s`` while entries remain; without, only the call in flight is awaited. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._writer.shutdown(wait=True)  # at most PENDING frames to encode and write
        self._deadline = time.monotonic() + (self.config.drain_s if drain else 0.0)
        if not drain:
            self._stop = True
        self._wake.set()
        # The loop checks the deadline between calls; a call in flight ends within the cloud timeout.
        self._thread.join(timeout=(self.config.drain_s if drain else 0.0) + self.cloud.config.timeout_s + 10)
        if self._thread.is_alive():
            self._stop = True
            log.warning("offline queue: the replay thread did not stop in time; its entry stays queued")
        self.stats.count_queue(backlog=len(self.spool))
        with contextlib.suppress(OSError):
            self.spool.close()


__all__ = ["QUEUED_FALLBACKS", "Entry", "LateAnswer", "QueueConfig", "Replayer", "Spool", "new_run_id",
           "record_written"]
