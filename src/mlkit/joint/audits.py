"""Audits in the edge worker: a small share of easy frames uploaded anyway, and the agreement they measure.

``Audits`` is the worker's side of ``mlkit.joint.agreement``. For each easy frame that ``AuditSampler`` picks it
uploads the frame at low priority: only while at most half of the cloud client's ``max_in_flight`` slots are taken,
so audits never take a hard frame's place (one that finds the slots taken is skipped and counted). An audit the
edge got wrong raises the share for a while (``AuditSchedule``), so a suspected change is confirmed quickly. An audit
never holds a result back: the frame's result is the edge's (or a reused one) as usual, and the answer is scored when it
arrives (``poll``, called by the worker loop on every frame). Hard frames that the cloud answered are scored too, in
their own stream. With ``store`` set, the monitor's snapshot is written to ``store/agreement.json`` when the alarm
changes and at every report, where the incremental-learning controller reads its ``agreement`` trigger.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

from mlkit.detections import Detections
from mlkit.errors import MlkitError
from mlkit.joint.agreement import (
    AgreementConfig,
    AgreementMonitor,
    AlarmEvent,
    AuditSampler,
    AuditSchedule,
    write_agreement,
)

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class AuditConfig:
    share: float = 0.0  # of the easy frames uploaded anyway (0.02 is typical); 0 with watch off: no monitor
    watch: bool = False  # score the cloud's answers to hard frames even without audits
    seed: int = 0  # which frames the sampler picks
    agreement: AgreementConfig = dataclasses.field(default_factory=AgreementConfig)
    store: Path | None = None  # folder for agreement.json (the incremental job's hard-example store)
    metrics_file: Path | None = None  # Prometheus text file (node_exporter's textfile collector reads *.prom)
    model: str | None = None  # the edge model's name, written with the agreement

    def __post_init__(self) -> None:
        AuditSampler(self.share)  # checks the share
        if self.share > 0.5:
            raise MlkitError(f"audit share {self.share} would upload most easy frames; audits are a sample (0.02)")

    @property
    def enabled(self) -> bool:
        return self.share > 0 or self.watch


@dataclasses.dataclass
class _Audit:
    index: int
    edge: Detections
    future: object  # concurrent.futures.Future[CloudOutcome]


class Audits:
    """One per worker run: picks audits, scores answers, keeps the counts."""

    def __init__(self, config: AuditConfig, class_names: Sequence[str]) -> None:
        self.config = config
        self.schedule = AuditSchedule(AuditSampler(config.share, config.seed), config.agreement)
        self.monitor = AgreementMonitor(class_names, config.agreement, on_alarm=self._alarm)
        self._out: collections.deque[_Audit] = collections.deque()
        self.sent = self.answered = self.skipped = self.failed = 0
        self._off = False

    def submit(self, index: int, image, edge: Detections, cloud, jpeg_quality: int) -> bool:
        """Upload an easy frame if the sampler picks it and the cloud has room to spare; True if it was sent."""
        if not self.schedule.audit(index):  # a share of 0 audits nothing
            return False
        if cloud.in_flight * 2 >= cloud.config.max_in_flight:
            self.skipped += 1
            return False
        self._out.append(_Audit(index, edge, cloud.submit(image, jpeg_quality)))
        self.sent += 1
        return True

    def poll(self, wait_s: float | None = None) -> None:
        """Score the audits whose answers came, oldest first; with ``wait_s``, wait for each (the end of a run)."""
        while self._out and (wait_s is not None or self._out[0].future.done()):
            audit = self._out.popleft()
            try:
                outcome = audit.future.result(timeout=wait_s)
            except Exception as exc:  # noqa: BLE001 - an audit is optional: count it, never stop the stream
                log.debug("audit of frame %d: %s", audit.index, exc)
                self.failed += 1
                continue
            if outcome.detections is None:
                self.failed += 1
                continue
            self.answered += 1
            self._add(audit.index, audit.edge, outcome.detections, "audit")
            self.schedule.scored(audit.index, self.monitor.last_frame_agreement("audit"))

    def hard(self, index: int, edge: Detections, cloud: Detections) -> None:
        """A hard frame the cloud answered."""
        self._add(index, edge, cloud, "hard")

    def _add(self, index: int, edge: Detections, cloud: Detections, kind: str) -> None:
        # A cloud that answers with classes the edge does not have cannot be scored: say so once, then stop
        # scoring rather than the stream.
        if self._off:
            return
        try:
            self.monitor.add(index, edge, cloud, kind)
        except MlkitError as exc:
            self._off = True
            log.warning("edge/cloud agreement turned off: %s", exc)

    def _alarm(self, event: AlarmEvent) -> None:
        self.save()

    def save(self) -> None:
        """Write agreement.json and the metrics file, where configured (atomically: readers poll them)."""
        if self.config.store is not None:
            write_agreement(self.config.store, self.monitor.snapshot(), self.config.model)
        if self.config.metrics_file is not None:
            from mlkit.data.atomic import atomic_write_text

            atomic_write_text(self.config.metrics_file, "\n".join(self.prometheus_lines()) + "\n")

    def prometheus_lines(self) -> list[str]:
        """The monitor's ``/metrics`` lines and the audit counters."""
        lines = self.monitor.prometheus_lines()
        for name, value, what in (("sent", self.sent, "uploaded"), ("answered", self.answered, "answered"),
                                  ("skipped", self.skipped, "skipped: the cloud had no slot to spare"),
                                  ("failed", self.failed, "not answered")):
            lines += [f"# HELP mlkit_joint_audits_{name}_total Audited easy frames {what}",
                      f"# TYPE mlkit_joint_audits_{name}_total counter", f"mlkit_joint_audits_{name}_total {value}"]
        return lines

    def snapshot(self) -> dict:
        """For the statistics: the audit counts and the monitor's snapshot."""
        return {"audits": self.sent, "audits_answered": self.answered, "audits_skipped": self.skipped,
                "audits_failed": self.failed, **self.monitor.snapshot()}

    def record(self) -> dict:
        """For each frame's JSON record: the agreement now and the alarm."""
        return {"agreement": self.monitor.agreement("audit"), "agreement_hard": self.monitor.agreement("hard"),
                "alarm": self.monitor.alarm}
