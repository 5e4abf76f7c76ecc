"""The mlkit model server: KServe's ModelServer over a ``TFLiteModelRepository``.

What this adds to ``kserve.ModelServer`` (0.21), and why:

- **Host binding.** KServe hard-codes ``0.0.0.0`` (uvicorn) and ``[::]`` (gRPC); ``start`` here builds
  the same REST and gRPC servers but binds ``host`` (default ``127.0.0.1``).
- **v2 REST infer routes.** KServe's own route turns binary BYTES tensors into UTF-8 strings (JPEG
  bytes fail with a 500), answers 422 for malformed JSON and 501 for ``/versions/{v}/infer``. The
  routes registered here (ahead of KServe's) parse the body with ``mlkit.serving.payload``, answer
  400 for every malformed body and resolve versions to ``<name>@<version>``.
- **Payload limit.** Bodies over ``max_payload_mb`` are refused with 400 before they are read
  (gRPC: ``grpc.max_receive_message_length``, which answers RESOURCE_EXHAUSTED).
- **Model control** (Triton's ``--model-control-mode``): ``poll`` (default) runs the repository watcher as one
  more task next to the REST and gRPC servers (hot reload); ``none`` and ``explicit`` run no watcher. Only
  ``explicit`` lets clients load and unload models (REST ``/v2/repository/models/{name}/load|unload``, gRPC
  RepositoryModelLoad/Unload); otherwise they get 403 / PERMISSION_DENIED naming the flag.
- **Versions.** A version in a REST path, a ``?model_version=`` query (KServe answers 501 to it) or gRPC's
  ``version``/``model_version`` fields resolves to ``<name>@<version>``; a malformed one is a 400, an unknown
  one a 404 naming the versions there are.
- **Overload** (``max_queue``, ``queue_timeout_ms``): a model whose queue is full answers 503 with ``Retry-After``
  (gRPC UNAVAILABLE) before the request body is read (``mlkit.serving.overload``).
- **Authentication** (``auth_token_file``): a bearer token on every route but health, readiness and
  /metrics, REST and gRPC alike (``mlkit.serving.auth``).
- A repository without a ready model still starts (KServe would refuse), so models can arrive later.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlkit.errors import MlkitError
from mlkit.serving.options import (  # noqa: F401 - re-exported: the server's options are named from here too
    DEFAULT_INSTANCES,
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_LATENCY_MS,
    DEFAULT_MAX_PAYLOAD_MB,
    DEFAULT_MODEL_CONTROL,
    DEFAULT_THREADS,
    MODEL_CONTROL_MODES,
    ModelControlDisabled,
    check_model_control,
)
from mlkit.serving.overload import (
    DEFAULT_KEEP_VERSIONS,
    DEFAULT_MAX_QUEUE,
    DEFAULT_QUEUE_TIMEOUT_MS,
    check_limits,
)

log = logging.getLogger(__name__)


def build_server(model_dir: str | Path, http_port: int = 8080, grpc_port: int = 8081, host: str = "127.0.0.1",
                 max_batch_size: int = DEFAULT_MAX_BATCH_SIZE, max_latency_ms: float = DEFAULT_MAX_LATENCY_MS,
                 num_threads: int = DEFAULT_THREADS, instances: int = DEFAULT_INSTANCES,
                 max_payload_mb: float = DEFAULT_MAX_PAYLOAD_MB, poll_seconds: float = 2.0,
                 watch: bool = True, enable_grpc: bool = True, response_delay_ms: float = 0.0,
                 graph_config: str | Path | None = None, graph_step: str | None = None, access_log: bool = False,
                 model_control: str = DEFAULT_MODEL_CONTROL, auth_token_file: str | Path | None = None,
                 max_queue: int = DEFAULT_MAX_QUEUE, queue_timeout_ms: float = DEFAULT_QUEUE_TIMEOUT_MS,
                 keep_versions: int = DEFAULT_KEEP_VERSIONS):
    """Load every model under ``model_dir`` and return a ready-to-``start()`` server (not started).

    ``model_control`` (one of ``MODEL_CONTROL_MODES``, as Triton's): ``poll`` watches the folder for new
    versions every ``poll_seconds``; ``none`` serves what is there now; ``explicit`` serves what is there now
    and lets clients load and unload models through the repository API, the only mode that does.
    ``watch=False`` (the older switch) makes ``poll`` ``none``.

    ``graph_config``: a pipeline config (``mlkit.serving.graph``) whose models and pipelines are served too
    (``model_dir`` may then be None); ``graph_step`` (``PIPELINE/NODE``): serve only that node, as one step
    of a KServe InferenceGraph. ``access_log``: log a line per request (off by default; see /metrics).
    ``auth_token_file``: a file holding a bearer token that every route but health, readiness and /metrics then
    requires (``mlkit.serving.auth``). ``max_queue`` (0: unbounded) and ``queue_timeout_ms`` (0: none): overload
    protection per model version (``mlkit.serving.overload``). ``keep_versions``: how many of a model's newest
    versions stay loaded (older ones are unloaded when a new one arrives).
    """
    from mlkit.serving.auth import read_token_file
    from mlkit.serving.model_server import MlkitModelServer
    from mlkit.serving.repository import TFLiteModelRepository

    if graph_step is not None:
        model_dir = None  # a step serves its node only, whatever else the storage holds
    if model_dir is None and graph_config is None:
        raise MlkitError("give a model folder, a pipeline config (graph_config), or both")
    model_dir = Path(model_dir) if model_dir is not None else None
    if model_dir is not None and not model_dir.is_dir():
        raise MlkitError(f"model folder {model_dir} does not exist (expected <name>/<version>/model.tflite)")
    if max_batch_size < 1:
        raise MlkitError(f"max_batch_size must be >= 1, got {max_batch_size}")
    if max_latency_ms < 0 or max_payload_mb <= 0 or num_threads < 1 or poll_seconds <= 0:
        raise MlkitError("max_latency_ms must be >= 0, max_payload_mb and poll_seconds > 0, threads >= 1")
    if instances < 1 or keep_versions < 1:
        raise MlkitError(f"instances and keep_versions must be >= 1, got {instances} and {keep_versions}")
    if response_delay_ms < 0:
        raise MlkitError(f"response_delay_ms must be >= 0, got {response_delay_ms}")
    check_model_control(model_control)
    try:
        check_limits(max_queue, queue_timeout_ms)
    except ValueError as exc:
        raise MlkitError(str(exc)) from None
    auth_token = None if auth_token_file is None else read_token_file(auth_token_file)
    if not watch and model_control == "poll":
        model_control = "none"
    repository = TFLiteModelRepository(model_dir, num_threads=num_threads, max_batch_size=max_batch_size,
                                       max_latency_ms=max_latency_ms, poll_seconds=poll_seconds, instances=instances,
                                       max_queue=max_queue, queue_timeout_ms=queue_timeout_ms,
                                       keep_versions=keep_versions)
    server = MlkitModelServer(repository, host=host, max_payload_bytes=int(max_payload_mb * 1024 * 1024),
                              model_control=model_control, http_port=http_port, grpc_port=grpc_port,
                              enable_grpc=enable_grpc, grace_period=2, enable_latency_logging=False,
                              response_delay_ms=response_delay_ms, access_log=access_log, auth_token=auth_token)
    repository.load_models()
    if graph_config is not None:
        from mlkit.serving.graph.loading import attach_graph

        attach_graph(repository, graph_config, step=graph_step)
    return server


def run_server(model_dir: str | Path | None, **kw) -> None:
    """Build and run the server until SIGINT/SIGTERM (same keywords as ``build_server``)."""
    build_server(model_dir, **kw).start()


# --- a server in a background process (tests, notebooks) ---------------------------------------------

def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class BackgroundServer:
    """A ``python -m mlkit.serving`` subprocess; ``stop()`` (or leaving the ``with`` block) ends it."""

    def __init__(self, proc: subprocess.Popen, url: str, grpc_url: str, log_path: Path) -> None:
        self.proc, self.url, self.grpc_url, self.log_path = proc, url, grpc_url, log_path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def entrypoint_command(host: str, http_port: int, grpc_port: int, *, max_batch_size: int, max_latency_ms: float,
                       threads: int, instances: int, model_control: str = DEFAULT_MODEL_CONTROL,
                       auth_token_file: str | Path | None = None, max_queue: int = DEFAULT_MAX_QUEUE,
                       queue_timeout_ms: float = DEFAULT_QUEUE_TIMEOUT_MS,
                       keep_versions: int = DEFAULT_KEEP_VERSIONS) -> list[str]:
    """``python -m mlkit.serving`` with the options every local launcher passes (add the model folder etc.)."""
    check_model_control(model_control)
    auth = ["--auth-token-file", str(Path(auth_token_file).resolve())] if auth_token_file is not None else []
    return [sys.executable, "-m", "mlkit.serving", "--host", host, "--http-port", str(http_port),
            "--grpc-port", str(grpc_port), "--max-batch-size", str(max_batch_size),
            "--max-latency-ms", str(max_latency_ms), "--threads", str(threads), "--instances", str(instances),
            "--model-control", model_control, "--max-queue", str(max_queue),
            "--queue-timeout-ms", f"{queue_timeout_ms:g}", "--keep-versions", str(keep_versions), *auth]


def start_background_server(model_dir: str | Path | None, *, max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
                            max_latency_ms: float = DEFAULT_MAX_LATENCY_MS,
                            num_threads: int = 1, instances: int = 1, max_payload_mb: float = DEFAULT_MAX_PAYLOAD_MB,
                            poll_seconds: float = 2.0, timeout: float = 60.0,
                            log_path: str | Path | None = None, http_port: int | None = None,
                            response_delay_ms: float = 0.0,
                            graph_config: str | Path | None = None,
                            cpus: set[int] | None = None, access_log: bool = False,
                            model_control: str = DEFAULT_MODEL_CONTROL,
                            auth_token_file: str | Path | None = None, max_queue: int = DEFAULT_MAX_QUEUE,
                            queue_timeout_ms: float = DEFAULT_QUEUE_TIMEOUT_MS,
                            keep_versions: int = DEFAULT_KEEP_VERSIONS) -> BackgroundServer:
    """Start a server on 127.0.0.1 (free ports) in a subprocess; returns once ``/v2/health/ready`` answers.

    ``cpus`` pins the server (every thread it will start) to those CPU numbers, Linux only: benchmarks use it to
    keep a "remote" server off the cores the client measures on.
    """

    http_port, grpc_port = http_port or free_port(), free_port()
    log_path = Path(log_path) if log_path else Path(tempfile.mkstemp(prefix="mlkit-serve-", suffix=".log")[1])
    cmd = entrypoint_command("127.0.0.1", http_port, grpc_port, max_batch_size=max_batch_size,
                             max_latency_ms=max_latency_ms, threads=num_threads, instances=instances,
                             model_control=model_control, auth_token_file=auth_token_file,
                             max_queue=max_queue, queue_timeout_ms=queue_timeout_ms, keep_versions=keep_versions)
    cmd += ["--max-payload-mb", str(max_payload_mb), "--poll-seconds", str(poll_seconds),
            "--response-delay-ms", str(response_delay_ms)]
    cmd += ["--model-dir", str(model_dir)] if model_dir is not None else []
    cmd += ["--graph-config", str(graph_config)] if graph_config is not None else []
    cmd += ["--access-log"] if access_log else []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if cpus is not None and not hasattr(os, "sched_setaffinity"):
        raise MlkitError("pinning the server to CPUs needs Linux (os.sched_setaffinity)")
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env)
    if cpus is not None:
        # Pinned while the interpreter is still starting: every thread it creates later inherits the mask.
        # (preexec_fn would do it before exec, but is unsafe in a process that has threads.)
        os.sched_setaffinity(proc.pid, cpus)
    handle = BackgroundServer(proc, f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}", log_path)
    try:
        wait_ready(proc, handle.url, log_path, timeout, "the model server")
    except MlkitError:
        handle.stop()
        raise
    return handle


def wait_ready(proc: subprocess.Popen, url: str, log_path: str | Path, timeout: float, what: str) -> None:
    """Return once the server process ``proc`` answers ``/v2/health/ready`` at ``url``; ``MlkitError`` with the
    tail of its log if it exits or is not ready within ``timeout`` seconds (``what`` names it in the message)."""
    import httpx

    def tail() -> str:
        path = Path(log_path)
        return path.read_text(errors="replace")[-3000:] if path.is_file() else ""

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise MlkitError(f"{what} exited with code {proc.returncode}; log {log_path}:\n{tail()}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise MlkitError(f"{what} was not ready within {timeout:g}s; log {log_path}:\n{tail()}")
