"""Stream one video file through local servers over several batch sizes and modes (notebook 02, benchmark).

Each point gets the server it should have: in ``server`` (and ``unbounded``) mode the server batches up to
the point's batch size; in ``client`` mode the server does not batch (``max_batch_size=1``), so a request's
frames are exactly the batch. Points that need the same server share one; every server is stopped at the end.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

from mlkit.client.stream import MODES, StreamConfig, queue_size_for, run_stream
from mlkit.errors import MlkitError
from mlkit.serving.options import DEFAULT_MAX_LATENCY_MS, DEFAULT_THREADS


@dataclasses.dataclass(frozen=True)
class SweepRow:
    """One streamed point: end-to-end figures of the whole file (rates in frames/s, latencies in ms)."""

    mode: str
    batch_size: int
    server_max_batch: int
    in_flight: int | None
    frames: int
    fps: float
    send_rate: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    dropped: int


def server_batch(mode: str, batch_size: int) -> int:
    """The ``max_batch_size`` of the server a point runs against."""
    return 1 if mode == "client" else batch_size


def sweep(video: Path | str, repo: Path | str, model: str, *, batch_sizes: Sequence[int] = (1, 2, 4, 8),
          modes: Sequence[str] = ("server", "client"), protocol: str = "v2", encoding: str = "jpeg",
          realtime: bool = False,
          max_latency_ms: float = DEFAULT_MAX_LATENCY_MS, threads: int = DEFAULT_THREADS, timeout: float = 60.0,
          echo: Callable[[str], None] | None = print,
          on_server: Callable[[object, int], None] | None = None) -> list[SweepRow]:
    """Stream ``video`` once per (mode, batch size); returns the rows in (mode, batch size) order.

    ``on_server(handle, max_batch_size)`` runs after each server starts (the benchmark measures the server's
    own capacity there). Frames are read as fast as they decode unless ``realtime``.
    """
    from mlkit.client.http import ServingClient
    from mlkit.client.video import open_source
    from mlkit.serving.server import start_background_server

    bad = [m for m in modes if m not in MODES]
    if bad or not batch_sizes:
        raise MlkitError(f"modes must be among {MODES} and batch_sizes not empty; got {list(modes)}, "
                         f"{list(batch_sizes)}")
    points = [(m, int(b)) for m in modes for b in batch_sizes]
    rows: dict[tuple[str, int], SweepRow] = {}
    for max_batch in sorted({server_batch(m, b) for m, b in points}):
        with start_background_server(repo, max_batch_size=max_batch, max_latency_ms=max_latency_ms,
                                     num_threads=threads) as srv:
            with ServingClient(srv.url, model, protocol=protocol, encoding=encoding) as warm, \
                    open_source(video) as src:
                first = next(iter(src))
                for n in sorted({1, max_batch}):  # the interpreter resizes for a new batch size once
                    warm.predict([first.image] * n)
            if on_server is not None:
                on_server(srv, max_batch)
            for mode, b in points:
                if server_batch(mode, b) != max_batch:
                    continue
                cfg = StreamConfig(srv.url, model, mode=mode, batch_size=b, protocol=protocol, encoding=encoding,
                                   timeout=timeout)
                src = open_source(video, realtime=realtime, queue_size=queue_size_for(cfg))
                res = run_stream(src, cfg, echo=None, progress=False)
                s = res.stats
                rows[(mode, b)] = SweepRow(mode, b, max_batch, cfg.in_flight, s.completed, s.fps, s.send_rate,
                                           s.p50_ms, s.p95_ms, s.p99_ms, s.dropped)
                if echo is not None:
                    echo(f"{mode:<9} batch {b:<2} {s.line()}")
    return [rows[p] for p in points]


def format_rows(rows: Sequence[SweepRow], capacity: float | None = None) -> str:
    """A plain-text table; with ``capacity`` (frames/s the server can do) a column of FPS / capacity."""
    head = (f"{'mode':<9} {'batch':>5} {'srv max':>7} {'in flight':>9} {'frames':>6} {'e2e FPS':>8} {'sent/s':>7} "
            f"{'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7}" + (f" {'FPS/cap':>7}" if capacity else ""))
    lines = [head]
    for r in rows:
        flight = "-" if r.in_flight is None else str(r.in_flight)
        line = (f"{r.mode:<9} {r.batch_size:>5} {r.server_max_batch:>7} {flight:>9} {r.frames:>6} {r.fps:8.1f} "
                f"{r.send_rate:7.1f} {r.p50_ms:7.0f} {r.p95_ms:7.0f} {r.p99_ms:7.0f}")
        lines.append(line + (f" {r.fps / capacity:7.2f}" if capacity else ""))
    return "\n".join(lines)
