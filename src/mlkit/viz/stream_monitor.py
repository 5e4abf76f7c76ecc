"""``StreamMonitor``: a live chart of end-to-end FPS and latency while ``mlkit.client.stream.run_stream`` runs.

It counts what the stream delivers (``on_result`` is called in frame order with each result), with the same
honest definitions as ``mlkit.client.stats``: FPS counts completed frames, latency runs from capture to
result. The chart is redrawn at most every ``refresh`` seconds, from the stream's worker thread, so the
notebook cell that runs the stream shows it moving.

```python
monitor = StreamMonitor()
display(monitor)
result = monitor.run(open_source("clip.avi", realtime=True), StreamConfig(url, "little"))
```
"""

from __future__ import annotations

import threading
import time

from mlkit.client.stats import StatsSnapshot, StreamStats
from mlkit.errors import MlkitError
from mlkit.viz.widgets import Viewer, png_bytes


class StreamMonitor(Viewer):
    """Live FPS / latency chart; feed it with ``on_result`` or let ``run`` stream for you."""

    css_class = "mlkit-stream-monitor"

    def __init__(self, title: str = "stream monitor", *, window: float = 2.0, refresh: float = 0.5,
                 size: tuple[int, int] = (760, 260)) -> None:
        super().__init__(title)
        if window <= 0 or refresh < 0:
            raise MlkitError(f"window must be > 0 and refresh >= 0, got {window}, {refresh}")
        w = self._w
        self.window, self.refresh, self.size = window, refresh, size
        self.stats = StreamStats(window=window)
        self.series: list[StatsSnapshot] = []  # one point per redraw
        self.last_frame: int | None = None
        self.result = None
        self._lock = threading.Lock()
        self._next = 0.0
        self.line = w.HTML("waiting for the first result ...")
        self.chart = w.Image(format="png", layout=w.Layout(max_width="100%", align_self="flex-start"))
        self.chart.add_class("mlkit-image")
        self.body.children = [self.line, self.chart]

    def on_result(self, frame, detections) -> None:
        """The streamer's ``on_result(frame, detections)`` callback (any thread)."""
        with self._lock:
            self.stats.on_result(frame.captured)
            self.last_frame = frame.index
            now = time.perf_counter()
            if now < self._next:
                return
            self._next = now + self.refresh
            self.series.append(self.stats.snapshot(now))
        self.draw()

    def draw(self) -> None:
        """Redraw the chart and the figures line from what was counted so far."""
        with self._lock:
            series = list(self.series)
        if not series:
            return
        last = series[-1]
        self.line.value = (f"{last.completed} frames · {last.fps:.1f} FPS overall, {last.window_fps:.1f} in the last "
                           f"{self.window:g} s · latency p50 {last.p50_ms:.0f} ms, p95 {last.p95_ms:.0f} ms"
                           + (f" · frame {self.last_frame}" if self.last_frame is not None else ""))
        self.chart.value = png_bytes(self._plot(series))

    def _plot(self, series: list[StatsSnapshot]):
        # A bare Figure (no pyplot): drawing from the stream's thread must not touch pyplot's global state.
        import numpy as np
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        t = [s.elapsed for s in series]
        fig = Figure(figsize=(self.size[0] / 100, self.size[1] / 100), dpi=100)
        canvas = FigureCanvasAgg(fig)
        ax_fps, ax_lat = fig.subplots(1, 2)
        ax_fps.plot(t, [s.window_fps for s in series], marker=".", label=f"last {self.window:g} s")
        ax_fps.plot(t, [s.fps for s in series], linestyle="--", label="overall")
        ax_fps.set_ylabel("end-to-end FPS")
        ax_lat.plot(t, [s.p50_ms for s in series], marker=".", label="p50")
        ax_lat.plot(t, [s.p95_ms for s in series], marker=".", label="p95")
        ax_lat.set_ylabel("latency, capture to result (ms)")
        for ax in (ax_fps, ax_lat):
            ax.set_xlabel("seconds since the first frame")
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()

    def finish(self, result=None) -> None:
        """The stream ended: add the final point (from the stream's own figures when ``result`` is given)."""
        with self._lock:
            if self.stats.completed:
                self.series.append(self.stats.snapshot(final=True))
            self.result = result
        if not self.series:
            self.show_message("the stream delivered no results", "warning")
            return
        self.draw()
        if result is not None:
            self.line.value = f"done: {result.stats.line()}<br><small>{result.end}</small>"

    def run(self, source, config, **kw):
        """``run_stream(source, config, on_result=self.on_result, ...)``; returns its result, or None with the
        reason shown in the widget when the server is unreachable or a request fails."""
        from mlkit.client.stream import StreamError, run_stream

        kw.setdefault("progress", False)
        kw.setdefault("echo", None)
        try:
            result = run_stream(source, config, on_result=self.on_result, **kw)
        except StreamError as exc:
            self.finish(exc.result)
            self.show_message(str(exc))
            return None
        except MlkitError as exc:
            self.finish()
            self.show_message(str(exc))
            return None
        self.finish(result)
        return result


__all__ = ["StreamMonitor"]
