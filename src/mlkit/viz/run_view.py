"""``PipelineRunView``: the status of a Kubeflow Pipelines run and its metrics, for a local or a cluster run.

- **Local** (``kfp.local``): a run folder ``<pipeline_root>/<pipeline>-<timestamp>/`` holds one folder per task;
  a task that finished wrote ``executor_output.json`` (its output parameters and artifacts, Metrics artifacts
  with their figures in ``metadata``). With the pipeline's IR YAML (``pipelines/golden/<name>.yaml`` is found
  by itself in a source checkout), tasks that have not started show as "not run".
- **Cluster**: ``kfp.Client(host).get_run(run_id)``: the run's state and each task's state and error. The KFP
  API does not return artifact contents, so metrics stay in the KFP UI; the view links to it.

A refresh button reads the status again (a run in progress moves on).
"""

from __future__ import annotations

import dataclasses
import html
import json
import numbers
from pathlib import Path

from mlkit.errors import MlkitError
from mlkit.viz.widgets import Viewer

EXECUTOR_OUTPUT = "executor_output.json"
_STATE_COLOURS = {"done": "#1e8449", "succeeded": "#1e8449", "failed": "#c0392b", "incomplete": "#d68910",
                  "running": "#2e86c1", "pending": "#7f8c8d", "not run": "#7f8c8d", "skipped": "#7f8c8d"}


@dataclasses.dataclass
class TaskStatus:
    name: str
    state: str
    parameters: dict = dataclasses.field(default_factory=dict)  # output parameters
    metrics: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)  # artifact -> figures
    error: str | None = None


@dataclasses.dataclass
class RunStatus:
    name: str
    state: str
    where: str  # the run folder, or the run's URL in the KFP UI
    tasks: list[TaskStatus]
    error: str | None = None
    cluster: bool = False

    @property
    def metrics(self) -> dict[str, float]:
        """Every figure as ``task/artifact/key``."""
        return {f"{t.name}/{a}/{k}": v for t in self.tasks for a, m in t.metrics.items() for k, v in m.items()}


# ------------------------------------------------------------------------------------------------ local runs
def find_run_dir(path: str | Path) -> Path:
    """``path`` itself when it is a run folder, else its newest run folder (a pipeline root)."""
    path = Path(path)
    if not path.is_dir():
        raise MlkitError(f"no pipeline run at {path}: the folder does not exist")
    if any((d / EXECUTOR_OUTPUT).is_file() for d in path.iterdir() if d.is_dir()):
        return path
    runs = [d for d in path.iterdir() if d.is_dir() and any(t.is_dir() for t in d.iterdir())]
    if not runs:
        raise MlkitError(f"no kfp.local run in {path}: expected <pipeline>-<timestamp>/<task>/{EXECUTOR_OUTPUT}")
    return max(runs, key=lambda d: d.stat().st_mtime)


def _figures(metadata: dict) -> dict[str, float]:
    return {k: float(v) for k, v in metadata.items() if isinstance(v, numbers.Real) and not isinstance(v, bool)}


def _read_task(folder: Path) -> TaskStatus:
    out = folder / EXECUTOR_OUTPUT
    if not out.is_file():
        return TaskStatus(folder.name, "incomplete")
    try:
        data = json.loads(out.read_text())
    except json.JSONDecodeError as exc:
        return TaskStatus(folder.name, "incomplete", error=f"{out}: invalid JSON ({exc.msg})")
    metrics = {}
    for name, group in (data.get("artifacts") or {}).items():
        for art in group.get("artifacts", []):
            figures = _figures(art.get("metadata") or {})
            # Metrics artifacts carry only numbers; a model's metadata (framework, input size...) does not.
            if figures and len(figures) == len(art.get("metadata") or {}):
                metrics[art.get("name") or name] = figures
    return TaskStatus(folder.name, "done", dict(data.get("parameterValues") or {}), metrics)


def expected_tasks(pipeline_spec: str | Path) -> dict[str, bool]:
    """``{task: conditional}`` for the container tasks of a compiled pipeline (IR YAML)."""
    import yaml

    spec = yaml.safe_load(Path(pipeline_spec).read_text())
    components = spec.get("components", {})
    out: dict[str, bool] = {}

    def walk(tasks: dict, conditional: bool) -> None:
        for name, task in tasks.items():
            comp = components.get(task.get("componentRef", {}).get("name", ""), {})
            cond = conditional or "triggerPolicy" in task or name.startswith("condition")
            if "dag" in comp:
                walk(comp["dag"].get("tasks", {}), cond)
            elif comp.get("executorLabel") and "importer" not in name:
                out[name] = cond

    walk(spec["root"]["dag"]["tasks"], False)
    return out


def _golden_for(pipeline: str) -> Path | None:
    """The pipeline's IR YAML as installed with mlkit (``mlkit.pipelines``' golden files), if it has one."""
    from importlib.resources import files

    path = Path(str(files("mlkit.pipelines"))) / "golden" / f"{pipeline.replace('-', '_')}.yaml"
    return path if path.is_file() else None


def local_run_status(path: str | Path, pipeline_spec: str | Path | None = None) -> RunStatus:
    """Status of a ``kfp.local`` run folder (or the newest run under a pipeline root)."""
    run = find_run_dir(path)
    pipeline = run.name.split("-20")[0]  # <pipeline>-<YYYY-mm-dd-...>
    tasks = {d.name: _read_task(d) for d in sorted(run.iterdir()) if d.is_dir()}
    spec = Path(pipeline_spec) if pipeline_spec is not None else _golden_for(pipeline)
    conditional: dict[str, bool] = {}
    if spec is not None:
        conditional = expected_tasks(spec)
        for name, cond in conditional.items():
            tasks.setdefault(name, TaskStatus(name, "not run", error="conditional: may be skipped" if cond else None))
    states = [t.state for t in tasks.values() if not conditional.get(t.name, False) or t.state != "not run"]
    if not tasks:
        state = "pending"
    elif all(s == "done" for s in states):
        state = "succeeded"
    elif any(s == "incomplete" for s in states):
        state = "incomplete"  # running, or stopped by a failure (kfp.local printed its log)
    else:
        state = "running"
    return RunStatus(pipeline, state, str(run), list(tasks.values()))


# ---------------------------------------------------------------------------------------------- cluster runs
def cluster_run_status(client, run_id: str) -> RunStatus:
    """Status of a run on a Kubeflow cluster through ``client`` (a ``kfp.Client``)."""
    run = client.get_run(run_id)
    tasks = []
    details = getattr(run, "run_details", None)
    for t in (getattr(details, "task_details", None) or []):
        err = getattr(t, "error", None)
        tasks.append(TaskStatus(t.display_name or t.task_id, str(t.state or "pending").lower(),
                                error=getattr(err, "message", None) if err is not None else None))
    host = getattr(getattr(client, "_existing_config", None), "host", "") or ""
    err = getattr(run, "error", None)
    return RunStatus(run.display_name or run_id, str(run.state or "pending").lower(),
                     f"{host.rstrip('/')}/#/runs/details/{run_id}", tasks,
                     getattr(err, "message", None) if err is not None else None, cluster=True)


# ------------------------------------------------------------------------------------------------ the widget
def _badge(state: str) -> str:
    colour = _STATE_COLOURS.get(state.split()[0] if state else "", "#7f8c8d")
    return (f'<span style="background:{colour};color:white;border-radius:3px;padding:0 5px">'
            f"{html.escape(state)}</span>")


_TABLE = "<table style='border-collapse:collapse;margin:2px 0 8px 0'>"
_CELL = "style='padding:1px 12px 1px 0;text-align:left;vertical-align:top'"


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else html.escape(str(v))


class PipelineRunView(Viewer):
    """The status of one run; ``PipelineRunView.local(run_dir)`` or ``PipelineRunView.cluster(host, run_id)``."""

    css_class = "mlkit-run-view"

    def __init__(self, read, title: str = "pipeline run") -> None:
        super().__init__(title)
        w = self._w
        self._read = read
        self.status: RunStatus | None = None
        self.refresh_button = w.Button(description="refresh", tooltip="read the run's status again",
                                       layout=w.Layout(width="auto"))
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.header, self.tasks_table, self.metrics_table = w.HTML(), w.HTML(), w.HTML()
        self.body.children = [w.HBox([self.header, self.refresh_button]), self.tasks_table, self.metrics_table]
        self.refresh()

    @classmethod
    def local(cls, path: str | Path, pipeline_spec: str | Path | None = None) -> PipelineRunView:
        """A ``kfp.local`` run folder, or a pipeline root (its newest run)."""
        return cls(lambda: local_run_status(path, pipeline_spec), title="pipeline run (local)")

    @classmethod
    def cluster(cls, host: str | None, run_id: str, client=None) -> PipelineRunView:
        """A run on a Kubeflow cluster (``client``: a ready ``kfp.Client``, else one is made for ``host``)."""
        def read() -> RunStatus:
            nonlocal client
            if client is None:
                import kfp

                client = kfp.Client(host=host)
            return cluster_run_status(client, run_id)

        return cls(read, title="pipeline run (cluster)")

    def refresh(self) -> None:
        try:
            status = self._read()
        except MlkitError as exc:
            self.status = None
            self.show_message(str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - a cluster client raises many kinds (HTTP, auth, DNS): say which
            self.status = None
            self.show_message(f"cannot read the run: {type(exc).__name__}: {exc}")
            return
        self.show_message(status.error or "", "error")
        self.status = status
        done = sum(t.state in ("done", "succeeded") for t in status.tasks)
        self.header.value = (f"<b>{html.escape(status.name)}</b> {_badge(status.state)} · {done} of "
                             f"{len(status.tasks)} tasks done · <code>{html.escape(status.where)}</code>")
        rows = "".join(
            f"<tr><td {_CELL}>{html.escape(t.name)}</td><td {_CELL}>{_badge(t.state)}</td><td {_CELL}>"
            + ", ".join(f"{html.escape(k)} = {_fmt(v)}" for k, v in t.parameters.items())
            + (f" <i>{html.escape(t.error)}</i>" if t.error else "") + "</td></tr>"
            for t in status.tasks)
        self.tasks_table.value = (f"{_TABLE}<tr><th {_CELL}>task</th><th {_CELL}>state</th><th {_CELL}>outputs</th>"
                                  f"</tr>{rows}</table>")
        metric_rows = "".join(
            f"<tr><td {_CELL}>{html.escape(t.name)}</td><td {_CELL}>{html.escape(a)}</td><td {_CELL}>"
            + " · ".join(f"{html.escape(k)} <b>{_fmt(v)}</b>" for k, v in m.items()) + "</td></tr>"
            for t in status.tasks for a, m in t.metrics.items())
        self.metrics_table.value = (
            f"<b>metrics</b>{_TABLE}<tr><th {_CELL}>task</th><th {_CELL}>artifact</th><th {_CELL}>figures</th></tr>"
            f"{metric_rows}</table>" if metric_rows else
            "<i>no metrics yet</i>" if not status.cluster else
            f"<i>metrics: open the run in the KFP UI, {html.escape(status.where)}</i>")


__all__ = ["PipelineRunView", "RunStatus", "TaskStatus", "cluster_run_status", "local_run_status"]
