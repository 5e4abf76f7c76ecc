"""Typed settings of a joint-inference run: what the edge worker, its outputs and its cloud client do.

``EdgeSettings`` and ``CloudSettings`` are the parameters of a JointInferenceService YAML (``mlkit.joint.spec``),
typed: the YAML's ``{key, value}`` strings validate into them, and Python callers pass them (or plain dicts)
to ``mlkit.joint.run``. Where a setting is also a field of ``WorkerConfig``, ``OutputConfig`` or ``CloudConfig``,
its default is read from there, so each default is written once, and checked there (``reuse``, ``protocol`` and
the ranges), with the messages those give. The ``queue_*`` settings are ``QueueConfig``'s (``mlkit.joint.spool``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from mlkit.errors import MlkitError
from mlkit.joint.agreement import AgreementConfig
from mlkit.joint.audits import AuditConfig
from mlkit.joint.cloud import CloudConfig
from mlkit.joint.outputs import OutputConfig
from mlkit.joint.spool import QueueConfig
from mlkit.joint.worker import WorkerConfig
from mlkit.specfiles import Settings, parse_hw


def _default(config: type, name: str) -> Any:
    return {f.name: f.default for f in dataclasses.fields(config)}[name]


class EdgeSettings(Settings):
    """The edge worker's parameters (``spec.edgeWorker.workerSpec.parameters``)."""

    video_url: str | None = Field(None, description="video file, RTSP/HTTP URL or camera index (required)")
    input_shape: str | None = Field(None, description="informational; the model's metadata.json decides the "
                                                      "input size")
    all_examples_inference_output: str | None = Field(None, description="folder: every frame with the final "
                                                                        "result drawn")
    hard_example_edge_inference_output: str | None = Field(None, description="folder: hard frames with the edge "
                                                                             "boxes drawn")
    hard_example_cloud_inference_output: str | None = Field(None, description="folder: hard frames with the cloud "
                                                                              "boxes drawn")
    hard_example_store: str | None = Field(None, description="folder: clean hard frames + sidecar predictions, "
                                                             "for relabelling")
    results: str | None = Field(None, description="JSON-lines file, one record per frame")
    stats: str | None = Field(None, description="JSON file with the final statistics")
    score_threshold: float = Field(_default(WorkerConfig, "score_threshold"),
                                   description="edge boxes kept for mining and results")
    display_threshold: float = Field(_default(OutputConfig, "display_threshold"),
                                     description="boxes drawn on output images")
    jpeg_quality: int = Field(_default(WorkerConfig, "jpeg_quality"),
                              description="quality of the JPEG sent to the cloud")
    num_threads: int = Field(1, ge=1, description="TFLite interpreter threads at the edge")
    max_frames: int = Field(0, ge=0, description="stop after this many frames (0 = whole source)")
    realtime: bool = Field(False, description="read a file at its own frame rate instead of as fast as possible")
    report_seconds: float = Field(_default(WorkerConfig, "report_every_s"), description="period of the statistics "
                                                                                         "line")
    reuse: str = Field(
        _default(WorkerConfig, "reuse"),
        description="a frame not uploaded: none (its edge boxes), hold (merged with the last cloud answer), "
                    "interpolate (with the answers on either side, moved in time; the frame waits for the next "
                    "upload's answer), track (the last answer carried by the optical flow; waits for nothing) or "
                    "track-interpolate (both answers carried by the flow; waits like interpolate)")
    reuse_frames: int = Field(_default(WorkerConfig, "reuse_frames"),
                              description="how many frames away an uploaded frame's cloud answer may serve (with "
                                          "reuse; about 2 suits hold, which does not move boxes)")

    queue_dir: str | None = Field(
        None, description="folder of the offline queue: hard frames the cloud did not answer (down, slow, busy) wait "
                          "there and are replayed when it answers again, each late answer a correction record in "
                          "results (unset: no queue; one worker per folder)")
    queue_max_mb: float = Field(_default(QueueConfig, "max_mb"),
                                description="offline queue: disk it may use; the oldest frames are dropped first")
    queue_max_age_seconds: float = Field(_default(QueueConfig, "max_age_s"),
                                         description="offline queue: older frames are removed unanswered")
    queue_max_count: int = Field(_default(QueueConfig, "max_count"),
                                 description="offline queue: frames it may hold; the oldest are dropped first")
    queue_drain_seconds: float = Field(_default(QueueConfig, "drain_s"),
                                       description="offline queue: how long replay may go on after the stream ends "
                                                   "(what is left waits for the next run)")

    audit_share: float = Field(_default(AuditConfig, "share"),
                               description="share of the easy frames uploaded anyway, at low priority, to measure the "
                                           "edge/cloud agreement (0.02 is typical; 0: no audits)")
    watch_agreement: bool = Field(_default(AuditConfig, "watch"),
                                  description="measure the agreement on the hard frames' answers too, even without "
                                              "audits (on whenever audit_share > 0)")
    agreement_threshold: float = Field(_default(AgreementConfig, "threshold"),
                                       description="alarm when the audited frames' agreement (edge mAP@0.5 against "
                                                   "the cloud's answers) falls below this")
    agreement_window: int = Field(_default(AgreementConfig, "window"),
                                  description="audited frames in the rolling agreement window")
    agreement_hard_threshold: float = Field(_default(AgreementConfig, "hard_threshold"),
                                            description="alarm when the hard frames' agreement falls below this")
    agreement_hard_window: int = Field(_default(AgreementConfig, "hard_window"),
                                       description="hard frames in their rolling agreement window")
    metrics_file: str | None = Field(None, description="Prometheus text file with the agreement and audit counts, "
                                                       "rewritten at every report (for node_exporter's textfile "
                                                       "collector; with audits or watch_agreement)")

    def audit_config(self, model: str | None = None) -> AuditConfig:
        """Audits and agreement; the agreement file goes to the hard-example store (the incremental job's)."""
        agreement = AgreementConfig(
            window=self.agreement_window, threshold=self.agreement_threshold, hard_window=self.agreement_hard_window,
            hard_threshold=self.agreement_hard_threshold,
            min_frames=min(_default(AgreementConfig, "min_frames"), self.agreement_window),
            hard_min_frames=min(_default(AgreementConfig, "hard_min_frames"), self.agreement_hard_window))
        return AuditConfig(share=self.audit_share, watch=self.watch_agreement, agreement=agreement,
                           store=Path(self.hard_example_store) if self.hard_example_store else None, model=model,
                           metrics_file=Path(self.metrics_file) if self.metrics_file else None)

    def queue_config(self) -> QueueConfig:
        return QueueConfig(directory=Path(self.queue_dir) if self.queue_dir else None, max_mb=self.queue_max_mb,
                           max_age_s=self.queue_max_age_seconds, max_count=self.queue_max_count,
                           drain_s=self.queue_drain_seconds)

    def worker_config(self, model: str | None = None) -> WorkerConfig:
        return WorkerConfig(score_threshold=self.score_threshold, jpeg_quality=self.jpeg_quality,
                            report_every_s=self.report_seconds, reuse=self.reuse, reuse_frames=self.reuse_frames,
                            queue=self.queue_config(), audits=self.audit_config(model))

    def output_config(self) -> OutputConfig:
        def path(value: str | None) -> Path | None:
            return Path(value) if value else None

        return OutputConfig(results_jsonl=path(self.results), all_examples=path(self.all_examples_inference_output),
                            hard_edge=path(self.hard_example_edge_inference_output),
                            hard_cloud=path(self.hard_example_cloud_inference_output),
                            hard_example_store=path(self.hard_example_store),
                            display_threshold=self.display_threshold)


class CloudSettings(Settings):
    """The cloud client's parameters (``spec.cloudWorker.workerSpec.parameters``)."""

    endpoint: str | None = Field(None, description="http://host:port of the KServe server (required)")
    input_shape: str | None = Field(None, description="informational; the served model decides")
    protocol: str = Field(_default(CloudConfig, "protocol"),
                                          description="v1 (JSON, base64) or v2 (binary JPEG)")
    timeout_ms: float = Field(_default(CloudConfig, "timeout_s") * 1000,
                              description="per-call timeout; on expiry the edge result stands")
    max_in_flight: int = Field(_default(CloudConfig, "max_in_flight"),
                               description="frames out to the cloud at once (gathering or sent); a hard frame "
                                           "beyond that keeps its edge result")
    upload_max_shape: tuple[int, int] | None = Field(
        _default(CloudConfig, "upload_max_hw"),
        description="HEIGHT,WIDTH: shrink hard frames to fit before upload (aspect kept); the cloud model's input "
                    "size is the natural value, since it resizes to it anyway (fewer bytes and less edge CPU)")
    upload_batch: int = Field(_default(CloudConfig, "upload_batch"),
                              description="hard frames per request: above 1, frames arriving within upload_wait_ms "
                                          "share one request (less edge CPU per frame, later cloud answers)")
    upload_wait_ms: float = Field(_default(CloudConfig, "upload_wait_ms"),
                                  description="with upload_batch > 1: how long the first hard frame waits for others")
    auth_token_file: str | None = Field(None, description="file holding the cloud server's bearer token (a server "
                                                          "started with --auth-token-file); a Kubernetes Secret "
                                                          "mounted as a file, typically")

    @field_validator("upload_max_shape", mode="before")
    @classmethod
    def _hw(cls, value: Any) -> Any:
        return parse_hw(value) if isinstance(value, str) else value

    def cloud_config(self, model: str, score_threshold: float | None) -> CloudConfig:
        """The client's configuration; the token is read from ``auth_token_file`` now, so a missing file stops the
        run before it starts."""
        from mlkit.serving.auth import read_token_file

        if not self.endpoint:
            raise MlkitError("the cloud settings need endpoint (http://host:port of the server)")
        token = read_token_file(self.auth_token_file) if self.auth_token_file else None
        return CloudConfig(self.endpoint, model, protocol=self.protocol, timeout_s=self.timeout_ms / 1000,
                           max_in_flight=self.max_in_flight, upload_max_hw=self.upload_max_shape,
                           upload_batch=self.upload_batch, upload_wait_ms=self.upload_wait_ms,
                           score_threshold=score_threshold, token=token)
