"""Is the edge model going stale? Edge-vs-cloud agreement on frames both models saw, an alarm, an audit sampler.

The cloud's answer is taken as the labels (its boxes scoring at least ``label_score``) and the edge's boxes are
scored against them with COCO mAP@0.5 (``mlkit.evaluation.coco_map``), per class and overall, over a rolling
window of frames. When the edge model no longer fits the site (a new camera, a new site) the agreement falls
and ``AgreementMonitor`` raises an alarm; the incremental-learning controller can start a round on it
(``condition: {metric: agreement, operator: "<", threshold: 0.45}``) through ``write_agreement``.

Two kinds of frames have both answers, and they are kept apart:

- ``audit``: easy frames uploaded anyway at a small share (``AuditSampler``). They are a fair sample of the
  frames the edge answers alone, so their agreement is the one reported as ``agreement`` and read by the
  train trigger.
- ``hard``: frames the hard-example filter uploaded. They are chosen *because* the edge is unsure, so their
  agreement is lower than the stream's even when nothing changed; they have their own window and a lower
  threshold (``agreement_hard``). They come far more often than audits, so when the filter uploads the new
  site's frames they raise the alarm first; an edge that is confidently wrong uploads nothing, and only the
  audits see it.

A stream may raise the alarm once it holds ``min_frames`` frames. The alarm is raised after ``patience``
consecutive evaluations below the stream's threshold. It is cleared only on evidence gathered after it was raised:
a whole window of new audited frames (and, when enough came, new hard frames), each ``clear_margin`` above its
threshold (hysteresis), so it does not flap while the new site's scenes vary. ``reset()`` empties the windows and
clears the alarm: call it when a new edge model is deployed.

pycocotools scores the window (mAP@0.5 only); its presence is checked when the first frame is added, since the edge
install does not bring it. Each frame is matched once, when it is added (``evaluate_image``); scoring the window then
only pools the frames' matchings (``coco_map_of``, the same figures as ``coco_map`` over the window).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import functools
import json
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from mlkit.detections import Detections
from mlkit.errors import MlkitError

log = logging.getLogger(__name__)

AGREEMENT_FILE = "agreement.json"  # written by the worker into the hard-example store, read by the controller
STREAMS = ("audit", "hard")
_GOLDEN_2 = 0.41421356237309515  # sqrt(2) - 1: independent of the Keyframe filter's golden-ratio sequence


@dataclasses.dataclass(frozen=True)
class AgreementConfig:
    """The monitor's settings; each default is written here once."""

    window: int = 8  # audited frames in the rolling window
    threshold: float = 0.4  # alarm when the audited frames' agreement falls below this
    min_frames: int = 4  # audited frames in the window before they may raise the alarm
    hard_window: int = 20  # uploaded hard frames in their own rolling window
    hard_threshold: float = 0.3  # hard frames are picked for disagreeing: a lower bar, tuned with the filter
    hard_min_frames: int = 10
    use_hard: bool = True  # let the hard frames raise the alarm too (they are always reported)
    patience: int = 1  # consecutive evaluations below the threshold before the alarm is raised
    clear_margin: float = 0.1  # the alarm clears only above threshold + clear_margin (hysteresis)
    label_score: float = 0.3  # cloud boxes scoring at least this are the labels
    # An audit the edge got wrong (its own agreement under suspect_below) raises the audit share to boost_share for
    # the next boost_frames frames (AuditSchedule): a site change is confirmed in tens of frames, not hundreds.
    suspect_below: float = 0.5
    boost_share: float = 0.25
    boost_frames: int = 80

    def __post_init__(self) -> None:
        for name in ("window", "min_frames", "hard_window", "hard_min_frames", "patience", "boost_frames"):
            v = getattr(self, name)
            if isinstance(v, bool) or int(v) != v or v < 1:
                raise MlkitError(f"agreement {name} must be an integer >= 1, got {v!r}")
        if self.min_frames > self.window:
            raise MlkitError(f"agreement min_frames ({self.min_frames}) must not exceed window ({self.window})")
        if self.hard_min_frames > self.hard_window:
            raise MlkitError(f"agreement hard_min_frames ({self.hard_min_frames}) must not exceed hard_window "
                             f"({self.hard_window})")
        for name in ("threshold", "hard_threshold", "label_score", "suspect_below", "boost_share"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise MlkitError(f"agreement {name} must be in [0, 1], got {v}")
        if not 0.0 <= self.clear_margin <= 1.0:
            raise MlkitError(f"agreement clear_margin must be in [0, 1], got {self.clear_margin}")

    def stream(self, kind: str) -> tuple[int, float, int]:
        """``(window, threshold, min_frames)`` of a stream."""
        if kind == "audit":
            return self.window, self.threshold, self.min_frames
        return self.hard_window, self.hard_threshold, self.hard_min_frames


@dataclasses.dataclass(frozen=True)
class AlarmEvent:
    """Passed to ``on_alarm`` when the alarm is raised or cleared."""

    raised: bool  # False: cleared
    frame_index: int
    stream: str  # the stream that raised it ("audit" or "hard"); on clear, the one whose frame cleared it
    agreement: float
    threshold: float


@dataclasses.dataclass
class _Frame:
    index: int
    evaluation: object  # mlkit.evaluation.coco_map.ImageEvaluation: the edge's boxes matched to the cloud's
    added: str  # UTC time it was added: the controller uses only windows measured after its last round


class _Stream:
    def __init__(self, size: int) -> None:
        self.frames: collections.deque[_Frame] = collections.deque(maxlen=size)
        self.total = 0  # frames ever added
        self.result: dict | None = None  # coco_map of the window, updated on each add
        self.below = 0  # consecutive evaluations below the threshold
        self.fresh = 0  # frames added since the alarm was raised


def _size(*dets: Detections) -> tuple[int, int]:
    """An image size that holds every box (the monitor is not told the frame's size; mAP does not use it)."""
    boxes = np.concatenate([d.boxes for d in dets]) if dets else np.zeros((0, 4))
    if not len(boxes):
        return 1, 1
    return max(1, math.ceil(float(boxes[:, 2].max()))), max(1, math.ceil(float(boxes[:, 3].max())))


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def _rounded(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), 4)


class AgreementMonitor:
    """Rolling edge-vs-cloud agreement (mAP@0.5, cloud as labels) with an alarm that does not flap.

    ``add(frame_index, edge, cloud, kind="audit")`` after each frame that has both answers: ``kind="audit"`` for
    an audited easy frame, ``"hard"`` for a hard frame the cloud answered. ``snapshot()`` is the JSON record,
    ``prometheus_lines()`` the ``/metrics`` text; ``alarm`` and ``alarm_frame`` say whether and since when.
    """

    def __init__(self, class_names: Sequence[str], config: AgreementConfig | None = None,
                 on_alarm: Callable[[AlarmEvent], None] | None = None) -> None:
        if not class_names:
            raise MlkitError("AgreementMonitor needs the model's class names")
        self.class_names = tuple(class_names)
        self.config = config or AgreementConfig()
        self.on_alarm = on_alarm
        self._checked = False
        self.reset()

    def reset(self) -> None:
        """Forget every frame and clear the alarm (a new edge model was deployed)."""
        self._streams = {k: _Stream(self.config.stream(k)[0]) for k in STREAMS}
        self.alarm = False
        self.alarm_frame: int | None = None  # the frame whose evaluation raised the current (or last) alarm
        self.alarm_stream: str | None = None
        self.alarms = 0  # times raised since the last reset
        self.last_frame: int | None = None
        self.updated: str | None = None  # UTC time of the last add

    # ------------------------------------------------------------------------------------------ adding
    def _check_pycocotools(self) -> None:
        if self._checked:
            return
        import importlib.util

        if importlib.util.find_spec("pycocotools") is None:
            raise MlkitError("the agreement monitor scores with pycocotools, which is not installed here: "
                             "pip install pycocotools==2.0.11 (or mlkit[full])")
        self._checked = True

    def add(self, frame_index: int, edge: Detections, cloud: Detections, kind: str = "audit") -> bool:
        """Score one frame both models answered; returns whether the alarm is raised after it."""
        if kind not in STREAMS:
            raise MlkitError(f"unknown frame kind {kind!r}; use one of {', '.join(STREAMS)}")
        self._check_pycocotools()
        for name, det in (("edge", edge), ("cloud", cloud)):
            if len(det) and (det.labels.min() < 0 or det.labels.max() >= len(self.class_names)):
                raise MlkitError(f"frame {frame_index}: a {name} class id is outside 0..{len(self.class_names) - 1} "
                                 f"(classes {list(self.class_names)})")
        stream = self._streams[kind]
        self.updated = _now()
        stream.frames.append(_Frame(int(frame_index), self._evaluate(frame_index, edge, cloud), self.updated))
        stream.total += 1
        stream.fresh += 1
        stream.result = self._score(stream)
        self.last_frame = int(frame_index)
        self._update_alarm(int(frame_index), kind)
        return self.alarm

    def _evaluate(self, frame_index: int, edge: Detections, cloud: Detections):
        """Match the frame once (pycocotools); each window then only pools the frames' matchings."""
        from mlkit.data.dataset import Dataset, ImageRecord
        from mlkit.evaluation.coco_map import evaluate_image

        labels = cloud.filter(self.config.label_score)
        record = ImageRecord(f"frame_{frame_index}", *_size(labels, edge), labels.boxes, labels.labels)
        return evaluate_image(Dataset([record], self.class_names, "cloud"), edge, iou_thresholds=(0.5,))

    def _score(self, stream: _Stream) -> dict:
        from mlkit.evaluation.coco_map import coco_map_of

        return coco_map_of([f.evaluation for f in stream.frames])

    def last_frame_agreement(self, kind: str = "audit") -> float | None:
        """The agreement on the stream's latest frame alone (None before any, or when the cloud saw nothing)."""
        from mlkit.evaluation.coco_map import coco_map_of

        frames = self._streams[kind].frames
        return None if not frames else _rounded(coco_map_of([frames[-1].evaluation])["map50"])

    def agreement(self, kind: str = "audit") -> float | None:
        """The stream's overall agreement over its window; None before any frame, or when the cloud saw nothing."""
        result = self._streams[kind].result
        return None if result is None else _rounded(result["map50"])

    def per_class(self, kind: str = "audit") -> dict[str, float | None]:
        """Per-class agreement; None for a class the cloud did not see in the window."""
        result = self._streams[kind].result
        if result is None:
            return dict.fromkeys(self.class_names)
        return {c: _rounded(v) for c, v in result["ap50_per_class"].items()}

    def frames(self, kind: str = "audit") -> int:
        """Frames in the stream's window now."""
        return len(self._streams[kind].frames)

    # ------------------------------------------------------------------------------------------ alarm
    def _armed(self, kind: str) -> bool:
        if kind == "hard" and not self.config.use_hard:
            return False
        return self.frames(kind) >= self.config.stream(kind)[2] and self.agreement(kind) is not None

    def _update_alarm(self, frame_index: int, kind: str) -> None:
        cfg = self.config
        _, threshold, _ = cfg.stream(kind)
        value = self.agreement(kind)
        stream = self._streams[kind]
        if not self._armed(kind):
            stream.below = 0
            return
        stream.below = stream.below + 1 if value < threshold else 0
        if not self.alarm and stream.below >= cfg.patience:
            self.alarm, self.alarm_frame, self.alarm_stream = True, frame_index, kind
            self.alarms += 1
            for other in self._streams.values():
                other.fresh = 0
            log.warning("edge/cloud agreement alarm at frame %d: %s agreement %.3f < %.2f over the last %d %s "
                        "frames; the edge model may be stale (site change?)", frame_index, kind, value, threshold,
                        self.frames(kind), kind)
            self._tell(AlarmEvent(True, frame_index, kind, value, threshold))
        elif self.alarm and self._recovered():
            self.alarm = False
            log.info("edge/cloud agreement recovered at frame %d (%s agreement %.3f)", frame_index, kind, value)
            self._tell(AlarmEvent(False, frame_index, kind, value, threshold))

    def _recovered(self) -> bool:
        """Recovery is judged on frames that came after the alarm: the audited frames' whole window, and the
        hard frames' once they have ``hard_min_frames`` new ones; each is ``clear_margin`` above its threshold."""
        audit = self._streams["audit"]
        if audit.fresh < len(audit.frames) or not self._armed("audit"):
            return False
        fresh = [k for k in STREAMS if self._armed(k) and self._streams[k].fresh >= self.config.stream(k)[2]]
        return all(self.agreement(k) >= self.config.stream(k)[1] + self.config.clear_margin for k in fresh)

    def _tell(self, event: AlarmEvent) -> None:
        if self.on_alarm is not None:
            self.on_alarm(event)

    # ------------------------------------------------------------------------------------------ reports
    def snapshot(self) -> dict:
        """The JSON record: ``agreement`` (audited frames, overall), per class, the hard frames', the alarm."""
        out: dict = {"agreement": self.agreement("audit"), "agreement_per_class": self.per_class("audit"),
                     "agreement_hard": self.agreement("hard"), "agreement_hard_per_class": self.per_class("hard")}
        for kind in STREAMS:
            _, threshold, min_frames = self.config.stream(kind)
            stream = self._streams[kind]
            oldest = stream.frames[0] if stream.frames else None
            out[f"{kind}_frames"] = len(stream.frames)  # in the window
            out[f"{kind}_min_frames"] = min_frames  # fewer: the value is shown but not trusted
            out[f"{kind}_frames_total"] = stream.total
            out[f"{kind}_window_from"] = None if oldest is None else oldest.index  # the oldest frame's index
            out[f"{kind}_since"] = None if oldest is None else oldest.added  # ... and when it was added (UTC)
            out[f"{kind}_threshold"] = threshold
        out.update({"alarm": self.alarm, "alarm_frame": self.alarm_frame, "alarm_stream": self.alarm_stream,
                    "alarms": self.alarms, "last_frame": self.last_frame, "updated": self.updated})
        return out

    def prometheus_lines(self, prefix: str = "mlkit_joint") -> list[str]:
        """``/metrics`` text-exposition lines (undefined values are left out)."""
        lines = [f"# HELP {prefix}_agreement Edge-vs-cloud mAP@0.5 over the window (cloud answers as labels)",
                 f"# TYPE {prefix}_agreement gauge"]
        for kind in STREAMS:
            if (v := self.agreement(kind)) is not None:
                lines.append(f'{prefix}_agreement{{source="{kind}"}} {v}')
        lines += [f"# HELP {prefix}_agreement_class Edge-vs-cloud AP@0.5 of one class over the window",
                  f"# TYPE {prefix}_agreement_class gauge"]
        for kind in STREAMS:
            for c, v in self.per_class(kind).items():
                if v is not None:
                    name = c.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
                    lines.append(f'{prefix}_agreement_class{{source="{kind}",class="{name}"}} {v}')
        lines += [f"# HELP {prefix}_agreement_frames Frames in the agreement window",
                  f"# TYPE {prefix}_agreement_frames gauge"]
        lines += [f'{prefix}_agreement_frames{{source="{k}"}} {self.frames(k)}' for k in STREAMS]
        lines += [f"# HELP {prefix}_agreement_alarm 1 while the edge/cloud agreement alarm is raised",
                  f"# TYPE {prefix}_agreement_alarm gauge", f"{prefix}_agreement_alarm {int(self.alarm)}",
                  f"# HELP {prefix}_agreement_alarms_total Agreement alarms raised",
                  f"# TYPE {prefix}_agreement_alarms_total counter", f"{prefix}_agreement_alarms_total {self.alarms}"]
        return lines


# ---------------------------------------------------------------------------------------------- audits
@dataclasses.dataclass(frozen=True)
class AuditSampler:
    """Which easy frames to upload anyway: a ``share`` of frame indices, spread evenly, reproducible by ``seed``.

    Frame ``n`` is audited when ``frac(offset + n * (sqrt(2) - 1)) < share``: gaps between audits take at most
    three lengths close to ``1 / share``, and the sequence is independent of the Keyframe filter's
    golden-ratio one, so audits do not fall on its uploads. ``offset`` comes from ``seed``. Pure: the answer
    depends on the frame index only.
    """

    share: float = 0.02
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= 1.0:
            raise MlkitError(f"audit share must be in [0, 1] (0.02 audits 2 % of easy frames), got {self.share}")

    @functools.cached_property
    def offset(self) -> float:
        return float(np.random.default_rng([int(self.seed), 0xA0D17]).random())

    def audit(self, frame_index: int) -> bool:
        return (self.offset + int(frame_index) * _GOLDEN_2) % 1.0 < self.share


class AuditSchedule:
    """Which easy frames to audit, over a stream: ``sampler``'s share, raised to ``config.boost_share`` (an
    independent sequence) for ``config.boost_frames`` frames after an audit the edge got wrong. Frames come in order;
    ``audit(i)`` before the frame is sent, ``scored(i, own)`` with the audited frame's own agreement once answered."""

    def __init__(self, sampler: AuditSampler, config: AgreementConfig) -> None:
        self.sampler, self.config = sampler, config
        self._boost = AuditSampler(config.boost_share, sampler.seed + 1)
        self.boosted_until = -1  # frames before this one are audited at the boost share

    def audit(self, frame_index: int) -> bool:
        if self.sampler.share <= 0:
            return False
        return self.sampler.audit(frame_index) or (frame_index < self.boosted_until and
                                                   self._boost.audit(frame_index))

    def scored(self, frame_index: int, own: float | None) -> None:
        if own is not None and own < self.config.suspect_below:
            self.boosted_until = max(self.boosted_until, frame_index + self.config.boost_frames)


# ---------------------------------------------------------------------------------------------- file
def write_agreement(folder: str | Path, snapshot: dict, model: str | None = None) -> Path:
    """Write a snapshot atomically to ``folder/agreement.json`` (the hard-example store the incremental job
    watches); ``model`` names the edge model it was measured on. Returns the path."""
    from mlkit.data.atomic import atomic_write_text

    record = {**snapshot, "model": model, "written": _now()}
    return atomic_write_text(Path(folder) / AGREEMENT_FILE, json.dumps(record, indent=2) + "\n")
