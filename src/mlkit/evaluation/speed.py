"""Wall-clock throughput of a per-input function."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mlkit.errors import MlkitError


def measure_throughput(
    fn: Callable[[Any], Any],
    inputs: Sequence[Any],
    warmup: int = 3,
    min_seconds: float = 1.0,
    max_iters: int = 1000,
) -> dict:
    """Time ``fn(x)`` for inputs ``x`` taken cyclically from ``inputs``.

    First ``warmup`` untimed calls, then timed calls (``time.perf_counter`` around each call)
    until the timed total reaches ``min_seconds`` or ``max_iters`` calls were made (at least one).
    Each call is counted as one image.

    Returns ``{"images_per_second", "ms_per_image_mean", "ms_per_image_p50",
    "ms_per_image_p95", "iterations", "seconds"}`` where ``seconds`` is the timed total.
    """
    if len(inputs) == 0:
        raise MlkitError("measure_throughput needs at least one input")
    if warmup < 0 or max_iters < 1:
        raise MlkitError(f"need warmup >= 0 and max_iters >= 1, got warmup={warmup}, max_iters={max_iters}")
    source = itertools.cycle(inputs)
    for _ in range(warmup):
        fn(next(source))
    times: list[float] = []
    total = 0.0
    while len(times) < max_iters and (not times or total < min_seconds):
        x = next(source)
        t0 = time.perf_counter()
        fn(x)
        dt = time.perf_counter() - t0
        times.append(dt)
        total += dt
    ms = np.asarray(times) * 1000.0
    return {
        "images_per_second": len(times) / total if total > 0 else float("inf"),
        "ms_per_image_mean": float(ms.mean()),
        "ms_per_image_p50": float(np.percentile(ms, 50)),
        "ms_per_image_p95": float(np.percentile(ms, 95)),
        "iterations": len(times),
        "seconds": total,
    }
