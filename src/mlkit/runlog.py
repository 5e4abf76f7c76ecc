"""Long runs, quietly: every log line goes to a file, and the console gets one line per finished KFP task.

kfp.local prints each task's streamed log, its outputs and its status to ``sys.stdout``; TensorFlow and
TFLite write to the file descriptors directly. ``captured_output`` sends all of it to a log file and hands
each Python-level line to a callback; ``TaskProgress`` is such a callback that reports each task when
kfp.local says it finished::

    with captured_output("run.log") as capture:
        capture.on_line = TaskProgress(capture.say, task_display_names(pipeline), figure)
        run_the_pipeline()
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STARTED = re.compile(r"Executing task '([^']+)'")
_FINISHED = re.compile(r"Task '([^']+)' finished with status (\w+)")
_EXECUTOR_OUTPUT = re.compile(r"Wrote executor output file to (\S+executor_output\.json)")


class Capture:
    """What ``captured_output`` yields: ``console``, a stream to the real console, and ``on_line``, the
    callback that gets each line printed from Python (settable; by default it ignores them)."""

    def __init__(self, console: TextIO) -> None:
        self.console = console
        self.on_line: Callable[[str], None] = lambda line: None

    def say(self, text: str = "") -> None:
        """Print one line on the real console."""
        self.console.write(text + "\n")


class _LineTee:
    """A text stream that appends to ``log`` and hands each complete line to ``capture.on_line``."""

    def __init__(self, log: TextIO, capture: Capture) -> None:
        self._log, self._capture, self._partial = log, capture, ""

    def write(self, text: str) -> int:
        self._log.write(text)
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            self._capture.on_line(line)
        return len(text)

    def flush(self) -> None:
        self._log.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:  # C-level writers and subprocesses inherit the log file
        return self._log.fileno()


@contextlib.contextmanager
def captured_output(log_path: str | Path) -> Iterator[Capture]:
    """Send everything this process and its children print (Python and C level) to ``log_path``.

    Yields a ``Capture``: its ``say`` prints on the real console, and each line printed from Python is also
    handed to its ``on_line``.
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    with open(log_path, "a", buffering=1) as log:
        saved = os.dup(1), os.dup(2)
        capture = Capture(os.fdopen(os.dup(saved[0]), "w", buffering=1))
        streams = sys.stdout, sys.stderr
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        sys.stdout = sys.stderr = _LineTee(log, capture)
        try:
            yield capture
        finally:
            sys.stdout, sys.stderr = streams
            log.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            capture.console.close()


def task_display_names(pipeline: Any) -> dict[str, str]:
    """Task key -> display name for every task of a compiled ``@dsl.pipeline`` (nested pipelines included).

    kfp.local logs task keys ("train-2"); the display names ("train-big") say what they are.
    """
    spec = pipeline.pipeline_spec
    names: dict[str, str] = {}
    dags = [spec.root.dag, *(c.dag for c in spec.components.values() if c.HasField("dag"))]
    for dag in dags:
        for key, task in dag.tasks.items():
            names[key] = task.task_info.name or key
    return names


class TaskProgress:
    """A ``captured_output`` callback: one console line per finished task, with its time and key figure.

    ``figure(display_name, executor_output)`` returns the figure to show (or "" for none, None to skip the
    task); ``executor_output`` is the task's parsed executor_output.json ({} if it wrote none).
    """

    def __init__(self, console: Callable[[str], None], display_names: dict[str, str],
                 figure: Callable[[str, dict], str | None]) -> None:
        self.console, self.display_names, self.figure = console, display_names, figure
        self._started: dict[str, float] = {}
        self._output: Path | None = None
        self.failed: list[str] = []

    def __call__(self, line: str) -> None:
        line = _ANSI.sub("", line)
        if m := _STARTED.search(line):
            self._started[m.group(1)] = time.monotonic()
            self._output = None
        elif m := _EXECUTOR_OUTPUT.search(line):
            self._output = Path(m.group(1))
        elif m := _FINISHED.search(line):
            self._finished(m.group(1), m.group(2))

    def _finished(self, key: str, status: str) -> None:
        seconds = time.monotonic() - self._started.pop(key, time.monotonic())
        name = self.display_names.get(key, key)
        outputs = {}
        if self._output is not None and self._output.is_file():
            with contextlib.suppress(OSError, ValueError):
                outputs = json.loads(self._output.read_text())
        if status != "SUCCESS":
            self.failed.append(name)
            self.console(f"  {name:<18} {seconds:6.1f} s  {status}")
            return
        text = self.figure(name, outputs)
        if text is not None:
            self.console(f"  {name:<18} {seconds:6.1f} s  {text}")


def artifact_metadata(outputs: dict, name: str) -> dict:
    """The metadata of output artifact ``name`` in a parsed executor_output.json ({} if absent)."""
    artifacts = outputs.get("artifacts", {}).get(name, {}).get("artifacts", [])
    return dict(artifacts[0].get("metadata", {})) if artifacts else {}
