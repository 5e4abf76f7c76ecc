"""``mlkit serve``: run the model server on this machine (binds 127.0.0.1 unless told otherwise)."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from mlkit.errors import MlkitError


def _friendly(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MlkitError as exc:
            raise click.UsageError(str(exc)) from None

    return wrapper


@click.command("serve")
@click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Model repository: <name>/<version>/model.tflite + metadata.json.")
@click.option("--port", "http_port", type=click.IntRange(1, 65535), default=8080, show_default=True,
              help="HTTP port (KServe v1 and v2 REST, /metrics).")
@click.option("--grpc-port", type=click.IntRange(1, 65535), default=8081, show_default=True, help="v2 gRPC port.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind; 0.0.0.0 to expose it.")
@click.option("--max-batch-size", type=click.IntRange(min=1), default=1, show_default=True,
              help="Merge concurrent requests up to this many images (1 = no batching).")
@click.option("--max-latency-ms", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="Longest wait to fill a batch.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="Interpreter threads per model.")
@click.option("--max-payload-mb", type=click.FloatRange(min=0, min_open=True), default=16.0, show_default=True,
              help="Largest request body; bigger ones get 400.")
@click.option("--poll-seconds", type=click.FloatRange(min=0, min_open=True), default=2.0, show_default=True,
              help="How often to look for new model versions (hot reload).")
@_friendly
def serve(model_dir, http_port, grpc_port, host, max_batch_size, max_latency_ms, threads, max_payload_mb,
          poll_seconds) -> None:
    """Serve every model in MODEL_DIR with KServe (v1/v2 REST and v2 gRPC) until Ctrl-C."""
    sys.argv = sys.argv[:1]  # kserve.model_server parses sys.argv when imported
    from mlkit.serving.server import run_server

    run_server(model_dir, http_port=http_port, grpc_port=grpc_port, host=host, max_batch_size=max_batch_size,
               max_latency_ms=max_latency_ms, num_threads=threads, max_payload_mb=max_payload_mb,
               poll_seconds=poll_seconds)
