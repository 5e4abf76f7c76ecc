"""Image entrypoint: ``python -m mlkit.serving --model-dir /mnt/models`` (binds 0.0.0.0 by default)."""

from __future__ import annotations

import argparse
import logging
import sys

from mlkit.errors import MlkitError
from mlkit.serving.auth import TOKEN_FILE_ENV, token_file_option
from mlkit.serving.options import (
    DEFAULT_MAX_LATENCY_MS,
    DEFAULT_MAX_PAYLOAD_MB,
    DEFAULT_MODEL_CONTROL,
    MODEL_CONTROL_MODES,
)
from mlkit.serving.overload import DEFAULT_KEEP_VERSIONS, DEFAULT_MAX_QUEUE, DEFAULT_QUEUE_TIMEOUT_MS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m mlkit.serving", description="Serve a folder of mlkit TFLite models "
                                "(<name>/<version>/model.tflite + metadata.json) with KServe v1/v2 REST and v2 gRPC.")
    p.add_argument("--model-dir", default=None,
                   help="Model repository folder [default: /mnt/models, or none with --graph-config].")
    p.add_argument("--graph-config", default=None,
                   help="Pipeline config (config.json): serve its models and pipelines too (mlkit.serving.graph).")
    p.add_argument("--graph-step", default=None, metavar="PIPELINE/NODE",
                   help="With --graph-config: serve only this node, as one step of a KServe InferenceGraph.")
    p.add_argument("--http-port", type=int, default=8080)
    p.add_argument("--grpc-port", type=int, default=8081)
    p.add_argument("--host", default="0.0.0.0", help="Address to bind (0.0.0.0 in a container).")
    p.add_argument("--max-batch-size", type=int, default=1, help="Instances per merged batch; 1 = no batching.")
    p.add_argument("--max-latency-ms", type=float, default=DEFAULT_MAX_LATENCY_MS, help="Longest wait to fill a batch.")
    p.add_argument("--threads", type=int, default=1, help="Interpreter threads per model instance.")
    p.add_argument("--instances", type=int, default=1,
                   help="Interpreters per model, each running its own batches in parallel (Triton's instance "
                        "count); more instances of fewer threads trade a lone request's latency for throughput.")
    p.add_argument("--max-queue", type=int, default=DEFAULT_MAX_QUEUE,
                   help=f"Requests that may wait per model; one more gets 503 with Retry-After (gRPC UNAVAILABLE). "
                        f"0 = unbounded. [default: {DEFAULT_MAX_QUEUE}]")
    p.add_argument("--queue-timeout-ms", type=float, default=DEFAULT_QUEUE_TIMEOUT_MS,
                   help="Drop a request that waited longer than this for an interpreter (503); 0 = no deadline.")
    p.add_argument("--keep-versions", type=int, default=DEFAULT_KEEP_VERSIONS,
                   help=f"Newest versions of each model kept loaded (Triton's version policy 'latest'); older "
                        f"ones are unloaded when a new one arrives. [default: {DEFAULT_KEEP_VERSIONS}]")
    p.add_argument("--max-payload-mb", type=float, default=DEFAULT_MAX_PAYLOAD_MB, help="Largest request body.")
    p.add_argument("--model-control", choices=MODEL_CONTROL_MODES, default=DEFAULT_MODEL_CONTROL,
                   help="As Triton's --model-control-mode. poll: load new version folders as they appear (hot "
                        "reload); none: serve what the repository holds at start; explicit: the same, and clients "
                        "may load and unload models (POST /v2/repository/models/NAME/load|unload), which the "
                        "other modes refuse with 403.")
    p.add_argument("--auth-token-file", default=None, metavar="PATH",
                   help=f"File holding a bearer token: every route but health, readiness and /metrics then needs "
                        f"'Authorization: Bearer <token>' (gRPC: metadata 'authorization'), else 401. "
                        f"[default: ${TOKEN_FILE_ENV}, else no authentication]")
    p.add_argument("--poll-seconds", type=float, default=2.0,
                   help="How often to look for new model versions (--model-control poll).")
    p.add_argument("--no-watch", action="store_true", help="Do not hot-reload new versions (as --model-control none).")
    p.add_argument("--access-log", action="store_true",
                   help="Log a line per request (uvicorn access log and KServe's timing lines); off by default, "
                        "request counts and latencies are on /metrics.")
    p.add_argument("--response-delay-ms", type=float, default=0.0,
                   help="Fault injection: hold every inference answer this long (tests of slow-cloud handling).")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # kserve.model_server parses sys.argv when imported; do not let it see our flags.
    sys.argv = sys.argv[:1]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from mlkit.serving.server import run_server

    try:
        model_dir = args.model_dir or (None if args.graph_config else "/mnt/models")
        run_server(model_dir, http_port=args.http_port, grpc_port=args.grpc_port, host=args.host,
                   max_batch_size=args.max_batch_size, max_latency_ms=args.max_latency_ms,
                   num_threads=args.threads, instances=args.instances, max_payload_mb=args.max_payload_mb,
                   poll_seconds=args.poll_seconds, watch=not args.no_watch, model_control=args.model_control,
                   response_delay_ms=args.response_delay_ms, graph_config=args.graph_config,
                   graph_step=args.graph_step, access_log=args.access_log,
                   auth_token_file=token_file_option(args.auth_token_file), max_queue=args.max_queue,
                   queue_timeout_ms=args.queue_timeout_ms, keep_versions=args.keep_versions)
    except MlkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
