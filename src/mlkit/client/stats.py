"""Honest streaming statistics: what was completed, how late, and what was lost.

- **End-to-end FPS** counts frames whose result came back, per second of wall time since the first frame
  was captured, overall and over a sliding window. (The TorchServe example prints its *send* rate as
  "FPS"; here the send rate is shown separately and never called FPS.)
- **Latency** runs from capture (the frame leaving the decoder) to its result being in hand, so it includes
  client-side queueing, encoding, the network, server queueing and inference.
- **Dropped** frames are those a live source threw away because the consumer was behind.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import time
from collections.abc import Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class StatsSnapshot:
    """The figures at one moment. Rates are frames per second; latencies are milliseconds."""

    elapsed: float
    completed: int
    sent: int
    failed: int
    dropped: int
    fps: float
    window_fps: float
    send_rate: float
    p50_ms: float
    p95_ms: float
    p99_ms: float

    def line(self) -> str:
        return (f"[{self.elapsed:6.1f}s] {self.completed} frames | end-to-end {self.fps:.1f} FPS "
                f"(last window {self.window_fps:.1f}) | sent {self.send_rate:.1f}/s | latency p50 {self.p50_ms:.0f} "
                f"p95 {self.p95_ms:.0f} p99 {self.p99_ms:.0f} ms | dropped {self.dropped}"
                + (f" | failed {self.failed}" if self.failed else ""))

    def short(self) -> str:
        """For a progress-bar postfix."""
        return (f"{self.fps:.1f} FPS (window {self.window_fps:.1f}), p95 {self.p95_ms:.0f} ms, "
                f"dropped {self.dropped}")

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in dataclasses.asdict(self).items()}


class StreamStats:
    """Counters fed by the streamer; :meth:`snapshot` turns them into figures (thread-compatible reads)."""

    def __init__(self, window: float = 5.0, clock: Callable[[], float] = time.perf_counter) -> None:
        if window <= 0:
            raise ValueError(f"window must be > 0, got {window}")
        self.window, self.clock = window, clock
        self.start: float | None = None
        self.last_done: float | None = None
        self.last_sent: float | None = None
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self.latencies: list[float] = []  # seconds, one per completed frame
        self._recent: collections.deque[float] = collections.deque()  # completion times within the window

    def begin(self, at: float | None = None) -> None:
        """Start the clock (at the first frame's capture time, so start-up waiting is not hidden)."""
        if self.start is None:
            self.start = self.clock() if at is None else at

    def on_sent(self, frames: int, at: float | None = None) -> None:
        self.sent += frames
        self.last_sent = self.clock() if at is None else at

    def on_failed(self, frames: int) -> None:
        self.failed += frames

    def on_result(self, captured: float, done: float | None = None) -> None:
        done = self.clock() if done is None else done
        self.begin(captured)
        self.latencies.append(done - captured)
        self.last_done = done
        self._recent.append(done)

    @property
    def completed(self) -> int:
        return len(self.latencies)

    def snapshot(self, now: float | None = None, final: bool = False) -> StatsSnapshot:
        """Figures as of ``now``; ``final=True`` measures up to the last result (the run is over)."""
        now = self.clock() if now is None else now
        if final and self.last_done is not None:
            now = self.last_done
        elapsed = max(now - self.start, 1e-9) if self.start is not None else 0.0
        while self._recent and self._recent[0] <= now - self.window:  # the window is (now - window, now]
            self._recent.popleft()
        span = min(self.window, elapsed) if elapsed else 0.0
        # the send rate is over the time spent sending: a client that sends everything at once shows it
        sending = max(self.last_sent - self.start, 1e-9) if self.start is not None and self.last_sent else 0.0
        if self.latencies:
            p50, p95, p99 = (1000 * float(v) for v in np.percentile(np.asarray(self.latencies), [50, 95, 99]))
        else:
            p50 = p95 = p99 = float("nan")
        return StatsSnapshot(
            elapsed=elapsed, completed=self.completed, sent=self.sent, failed=self.failed, dropped=self.dropped,
            fps=self.completed / elapsed if elapsed else 0.0,
            window_fps=len(self._recent) / span if span else 0.0,
            send_rate=self.sent / sending if sending else 0.0,
            p50_ms=p50, p95_ms=p95, p99_ms=p99)


class Reporter:
    """Prints a stats line every ``interval`` seconds; with a known frame count, a tqdm bar instead."""

    def __init__(self, stats: StreamStats, *, total: int | None = None, interval: float = 2.0,
                 echo: Callable[[str], None] | None = print, progress: bool = True, desc: str = "stream") -> None:
        self.stats, self.interval, self.echo = stats, interval, echo
        self._next = stats.clock() + interval
        self._bar = None
        if progress and total:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit="frame", dynamic_ncols=True)

    def update(self, frames: int = 0) -> None:
        """Call after each result (``frames`` newly completed or failed); prints when an interval has passed."""
        if self._bar is not None and frames:
            self._bar.update(frames)
        now = self.stats.clock()
        if now < self._next:
            return
        self._next = now + self.interval
        snap = self.stats.snapshot(now)
        if self._bar is not None:
            self._bar.set_postfix_str(snap.short(), refresh=True)
        elif self.echo is not None:
            self.echo(snap.line())

    def close(self) -> StatsSnapshot:
        """Close the bar and return the final figures (not printed: the caller decides)."""
        snap = self.stats.snapshot(final=True)
        if self._bar is not None:
            self._bar.set_postfix_str(snap.short(), refresh=False)
            self._bar.close()
        return snap
