"""Offline drift check: replay a clip's edge and cloud answers through the worker's audit and hard-frame choices
and the ``AgreementMonitor``, and see where the alarm fires.

Both models predict every frame once (``clip_detections``); ``drift_trace`` then decides, frame by frame as the
worker does, which frames the cloud would have answered (hard frames by the filter, easy ones by the
``AuditSampler``) and feeds only those to the monitor. A clip that switches site at a known frame
(``clip_detections(..., [VideoSpec(site="A", ...), VideoSpec(site="C", ...)])``) should raise the alarm soon after
the switch; a same-site clip should not raise it at all. ``mlkit.viz.plots.plot_drift`` draws a trace.

>>> edge, cloud, switches = clip_detections(little, big, [VideoSpec(frames=600, site="A", seed=21),
...                                                       VideoSpec(frames=300, site="C", seed=21)])
>>> trace = drift_trace(edge, cloud, little.meta.class_names, hem=HEM, switch=switches[0])
>>> trace.alarm_frame, trace.delay
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from mlkit.detections import Detections
from mlkit.errors import MlkitError
from mlkit.joint.agreement import AgreementConfig, AgreementMonitor, AuditSampler, AuditSchedule

# The filter AgreementConfig's hard-frame threshold was tuned with (benchmarks/drift.py, on site-A tuning clips): the
# hard frames' agreement depends on the filter and its threshold.
DEFAULT_HEM = {"method": "Uncertainty", "param": {"threshold_uncertainty": 15.0}}
SCORE_THRESHOLD = 0.05  # the worker's default edge score threshold (WorkerConfig), also used for the cloud here


@dataclasses.dataclass
class DriftTrace:
    """The monitor's state after every frame it was given, and where the alarm fired."""

    num_frames: int
    switch: int | None  # the first frame of the new site, if the clip switches
    frame: list[int] = dataclasses.field(default_factory=list)  # frames the monitor was given, in order
    kind: list[str] = dataclasses.field(default_factory=list)  # "audit" or "hard"
    agreement: list[float | None] = dataclasses.field(default_factory=list)  # audited frames' window, after it
    agreement_hard: list[float | None] = dataclasses.field(default_factory=list)
    alarm: list[bool] = dataclasses.field(default_factory=list)
    alarms: list[int] = dataclasses.field(default_factory=list)  # frames where the alarm was raised
    clears: list[int] = dataclasses.field(default_factory=list)  # frames where it cleared
    config: dict = dataclasses.field(default_factory=dict)

    @property
    def alarm_frame(self) -> int | None:
        """The first frame where the alarm was raised (None: never)."""
        return self.alarms[0] if self.alarms else None

    @property
    def delay(self) -> int | None:
        """Frames from the switch to the first alarm at or after it (None: no switch, or no alarm after it)."""
        if self.switch is None:
            return None
        after = [f for f in self.alarms if f >= self.switch]
        return after[0] - self.switch if after else None

    @property
    def false_alarms(self) -> list[int]:
        """Alarms raised before the switch (all of them on a same-site clip)."""
        return [f for f in self.alarms if self.switch is None or f < self.switch]

    def counts(self) -> dict[str, int]:
        return {k: self.kind.count(k) for k in ("audit", "hard")}

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "alarm_frame": self.alarm_frame, "delay": self.delay,
                "false_alarms": self.false_alarms, "counts": self.counts()}


def drift_trace(edge: Sequence[Detections], cloud: Sequence[Detections], class_names: Sequence[str],
                hem: dict | object | None = None, sampler: AuditSampler | None = None,
                config: AgreementConfig | None = None, switch: int | None = None) -> DriftTrace:
    """Replay frames ``0..n-1`` (``edge[i]``, ``cloud[i]``: both models' answers) through the worker's choices.

    ``hem``: the hard-example filter (a ``build_filter`` spec or a filter; default ``DEFAULT_HEM``; ``{"method":
    "EdgeOnly"}`` for audits only); ``sampler``: the audit sampler (default 2 %, seed 0); ``switch``: the frame
    where the site changes, if known, for ``DriftTrace.delay``.
    """
    from mlkit.mining import build_filter

    if len(edge) != len(cloud):
        raise MlkitError(f"drift_trace needs one cloud answer per edge answer; got {len(edge)} and {len(cloud)}")
    if switch is not None and not 0 <= switch <= len(edge):
        raise MlkitError(f"switch frame {switch} is outside the clip's 0..{len(edge)} frames")
    hem = build_filter(DEFAULT_HEM if hem is None else hem) if hem is None or isinstance(hem, dict) else hem
    config = config or AgreementConfig()
    schedule = AuditSchedule(sampler or AuditSampler(), config)
    monitor = AgreementMonitor(class_names, config)
    trace = DriftTrace(len(edge), switch, config=dataclasses.asdict(config))
    for i, (e, c) in enumerate(zip(edge, cloud, strict=True)):
        if hem.judge(e).is_hard:
            kind = "hard"
        elif schedule.audit(i):
            kind = "audit"
        else:
            continue
        was = monitor.alarm
        monitor.add(i, e, c, kind)
        if kind == "audit":
            schedule.scored(i, monitor.last_frame_agreement("audit"))
        trace.frame.append(i)
        trace.kind.append(kind)
        trace.agreement.append(monitor.agreement("audit"))
        trace.agreement_hard.append(monitor.agreement("hard"))
        trace.alarm.append(monitor.alarm)
        if monitor.alarm and not was:
            trace.alarms.append(i)
        elif was and not monitor.alarm:
            trace.clears.append(i)
    return trace


def clip_detections(edge_model, cloud_model, specs: Sequence, score_threshold: float = SCORE_THRESHOLD
                    ) -> tuple[list[Detections], list[Detections], list[int]]:
    """Render the clips ``specs`` (``VideoSpec``s) one after the other and predict every frame with both models.

    Returns ``(edge, cloud, switches)``; ``switches`` are the first frames of the second, third, ... clip. The
    models are anything with ``predict(images, score_threshold=...)`` (``TFLiteDetector``).
    """
    from mlkit.data.synthetic.video import render_frames

    if not specs:
        raise MlkitError("clip_detections needs at least one VideoSpec")
    edge, cloud, switches = [], [], []
    for n, spec in enumerate(specs):
        if n:
            switches.append(len(edge))
        for image, _, _ in render_frames(spec):
            edge.extend(edge_model.predict([image], score_threshold=score_threshold))
            cloud.extend(cloud_model.predict([image], score_threshold=score_threshold))
    return edge, cloud, switches
