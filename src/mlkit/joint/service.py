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
from mlkit.joint.cloud import CloudClient, CloudConfig
from mlkit.joint.outputs import OutputConfig, OutputWriter
from mlkit.joint.spec import JointInferenceService
from mlkit.joint.stats import JointStats
from mlkit.joint.worker import JointWorker, WorkerConfig


@dataclasses.dataclass(frozen=True)
class RunSummary:
    stats: dict
    source_end: str
    results: Path | None


def _path(value: str | None) -> Path | None:
    return None if not value else Path(value)


def _token(path: str | None) -> str | None:
    """The cloud's bearer token from its file: read before the run, so a missing file stops it at once."""
    from mlkit.serving.auth import read_token_file

    return None if not path else read_token_file(path)


def run_service(service: JointInferenceService, *, echo: Callable[[str], None] = print,
                progress: bool = True) -> RunSummary:
    """Run until the source ends (or ``max_frames``); returns the final statistics.

    Raises ``MlkitError`` for a source or model that cannot be opened. A cloud that is down is not an
    error: its frames keep their edge results and the fallbacks are counted.
    """
    from mlkit.client.video import open_source
    from mlkit.mining import build_filter
    from mlkit.models.predict import open_detector

    edge_p, cloud_p = service.edge_parameters(), service.cloud_parameters()
    config = WorkerConfig(score_threshold=edge_p["score_threshold"], jpeg_quality=edge_p["jpeg_quality"],
                          report_every_s=edge_p["report_seconds"], reuse=edge_p["reuse"],
                          reuse_frames=edge_p["reuse_frames"])
    hem = build_filter(service.mining_spec())
    edge = open_detector(service.spec.edgeWorker.model.url, num_threads=edge_p["num_threads"])
    if not hasattr(edge, "interpreter"):
        raise MlkitError(f"the edge model must be TFLite (.tflite or a folder with model.tflite), got "
                         f"{service.spec.edgeWorker.model.url}")
    outputs = OutputConfig(results_jsonl=_path(edge_p["results"]),
                           all_examples=_path(edge_p["all_examples_inference_output"]),
                           hard_edge=_path(edge_p["hard_example_edge_inference_output"]),
                           hard_cloud=_path(edge_p["hard_example_cloud_inference_output"]),
                           hard_example_store=_path(edge_p["hard_example_store"]),
                           display_threshold=edge_p["display_threshold"])
    from tqdm.auto import tqdm

    # The source first (a missing video leaves no truncated results behind), then the outputs, then the cloud
    # connection; the stack closes whatever was opened, in reverse, also when a later step fails.
    cloud_config = None if cloud_p is None else CloudConfig(
        cloud_p["endpoint"], service.spec.cloudWorker.model.name, protocol=cloud_p["protocol"],
        timeout_s=cloud_p["timeout_ms"] / 1000, max_in_flight=cloud_p["max_in_flight"],
        upload_max_hw=cloud_p["upload_max_shape"], upload_batch=cloud_p["upload_batch"],
        upload_wait_ms=cloud_p["upload_wait_ms"], score_threshold=edge_p["score_threshold"],
        token=_token(cloud_p["auth_token_file"]))
    with contextlib.ExitStack() as stack:
        source = stack.enter_context(open_source(edge_p["video_url"], realtime=edge_p["realtime"]))
        writer = stack.enter_context(OutputWriter(outputs, edge.meta.class_names))
        cloud = None if cloud_config is None else stack.enter_context(CloudClient(cloud_config))
        worker = JointWorker(edge, hem, cloud, config, on_result=writer.write, report=echo)
        frames = iter(source)
        if edge_p["max_frames"]:
            frames = itertools.islice(frames, edge_p["max_frames"])
        total = source.info.frames if source.info is not None else None
        if edge_p["max_frames"]:
            total = min(total or edge_p["max_frames"], edge_p["max_frames"])
        with tqdm(total=total or None, unit="frame", desc="joint", disable=not progress) as bar:
            for _ in worker.run(frames):
                bar.update(1)
        end = source.end.message if source.end is not None else f"stopped after {edge_p['max_frames']} frames"
    stats = worker.stats.snapshot()
    if edge_p["stats"]:
        atomic_write_text(edge_p["stats"], json.dumps(stats, indent=2) + "\n")
    return RunSummary(stats, end, outputs.results_jsonl)


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
    # Calls that failed (timeouts, errors) count in the call latencies: they are time the frame waited.
    return "\n".join(f"{k:<26}{v}" for k, v in rows)


__all__ = ["JointStats", "RunSummary", "format_stats", "run_service"]
