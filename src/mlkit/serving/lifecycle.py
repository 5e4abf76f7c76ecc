"""Local detached model servers that outlive the process that started them (CLI, notebook, pipeline task).

``start(name, model_dir)`` runs ``python -m mlkit.serving`` in a new session (``start_new_session=True``, so
Ctrl-C in a terminal or the end of a kfp.local task does not reach it), logs to ``<state dir>/<name>.log``,
waits until ``/v2/health/ready`` answers and records a state file ``<state dir>/<name>.json``
(pid, url, grpc_url, model_dir, log, started) written atomically. ``stop(name)`` sends SIGTERM, then
SIGKILL after a timeout, and removes the state; ``status()`` lists the recorded servers and whether each
is still alive.

State dir: ``$MLKIT_STATE_DIR`` when set, else ``~/.mlkit/servers`` (read in ``state_dir`` only).
Servers bind 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from mlkit.data.atomic import atomic_write_text
from mlkit.errors import MlkitError
from mlkit.serving.options import DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_LATENCY_MS, DEFAULT_THREADS

log = logging.getLogger(__name__)

STATE_DIR_ENV = "MLKIT_STATE_DIR"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclasses.dataclass(frozen=True)
class ServerState:
    """What ``start`` recorded about a detached server."""

    name: str
    pid: int
    url: str
    grpc_url: str
    model_dir: str
    log: str
    host: str
    http_port: int
    grpc_port: int
    started: float
    auth_token_file: str | None = None  # the file, never the token (state files are not secret)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ServerState:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})

    @property
    def alive(self) -> bool:
        return _alive(self.pid)


def state_dir() -> Path:
    """``$MLKIT_STATE_DIR`` or ``~/.mlkit/servers``."""
    env = os.environ.get(STATE_DIR_ENV, "").strip()
    return Path(env).expanduser() if env else Path("~/.mlkit/servers").expanduser()


def _check_name(name: str) -> None:
    if not _NAME.match(name or ""):
        raise MlkitError(f"server name {name!r} is invalid: use up to 64 letters, digits, '.', '_' and '-'")


def _state_path(name: str) -> Path:
    _check_name(name)
    return state_dir() / f"{name}.json"


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # reap it if it is our own exited child
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def get(name: str) -> ServerState | None:
    """The recorded state of server ``name`` (``None`` when there is none)."""
    path = _state_path(name)
    if not path.is_file():
        return None
    try:
        return ServerState.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise MlkitError(f"state file {path} is corrupt ({exc}); delete it and stop the server by hand") from exc


def _port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def start(name: str, model_dir: str | Path, *, http_port: int = 0, grpc_port: int = 0, host: str = "127.0.0.1",
          max_batch_size: int = DEFAULT_MAX_BATCH_SIZE, max_latency_ms: float = DEFAULT_MAX_LATENCY_MS,
          threads: int = DEFAULT_THREADS, timeout: float = 60.0,
          replace: bool = False, instances: int = 1, model_control: str = "poll",
          auth_token_file: str | Path | None = None, **queue) -> ServerState:
    """Start a detached server for ``model_dir`` and return its state once it is ready.

    ``http_port``/``grpc_port`` 0 pick free ports; a requested port that is busy is replaced by a free one
    (logged), so the caller must use the returned ``url``. A live server of the same name is an error
    unless ``replace=True`` (it is stopped first); a stale state (dead pid) is cleaned up. ``model_control``
    and ``auth_token_file``, and ``queue`` (``max_queue``, ``queue_timeout_ms``): see
    ``mlkit.serving.server.build_server``.
    """
    from mlkit.serving.auth import read_token_file
    from mlkit.serving.server import entrypoint_command, free_port, wait_ready

    model_dir = Path(model_dir).resolve()
    if not model_dir.is_dir():
        raise MlkitError(f"model folder {model_dir} does not exist (expected <name>/<version>/model.tflite)")
    if auth_token_file is not None:
        auth_token_file = Path(auth_token_file).resolve()  # the server runs detached: no relative paths
        read_token_file(auth_token_file)  # a missing or empty file fails here, not in the detached server's log
    previous = get(name)
    if previous is not None:
        if previous.alive and not replace:
            raise MlkitError(f"server {name!r} is already running at {previous.url} (pid {previous.pid}); "
                             f"stop it first: mlkit serve stop {name}")
        stop(name)
    ports = []
    for port in (http_port, grpc_port):
        if port and not _port_free(host, port):
            log.warning("port %d on %s is busy; using a free port instead", port, host)
            port = 0
        ports.append(port or free_port(host))
    if ports[0] == ports[1]:
        ports[1] = free_port(host)
    http_port, grpc_port = ports
    folder = state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / f"{name}.log"
    cmd = entrypoint_command(host, http_port, grpc_port, max_batch_size=max_batch_size, max_latency_ms=max_latency_ms,
                             threads=threads, instances=instances, model_control=model_control,
                             auth_token_file=auth_token_file, **queue) + [
        "--model-dir", str(model_dir)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "ab") as logf:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, close_fds=True)
    url_host = f"[{host}]" if ":" in host else host
    if host in ("0.0.0.0", "::"):
        url_host = "127.0.0.1"
    state = ServerState(name=name, pid=proc.pid, url=f"http://{url_host}:{http_port}",
                        grpc_url=f"{url_host}:{grpc_port}", model_dir=str(model_dir), log=str(log_path), host=host,
                        http_port=http_port, grpc_port=grpc_port, started=time.time(),
                        auth_token_file=None if auth_token_file is None else str(auth_token_file))
    # Recorded before the wait, so `mlkit serve stop NAME` can end a server that hangs while loading.
    atomic_write_text(_state_path(name), json.dumps(state.to_dict(), indent=2))
    try:
        wait_ready(proc, state.url, state.log, timeout, f"server {state.name!r}")
    except BaseException:
        stop(name)
        raise
    log.info("server %r ready at %s (pid %d, log %s)", name, state.url, proc.pid, log_path)
    return state


def _signal_group(pid: int, sig: int) -> None:
    """Signal the server's process group (its own session), falling back to the pid."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _looks_like_our_server(pid: int) -> bool:
    """Guard against a recycled pid: on Linux, check the command line names mlkit.serving."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.exists():
        return True  # not Linux (or already gone): trust the state file
    try:
        return b"mlkit.serving" in cmdline.read_bytes()
    except OSError:
        return True


def stop(name: str, timeout: float = 10.0) -> bool:
    """Stop server ``name`` (SIGTERM, SIGKILL after ``timeout`` s) and remove its state.

    Returns True when a live server was stopped, False when only a stale state (or nothing) was removed.
    """
    state = get(name)
    if state is None:
        return False
    stopped = False
    if state.alive and _looks_like_our_server(state.pid):
        _signal_group(state.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while state.alive and time.monotonic() < deadline:
            time.sleep(0.1)
        if state.alive:
            log.warning("server %r (pid %d) ignored SIGTERM for %gs; killing it", name, state.pid, timeout)
            _signal_group(state.pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while state.alive and time.monotonic() < deadline:
                time.sleep(0.05)
        stopped = True
    _state_path(name).unlink(missing_ok=True)
    return stopped


def status() -> list[tuple[ServerState, bool]]:
    """Every recorded server with whether its process is alive, sorted by name."""
    folder = state_dir()
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("*.json")):
        try:
            state = get(path.stem)
        except MlkitError as exc:
            log.warning("%s", exc)
            continue
        if state is not None:
            out.append((state, state.alive))
    return out
