"""Run a JointInferenceService: source -> edge worker -> outputs, with periodic statistics."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
from collections.abc import Callable
from pathlib import Path

from mlkit.data.atomic import atomic_write_text
from mlkit.errors import MlkitError
from mlkit.joint.cloud import CloudClient
from mlkit.joint.outputs import OutputWriter
from mlkit.joint.settings import CloudSettings, EdgeSettings
from mlkit.joint.spec import JointInferenceService
from mlkit.joint.stats import JointStats, queue_line
from mlkit.joint.worker import JointWorker
from mlkit.specfiles import settings


@dataclasses.dataclass(frozen=True)
class RunSummary:
    stats: dict
    source_end: str
    results: Path | None


def run_service(service: JointInferenceService, *, echo: Callable[[str], None] = print,
                progress: bool = True) -> RunSummary:
    """Run a JointInferenceService (``mlkit.joint.spec``) until its source ends: ``run`` with its settings."""
    edge = service.edge_settings()
    cloud_worker = service.spec.cloudWorker
    return run(edge.video_url, edge_model=service.spec.edgeWorker.model.url, edge=edge,
               cloud=service.cloud_settings(), cloud_model=cloud_worker.model.name if cloud_worker else "big",
               mining=service.mining_spec(), echo=echo, progress=progress)


def run(source: str | int | Path | None, *, edge_model: str | Path, edge: EdgeSettings | dict | None = None,
        cloud: CloudSettings | dict | None = None, cloud_model: str = "big", mining: dict | None = None,
        echo: Callable[[str], None] = print, progress: bool = True) -> RunSummary:
    """Joint inference on ``source`` (a video file, RTSP/HTTP URL or camera index) until it ends (or
    ``edge.max_frames``); returns the final statistics.

    ``edge_model``: the little TFLite model (.tflite or a folder). ``edge``: ``EdgeSettings`` or a dict of them
    (thresholds, output folders and files, reuse). ``cloud``: ``CloudSettings`` or a dict (``endpoint`` at least),
    or None for the edge alone; ``cloud_model``: the served model's name. ``mining``: the hard-example filter,
    ``{"name": "IBT", "threshold_img": 0.9, ...}`` (or ``{"method": ..., "param": {...}}``); None uploads every
    frame (CloudOnly) when there is a cloud.

    Raises ``MlkitError`` for bad settings or a source or model that cannot be opened. A cloud that is down is
    not an error: its frames keep their edge results and the fallbacks are counted; with ``edge.queue_dir`` they
    also wait on the offline queue and get a late answer (``mlkit.joint.spool``).
    """
    from mlkit.client.video import open_source
    from mlkit.mining import build_filter
    from mlkit.models.predict import open_detector

    edge_s = settings(EdgeSettings, edge, "edge settings")
    cloud_s = None if cloud is None else settings(CloudSettings, cloud, "cloud settings")
    if source is None or source == "":
        raise MlkitError("give a source: a video file, an RTSP/HTTP URL or a camera index")
    config = edge_s.worker_config(model=str(edge_model))
    hem = build_filter(_mining(mining, cloud_s is not None))
    edge_det = open_detector(edge_model, num_threads=edge_s.num_threads)
    if not hasattr(edge_det, "interpreter"):
        raise MlkitError(f"the edge model must be TFLite (.tflite or a folder with model.tflite), got {edge_model}")
    outputs = edge_s.output_config()
    cloud_config = None if cloud_s is None else cloud_s.cloud_config(cloud_model, edge_s.score_threshold)
    from tqdm.auto import tqdm

    # The source first (a missing video leaves no truncated results behind), then the outputs, then the cloud
    # connection; the stack closes whatever was opened, in reverse, also when a later step fails.
    with contextlib.ExitStack() as stack:
        src = stack.enter_context(open_source(str(source), realtime=edge_s.realtime))
        writer = stack.enter_context(OutputWriter(outputs, edge_det.meta.class_names))
        cloud_client = None if cloud_config is None else stack.enter_context(CloudClient(cloud_config))
        worker = JointWorker(edge_det, hem, cloud_client, config, on_result=writer.write, report=echo,
                             late_sink=writer)
        frames = iter(src)
        limit = edge_s.max_frames
        if limit:
            frames = itertools.islice(frames, limit)
        total = src.info.frames if src.info is not None else None
        if limit:
            total = min(total or limit, limit)
        with tqdm(total=total or None, unit="frame", desc="joint", disable=not progress) as bar:
            for _ in worker.run(frames):
                bar.update(1)
        end = src.end.message if src.end is not None else f"stopped after {limit} frames"
    stats = worker.stats.snapshot()
    if edge_s.stats:
        atomic_write_text(edge_s.stats, json.dumps(stats, indent=2) + "\n")
    return RunSummary(stats, end, outputs.results_jsonl)


def _mining(mining: dict | None, has_cloud: bool) -> dict:
    """``build_filter``'s ``{"method", "param"}`` from either spelling; None: every frame goes to the cloud."""
    if mining is None:
        return {"method": "CloudOnly" if has_cloud else "EdgeOnly", "param": {}}
    if "method" in mining:
        return mining
    if "name" not in mining:
        raise MlkitError(f"mining needs the filter's name, e.g. {{'name': 'IBT', 'threshold_img': 0.9}}; got {mining}")
    return {"method": mining["name"], "param": {k: v for k, v in mining.items() if k != "name"}}


def format_stats(stats: dict) -> str:
    """A small table for the terminal."""
    rows = [("frames", stats["frames"]), ("hard frames", f"{stats['hard_frames']} "
            f"({100 * stats['upload_ratio']:.1f}% uploaded)"), ("cloud results", stats["cloud_results"]),
            ("reused answers", stats["reused_frames"]),
            ("fallbacks", f"{stats['fallbacks']} {stats['fallback_reasons'] or ''}".strip()),
            ("bytes uploaded", f"{stats['bytes_uploaded']} ({stats['bytes_per_upload']} per frame)"),
            ("throughput", f"{stats['fps']} frames/s"),
            ("edge ms p50/p95/p99", "/".join(str(stats["edge_ms"][k]) for k in ("p50", "p95", "p99"))),
            ("cloud call ms p50/p95/p99", "/".join(str(stats["cloud_ms"][k]) for k in ("p50", "p95", "p99")))]
    if "audits" in stats:
        alarm = f", ALARM since frame {stats['alarm_frame']}" if stats["alarm"] else ", no alarm"
        rows.append(("edge/cloud agreement", f"{stats['agreement']} on audits ({stats['audits_answered']} answered of "
                                             f"{stats['audits']}, {stats['audits_skipped']} skipped), "
                                             f"{stats['agreement_hard']} on hard frames{alarm}"))
    if queue_line(stats):
        rows.append(("offline queue", f"queued {stats['queued']}, replayed {stats['replayed']}, expired "
                                      f"{stats['expired']}, dropped {stats['dropped']} "
                                      f"{stats['dropped_reasons'] or ''}".strip() + f", left {stats['queue_backlog']}"))
    # Calls that failed (timeouts, errors) count in the call latencies: they are time the frame waited.
    return "\n".join(f"{k:<26}{v}" for k, v in rows)


__all__ = ["JointStats", "RunSummary", "format_stats", "run", "run_service"]
