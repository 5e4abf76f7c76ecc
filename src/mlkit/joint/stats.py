"""Joint-inference statistics: every frame once, every hard frame once (Sedna counts hard frames twice)."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections import Counter
from collections.abc import Callable

import numpy as np


def percentiles(values: list[float], qs: tuple[int, ...] = (50, 95, 99)) -> dict[str, float | None]:
    """``{"p50": ..., ...}`` in the unit of ``values``; ``None`` when there are no values."""
    if not values:
        return {f"p{q}": None for q in qs}
    arr = np.asarray(values, np.float64)
    return {f"p{q}": round(float(np.percentile(arr, q)), 3) for q in qs}


@dataclasses.dataclass
class JointStats:
    """Running counters of a joint-inference run; ``snapshot()`` gives the JSON form."""

    frames: int = 0
    hard_frames: int = 0
    cloud_results: int = 0
    reused_frames: int = 0  # frames without their own cloud answer that used nearby ones (WorkerConfig.reuse)
    bytes_uploaded: int = 0
    uploads: int = 0  # hard frames whose bytes were sent (refused ones included: the bytes went out)
    fallbacks: Counter = dataclasses.field(default_factory=Counter)
    edge_ms: list[float] = dataclasses.field(default_factory=list)
    cloud_ms: list[float] = dataclasses.field(default_factory=list)
    started: float = dataclasses.field(default_factory=time.monotonic)
    ended: float | None = None  # the end of the stream (end_stream): later work, such as draining a queue, is not fps
    # The offline queue (mlkit.joint.spool), counted from its threads (count_queue).
    queued: int = 0  # hard frames put on the queue
    replayed: int = 0  # queued frames answered late (a correction record each; earlier runs' frames included)
    expired: int = 0  # removed unanswered, older than the queue's max age
    dropped: Counter = dataclasses.field(default_factory=Counter)  # removed unanswered, by reason (full, ...)
    queue_backlog: int = 0  # entries on the queue now
    # Audits and the edge/cloud agreement (mlkit.joint.audits.Audits.snapshot), when the run watches them.
    audits: Callable[[], dict] | None = dataclasses.field(default=None, repr=False, compare=False)
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False, compare=False)

    def record(self, *, is_hard: bool, edge_ms: float, cloud_ms: float | None, uploaded_bytes: int,
               fallback: str | None, reused: bool = False) -> None:
        self.frames += 1
        self.reused_frames += reused
        self.edge_ms.append(edge_ms)
        if is_hard:
            self.hard_frames += 1
            self.bytes_uploaded += uploaded_bytes
            self.uploads += uploaded_bytes > 0
            if fallback is None:
                self.cloud_results += 1
            else:
                self.fallbacks[fallback] += 1
            if cloud_ms is not None:
                self.cloud_ms.append(cloud_ms)

    def end_stream(self) -> None:
        self.ended = time.monotonic()

    def count_queue(self, *, queued: int = 0, replayed: int = 0, expired: int = 0, dropped: int = 0,
                    reason: str = "full", backlog: int | None = None) -> None:
        """Thread-safe: the queue's writer and replay threads count here. Drop reasons: ``full`` (oldest dropped
        for room), ``overflow`` (the disk did not keep up), ``rejected`` (the cloud refused it), ``error``."""
        with self._lock:
            self.queued += queued
            self.replayed += replayed
            self.expired += expired
            if dropped:
                self.dropped[reason] += dropped
            if backlog is not None:
                self.queue_backlog = backlog

    @property
    def upload_ratio(self) -> float:
        return self.hard_frames / self.frames if self.frames else 0.0

    @property
    def fallback_count(self) -> int:
        return sum(self.fallbacks.values())

    def snapshot(self) -> dict:
        elapsed = (self.ended or time.monotonic()) - self.started
        uploads = self.uploads
        with self._lock:  # the queue's threads may be counting
            dropped = dict(sorted(self.dropped.items()))
        return {
            "frames": self.frames,
            "hard_frames": self.hard_frames,
            "upload_ratio": round(self.upload_ratio, 4),
            "cloud_results": self.cloud_results,
            "reused_frames": self.reused_frames,
            "fallbacks": self.fallback_count,
            "fallback_reasons": dict(sorted(self.fallbacks.items())),
            "bytes_uploaded": self.bytes_uploaded,
            "bytes_per_upload": round(self.bytes_uploaded / uploads, 1) if uploads > 0 else None,
            "fps": round(self.frames / elapsed, 2) if elapsed > 0 else None,
            "edge_ms": percentiles(self.edge_ms),
            "cloud_ms": percentiles(self.cloud_ms),
            "elapsed_s": round(elapsed, 2),
            "queued": self.queued,
            "replayed": self.replayed,
            "expired": self.expired,
            "dropped": sum(dropped.values()),
            "dropped_reasons": dropped,
            "queue_backlog": self.queue_backlog,
            **(self.audits() if self.audits is not None else {}),
        }

    def to_json(self) -> str:
        return json.dumps(self.snapshot(), indent=2)

    def line(self) -> str:
        """One line for the periodic log."""
        s = self.snapshot()
        reasons = ", ".join(f"{k} {v}" for k, v in s["fallback_reasons"].items()) or "none"
        return (f"frames {s['frames']}  hard {s['hard_frames']} ({100 * s['upload_ratio']:.1f}%)  "
                f"cloud ok {s['cloud_results']}  reused {s['reused_frames']}  fallbacks {s['fallbacks']} ({reasons})  "
                f"uploaded {s['bytes_uploaded'] / 1024:.0f} KiB  fps {s['fps']}  "
                f"edge p50/p95 {s['edge_ms']['p50']}/{s['edge_ms']['p95']} ms  "
                f"cloud p50/p95 {s['cloud_ms']['p50']}/{s['cloud_ms']['p95']} ms" + queue_line(s) + agreement_line(s))


def agreement_line(s: dict) -> str:
    """The audits' part of the periodic line; empty when the run does not watch the agreement."""
    if "audits" not in s:
        return ""
    alarm = f"  ALARM since frame {s['alarm_frame']}" if s["alarm"] else ""
    return (f"  audits {s['audits_answered']}/{s['audits']}  agreement {s['agreement']} "
            f"(hard frames {s['agreement_hard']}){alarm}")


def queue_line(s: dict) -> str:
    """The offline queue's part of the periodic line; empty when it never held a frame."""
    if not (s["queued"] or s["replayed"] or s["expired"] or s["dropped"] or s["queue_backlog"]):
        return ""
    return (f"  queue: queued {s['queued']} replayed {s['replayed']} expired {s['expired']} "
            f"dropped {s['dropped']} backlog {s['queue_backlog']}")
