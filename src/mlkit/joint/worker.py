"""The edge worker: the little model on every frame, hard frames to the cloud, one result per frame in order.

The edge loop never waits for the cloud. A hard frame is JPEG-encoded and handed to ``CloudClient``,
which answers later through a future; the loop goes on with the next frame. Results leave in frame
order: a finished frame waits only for earlier frames whose cloud answer is still out, and each of
those is bounded by the cloud timeout. When the cloud fails (timeout, connection, 5xx) or is busy,
the edge result is the final result and the reason is recorded.

On video, ``WorkerConfig.reuse`` lets a frame that was not uploaded use the cloud's answers for uploaded frames
near it (``mlkit.joint.reuse``): "hold" merges the last answer into its edge boxes, "interpolate" the answers on
either side, moved in time. With "interpolate" a frame is released once the next uploaded frame within
``reuse_frames`` has its answer (or failed); the edge loop still never waits. "track" carries the last answer along
the optical flow (``mlkit.joint.track``) and waits for nothing; "track-interpolate" also carries the next answer
back, and waits as "interpolate" does.

With ``WorkerConfig.audits`` a share of easy frames is uploaded too, at low priority and without holding results
back, and the edge/cloud agreement is kept on them and on the answered hard frames (``mlkit.joint.audits``).

With ``WorkerConfig.queue.directory`` set, a hard frame whose call failed for a passing reason (down, slow, busy)
is also handed, after its result, to the offline queue (``mlkit.joint.spool``), whose thread replays it when the
cloud answers again; its late answer is a correction record (``late_sink``). At the end of the stream the worker
lets replay go on for at most ``queue.drain_s`` seconds (plus a call in flight), then stops it; entries left stay
on disk for the next run.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from mlkit.detections import Detections
from mlkit.errors import MlkitError
from mlkit.joint.audits import AuditConfig, Audits
from mlkit.joint.cloud import CloudClient, CloudOutcome
from mlkit.joint.reuse import TRACKING_RULES, WAITING_RULES, PairCache, check_reuse, reused, reused_tracked
from mlkit.joint.spool import QUEUED_FALLBACKS, QueueConfig, Replayer
from mlkit.joint.stats import JointStats

log = logging.getLogger(__name__)
_WAIT = object()  # an answer may still come


@dataclasses.dataclass
class FrameResult:
    """The final answer for one frame and how it was reached."""

    index: int
    timestamp: float
    is_hard: bool
    hem_score: float
    edge: Detections
    cloud: Detections | None
    fallback: str | None  # why the edge result stands for a hard frame (None: cloud answered, or easy)
    edge_ms: float
    cloud_ms: float | None
    latency_ms: float  # from capture to the final result
    uploaded_bytes: int = 0
    reused: Detections | None = None  # built from the cloud answers of nearby uploaded frames
    reused_from: tuple[int, ...] = ()  # their frame indices
    audit: bool = False  # an easy frame uploaded anyway to measure the edge/cloud agreement (WorkerConfig.audits)
    agreement: dict | None = None  # the agreement when the frame was released, when the run watches it

    @property
    def final(self) -> Detections:
        if self.cloud is not None:
            return self.cloud
        return self.reused if self.reused is not None else self.edge

    @property
    def source(self) -> str:
        return "cloud" if self.cloud is not None else "reused" if self.reused is not None else "edge"

    def record(self, class_names: Sequence[str]) -> dict:
        """The JSON-lines record."""
        return {"frame": self.index, "timestamp": round(self.timestamp, 4), "is_hard": self.is_hard,
                "hem_score": round(self.hem_score, 5), "source": self.source, "fallback": self.fallback,
                "edge": self.edge.to_list(class_names),
                "cloud": None if self.cloud is None else self.cloud.to_list(class_names),
                "final": self.final.to_list(class_names),
                "edge_ms": round(self.edge_ms, 3),
                "cloud_ms": None if self.cloud_ms is None else round(self.cloud_ms, 3),
                "latency_ms": round(self.latency_ms, 3), "uploaded_bytes": self.uploaded_bytes,
                "reused_from": list(self.reused_from), "audit": self.audit, **(self.agreement or {})}


@dataclasses.dataclass(frozen=True)
class WorkerConfig:
    score_threshold: float = 0.05  # edge boxes kept for the filter and the results (drawing uses its own)
    jpeg_quality: int = 85  # the uploaded frame
    report_every_s: float = 30.0  # periodic statistics line (Sedna's period); 0 = never
    # A frame not uploaded: "none" (its edge boxes), "hold", "interpolate", "track", "track-interpolate" (joint.reuse)
    reuse: str = "none"
    reuse_frames: int = 8  # how many frames away an uploaded frame's answer may serve
    queue: QueueConfig = dataclasses.field(default_factory=QueueConfig)  # the offline queue (off by default)
    audits: AuditConfig = dataclasses.field(default_factory=AuditConfig)  # audits and agreement (off by default)

    def __post_init__(self) -> None:
        check_reuse(self.reuse, self.reuse_frames)
        if not 0.0 <= self.score_threshold <= 1.0:
            raise MlkitError(f"score_threshold must be in [0, 1], got {self.score_threshold}")
        if not 1 <= self.jpeg_quality <= 100:
            raise MlkitError(f"jpeg_quality must be in [1, 100], got {self.jpeg_quality}")


@dataclasses.dataclass
class _Pending:
    frame: Any
    edge: Detections
    judgement: Any
    edge_ms: float
    uploaded: int
    future: Any  # concurrent.futures.Future[CloudOutcome] | None
    audit: bool = False  # also uploaded as an audit (its answer goes to the agreement, not to the result)


class JointWorker:
    """``run(frames)`` yields one ``FrameResult`` per frame, in order.

    ``edge`` is anything with ``predict(images, score_threshold=...) -> [Detections]`` (a
    ``TFLiteDetector``); ``hem`` a hard-example filter (``mlkit.mining``); ``cloud`` a ``CloudClient``,
    or None to run edge-only. Frames have ``index``, ``image`` (RGB), ``timestamp`` and ``captured``
    (``time.perf_counter()`` at capture), like ``mlkit.client.video.Frame``. ``late_sink`` receives the offline
    queue's late answers (``write_late``, as ``OutputWriter`` has); without it they are only counted.
    """

    def __init__(self, edge, hem, cloud: CloudClient | None, config: WorkerConfig | None = None,
                 on_result: Callable[[FrameResult, np.ndarray], None] | None = None,
                 report: Callable[[str], None] | None = None, late_sink=None) -> None:
        self.edge, self.hem, self.cloud = edge, hem, cloud
        self.config = config or WorkerConfig()
        self.on_result = on_result
        self.report = report or log.info
        self.stats = JointStats()
        self._told: set[str] = set()  # fallback kinds already logged as a warning
        self.late_sink = late_sink
        self._replayer: Replayer | None = None
        self._audits: Audits | None = None
        if self.config.queue.directory is not None and cloud is None:
            raise MlkitError("the offline queue (queue_dir) needs a cloud to replay to; unset it to run edge-only")

    def _finish(self, p: _Pending, outcome: CloudOutcome | None, before: tuple[int, Detections] | None = None,
                after: tuple[int, Detections] | None = None, made: Detections | None = None) -> FrameResult:
        """The frame's result; a frame without its own answer reuses ``before`` / ``after`` (``made``: the reused
        result already made from them, by the tracking rules)."""
        cloud = cloud_ms = fallback = None
        if p.judgement.is_hard:
            if outcome is None:
                fallback = "no_cloud"
            else:
                cloud, fallback, cloud_ms = outcome.detections, outcome.fallback, outcome.latency_ms
                p.uploaded = outcome.uploaded_bytes
                if fallback is not None:
                    # The first fallback of each kind says why (a wrong model name, a refused connection), once.
                    level = logging.DEBUG if fallback in self._told else logging.WARNING
                    self._told.add(fallback)
                    log.log(level, "frame %d: cloud %s (%s); keeping the edge result%s", p.frame.index, fallback,
                            outcome.detail, "" if level == logging.DEBUG else " (later ones of this kind: debug log)")
        near = tuple(x[0] for x in (before, after) if x is not None) if cloud is None else ()
        if near and made is None:
            made = reused(p.edge, before, after, p.frame.index, self._pairs(before, after))
        result = FrameResult(p.frame.index, float(p.frame.timestamp), bool(p.judgement.is_hard),
                             float(p.judgement.score), p.edge, cloud, fallback, p.edge_ms, cloud_ms,
                             (time.perf_counter() - p.frame.captured) * 1000, p.uploaded,
                             made if near else None, near, p.audit)
        if self._audits is not None:
            if cloud is not None:
                self._audits.hard(result.index, result.edge, cloud)
            result.agreement = self._audits.record()
        self.stats.record(is_hard=result.is_hard, edge_ms=result.edge_ms, cloud_ms=cloud_ms,
                          uploaded_bytes=p.uploaded, fallback=fallback, reused=bool(near))
        if self.on_result is not None:
            self.on_result(result, p.frame.image)
        if self._replayer is not None:
            self._to_queue(result, p.frame.image)
        return result

    def _to_queue(self, result: FrameResult, image: np.ndarray) -> None:
        """After the frame's own outputs (the late answer updates them): a failed hard frame joins the offline
        queue; an answered one tells the replayer the cloud is back."""
        if result.cloud is not None:
            self._replayer.nudge()
        elif result.is_hard and result.fallback in QUEUED_FALLBACKS:
            self._replayer.offer(result.index, result.timestamp, image, result.edge, result.hem_score,
                                 result.fallback)

    def _edge(self, frame) -> _Pending:
        t0 = time.perf_counter()
        (det,) = self.edge.predict([frame.image], score_threshold=self.config.score_threshold)
        judgement = self.hem.judge(det)
        edge_ms = (time.perf_counter() - t0) * 1000
        future = None
        audit = False
        if judgement.is_hard and self.cloud is not None:
            future = self.cloud.submit(frame.image, self.config.jpeg_quality)
        elif self._audits is not None:
            audit = self._audits.submit(frame.index, frame.image, det, self.cloud, self.config.jpeg_quality)
        return _Pending(frame, det, judgement, edge_ms, 0, future, audit)

    def _answer_after(self, index: int, later: Iterable[_Pending], wait: bool):
        """The first cloud answer among ``later`` frames within ``reuse_frames`` of frame ``index``, as
        ``(index, detections)``; None if there is none; ``_WAIT`` if one may still come (a call still out, or
        too few frames seen yet) and ``wait`` is False. With ``wait`` (the stream has ended) calls are awaited."""
        reach = self.config.reuse_frames
        for q in later:
            if q.frame.index - index > reach:
                return None
            if q.future is None:
                continue
            if not q.future.done() and not wait:
                return _WAIT
            outcome = q.future.result(timeout=self._drain_timeout)
            if outcome.detections is not None:
                return q.frame.index, outcome.detections
        return None if wait else _WAIT

    def _ready(self, pending: collections.deque[_Pending]) -> bool:
        """Can the head frame be released now, without waiting for anything?"""
        head = pending[0]
        if head.future is not None:
            if not head.future.done():
                return False
            if head.future.result().detections is not None:
                return True
        if self.config.reuse not in WAITING_RULES or self.cloud is None:
            return True
        return self._answer_after(head.frame.index, itertools.islice(pending, 1, None), wait=False) is not _WAIT

    def _release(self, pending: collections.deque[_Pending], wait: bool = False) -> FrameResult:
        p = pending.popleft()
        outcome = None if p.future is None else p.future.result(timeout=self._drain_timeout)
        if self._tracks is not None:
            return self._release_tracked(p, outcome, pending)
        if outcome is not None and outcome.detections is not None:
            self._last_answer = (p.frame.index, outcome.detections)
            return self._finish(p, outcome)
        before = after = None
        if self.config.reuse != "none" and self.cloud is not None:
            last = self._last_answer
            if last is not None and p.frame.index - last[0] <= self.config.reuse_frames:
                before = last
            if self.config.reuse == "interpolate":
                after = self._answer_after(p.frame.index, pending, wait=True)
        return self._finish(p, outcome, before, after)

    def _release_tracked(self, p: _Pending, outcome: CloudOutcome | None,
                         pending: collections.deque[_Pending]) -> FrameResult:
        """``reuse: track`` / ``track-interpolate``: every released frame steps the tracker, in order."""
        answer = None if outcome is None else outcome.detections
        index = p.frame.index
        boxes = self._tracks.step(index, answer, p.frame.image)
        if answer is not None:
            return self._finish(p, outcome)
        before = None if boxes is None else (self._tracks.answer_index, boxes)
        after = None
        if self.config.reuse == "track-interpolate":
            later = self._answer_after(index, pending, wait=True)
            if later is not None:
                after = (later[0], self._tracked_back(later, p, pending)[index])
        if before is None and after is None:
            return self._finish(p, outcome)
        result = reused_tracked(p.edge, before, after, index, self._tracks.settings.merge_iou)
        return self._finish(p, outcome, before, after, result)

    def _tracked_back(self, later: tuple[int, Detections], p: _Pending,
                      pending: collections.deque[_Pending]) -> dict[int, Detections]:
        """The next upload's answer carried back by the flow to every frame from ``p`` up to it, once per upload."""
        from mlkit.joint.track import track_back

        v, answer = later
        if self._back is None or self._back[0] != v:
            span = [p, *itertools.takewhile(lambda q: q.frame.index < v, pending)]
            uploaded = next(q for q in pending if q.frame.index == v)
            back = track_back(answer, [uploaded.frame.image, *(q.frame.image for q in reversed(span))],
                              self._tracks.settings)
            self._back = (v, {q.frame.index: b for q, b in zip(reversed(span), back, strict=True)})
        return self._back[1]

    def run(self, frames: Iterable) -> Iterator[FrameResult]:
        # With the offline queue, its replayer lives as long as the run; at the end it may drain for
        # queue.drain_s (plus a call in flight), and an early stop (an error, the caller stopped iterating) ends it
        # without draining. Either way it stops before the caller closes the cloud client and the outputs.
        self._replayer = None
        self._audits = None
        if self.config.audits.enabled and self.cloud is not None:
            meta = getattr(self.edge, "meta", None)
            if meta is None:
                raise MlkitError("audits need the edge model's class names (a TFLiteDetector has them in .meta)")
            self._audits = Audits(self.config.audits, meta.class_names)
        self.stats.audits = None if self._audits is None else self._audits.snapshot
        if self.config.queue.directory is not None:
            self._replayer = Replayer(self.config.queue, self.cloud, self.stats, self.late_sink,
                                      jpeg_quality=self.config.jpeg_quality)
        try:
            yield from self._frames(frames)
            if self._audits is not None:  # the last audits' answers, each bounded by the cloud timeout
                self._audits.poll(wait_s=self._drain_timeout)
                self._audits.save()
            if self._replayer is not None:
                self.stats.end_stream()  # the drain's wait is no part of the frame rate
                self._replayer.close(drain=True)
            if self.config.report_every_s:
                self.report(self.stats.line())
        finally:
            if self._replayer is not None:
                self._replayer.close(drain=False)  # a no-op after the drain
                self._replayer = None

    def _frames(self, frames: Iterable) -> Iterator[FrameResult]:
        pending: collections.deque[_Pending] = collections.deque()
        self._last_answer: tuple[int, Detections] | None = None  # the latest uploaded frame the cloud answered
        self._pairs = PairCache()  # keyed by frame indices, which start again with each run
        self._tracks = None
        if self.config.reuse in TRACKING_RULES and self.cloud is not None:
            from mlkit.joint.track import CloudTracks

            self._tracks = CloudTracks(self.config.reuse_frames)
        self._back: tuple[int, dict[int, Detections]] | None = None  # track_back of the next upload's answer
        # The cloud call has its own timeout; the extra margin only guards against a stuck loop.
        self._drain_timeout = None if self.cloud is None else self.cloud.config.timeout_s + 5.0
        last_report = time.monotonic()
        for frame in frames:
            pending.append(self._edge(frame))
            # Release every finished frame at the head; a frame still waiting for the cloud (its own answer,
            # or with "interpolate" the next upload's) holds the later ones back (order), but never the edge loop.
            if self._audits is not None:
                self._audits.poll()
            while pending and self._ready(pending):
                yield self._release(pending)
            if self.config.report_every_s and time.monotonic() - last_report >= self.config.report_every_s:
                self.report(self.stats.line())
                if self._audits is not None:
                    self._audits.save()
                last_report = time.monotonic()
        while pending:
            yield self._release(pending, wait=True)


@dataclasses.dataclass(frozen=True)
class StillFrame:
    """A dataset image presented as a frame (for evaluation and tests)."""

    index: int
    image: np.ndarray
    timestamp: float = 0.0
    captured: float = dataclasses.field(default_factory=time.perf_counter)
