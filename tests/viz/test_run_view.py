"""PipelineRunView: a real kfp.local run of a two-task pipeline, the golden IR's task list, a cluster run as the
KFP API returns it, and messages for what cannot be read."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_local_run_status_and_metrics(local_run):
    from mlkit.viz import PipelineRunView

    view = PipelineRunView.local(local_run)  # the pipeline root: its newest run is read
    s = view.status
    assert view.message == "" and s.state == "succeeded" and s.name == "viz-check"
    assert {t.name: t.state for t in s.tasks} == {"measure": "done", "report": "done"}
    assert s.metrics == {"measure/metrics/map50": 0.75, "measure/metrics/images_per_second": 120.0}
    report = next(t for t in s.tasks if t.name == "report")
    assert report.parameters == {"Output": "mAP 0.75"}
    assert "succeeded" in view.header.value and "2 of 2 tasks done" in view.header.value
    assert "map50 <b>0.75</b>" in view.metrics_table.value and "mAP 0.75" in view.tasks_table.value


def test_a_task_that_did_not_finish_and_tasks_from_the_ir(local_run, tmp_path):
    import shutil

    from mlkit.viz import PipelineRunView
    from mlkit.viz.run_view import expected_tasks

    run = tmp_path / "object-detection-2026-01-01-00-00-00-000000"
    shutil.copytree(next(d for d in local_run.iterdir() if d.is_dir()) / "measure", run / "train")
    (run / "convert").mkdir()  # started, no executor_output.json: running or failed
    spec = ROOT / "pipelines" / "golden" / "object_detection.yaml"
    tasks = expected_tasks(spec)
    assert {"train", "train-2", "convert", "evaluate", "publish", "serve", "generate-dataset"} <= set(tasks)
    assert tasks["serve"] and tasks["generate-dataset"] and not tasks["train"]  # behind a dsl.If / dsl.Elif
    view = PipelineRunView.local(run, pipeline_spec=spec)
    states = {t.name: t.state for t in view.status.tasks}
    assert states["train"] == "done" and states["convert"] == "incomplete" and states["evaluate-2"] == "not run"
    assert view.status.state == "incomplete" and "incomplete" in view.header.value


def test_cluster_run_from_the_kfp_api_types():
    from kfp_server_api import models as m

    from mlkit.viz import PipelineRunView

    class FakeClient:  # kfp.Client's get_run, answering what a KFP backend answers
        def __init__(self):
            self.asked = []

        def get_run(self, run_id):
            self.asked.append(run_id)
            tasks = [m.V2beta1PipelineTaskDetail(display_name="train", state="SUCCEEDED"),
                     m.V2beta1PipelineTaskDetail(display_name="evaluate", state="FAILED",
                                                 error=m.GoogleRpcStatus(message="OOMKilled"))]
            return m.V2beta1Run(run_id=run_id, display_name="object-detection run", state="FAILED",
                                error=m.GoogleRpcStatus(message="task evaluate failed"),
                                run_details=m.V2beta1RunDetails(task_details=tasks))

    client = FakeClient()
    view = PipelineRunView.cluster("https://kfp.example", "run-123", client=client)
    assert client.asked == ["run-123"] and view.status.state == "failed"
    assert [(t.name, t.state, t.error) for t in view.status.tasks] == [("train", "succeeded", None),
                                                                       ("evaluate", "failed", "OOMKilled")]
    assert view.message == "task evaluate failed" and "KFP UI" in view.metrics_table.value
    view.refresh()
    assert client.asked == ["run-123", "run-123"]


def test_unreadable_runs_give_a_message(tmp_path):
    from mlkit.viz import PipelineRunView

    assert "does not exist" in PipelineRunView.local(tmp_path / "nowhere").message
    assert "no kfp.local run" in PipelineRunView.local(tmp_path).message

    class Down:
        def get_run(self, run_id):
            raise ConnectionError("Connection refused")

    view = PipelineRunView.cluster("http://127.0.0.1:1", "r", client=Down())
    assert view.status is None and "ConnectionError: Connection refused" in view.message
    bad = tmp_path / "run-x" / "task"
    bad.mkdir(parents=True)
    (bad / "executor_output.json").write_text("{not json")
    view = PipelineRunView.local(tmp_path / "run-x")
    assert view.status.tasks[0].state == "incomplete" and "invalid JSON" in view.status.tasks[0].error
