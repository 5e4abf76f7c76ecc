"""Overload protection: a bounded queue per model and a queue deadline, as Triton's ``max_queue_size`` and
``default_timeout_microseconds``, answered the way TorchServe answers a full job queue.

A request that finds its model's queue full is refused at once with ``ServerBusy``: REST 503 with a
``Retry-After`` header, gRPC UNAVAILABLE. Both are what mlkit's clients (and most HTTP and gRPC clients)
retry with backoff. A request that waited in the queue longer than the deadline is dropped before it reaches
the interpreter: its client has probably given up, and running it would only delay the requests behind it.
With a deadline, a request that would wait longer than it (the requests ahead of it times the recent interpreter
time per request) is refused at the door instead, so refusals stay fast.

Memory stays bounded too: only the newest ``DEFAULT_KEEP_VERSIONS`` versions of a model stay loaded.

Prometheus (label ``model``): ``mlkit_queue_depth`` (requests waiting for an interpreter, decoding included) and
``mlkit_requests_rejected_total`` (label ``reason``: ``queue_full`` or ``deadline``).
"""

from __future__ import annotations

import functools
import math

DEFAULT_MAX_QUEUE = 64  # requests waiting per model; 0 = unbounded
DEFAULT_QUEUE_TIMEOUT_MS = 0.0  # 0 = no deadline
# Versions kept loaded per model, newest first (Triton's version_policy "latest"): the served one and the one
# before it, so a versioned request can still compare; older ones are unloaded, or a server that incremental
# learning keeps publishing to grows without bound.
DEFAULT_KEEP_VERSIONS = 2



@functools.cache
def _metrics():
    # Created on first use: the CLI reads this module's defaults on an edge box, which has no prometheus_client.
    from prometheus_client import Counter, Gauge

    return (Gauge("mlkit_queue_depth", "Requests waiting for an interpreter (decoding or queued)", ["model"]),
            Counter("mlkit_requests_rejected_total", "Requests refused because the server was busy",
                    ["model", "reason"]))


def queue_depth(model: str):
    """The ``mlkit_queue_depth`` gauge of ``model`` (``inc``/``dec`` as requests start and stop waiting)."""
    return _metrics()[0].labels(model=model)


def _count_rejection(model: str, reason: str) -> None:
    _metrics()[1].labels(model=model, reason=reason).inc()


class ServerBusy(Exception):
    """The model cannot take this request now (503 with Retry-After, gRPC UNAVAILABLE); retry later."""

    def __init__(self, model: str, reason: str, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.model, self.kind, self.reason = model, reason, message
        self.retry_after = max(1, math.ceil(retry_after_s))  # HTTP's Retry-After counts whole seconds

    def __str__(self) -> str:
        return self.reason


def queue_full(model: str, limit: int) -> ServerBusy:
    _count_rejection(model, "queue_full")
    return ServerBusy(model, "queue_full", f"model {model} is busy: {limit} requests are already waiting "
                      f"(server option --max-queue); retry after a short wait")


def past_deadline(model: str, waited_s: float, timeout_s: float, expected: bool = False) -> ServerBusy:
    """``waited_s``: how long the request waited, or with ``expected`` how long it would have to."""
    _count_rejection(model, "deadline")
    wait = f"would wait about {waited_s * 1000:.0f} ms" if expected else f"waited {waited_s * 1000:.0f} ms"
    return ServerBusy(model, "deadline", f"model {model} is busy: the request {wait} in the queue, longer than its "
                      f"deadline of {timeout_s * 1000:.0f} ms (server option --queue-timeout-ms); it was not run",
                      retry_after_s=waited_s)


def check_limits(max_queue: int, queue_timeout_ms: float) -> None:
    if max_queue < 0:
        raise ValueError(f"max_queue must be >= 0 (0 = unbounded), got {max_queue}")
    if queue_timeout_ms < 0:
        raise ValueError(f"queue_timeout_ms must be >= 0 (0 = no deadline), got {queue_timeout_ms}")
