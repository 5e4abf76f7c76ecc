"""runlog: a long run's output goes to a file, one progress line per finished KFP task goes to the console."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from mlkit.runlog import TaskProgress, artifact_metadata, captured_output


def test_everything_printed_goes_to_the_log_and_say_reaches_the_console(tmp_path, capfd):
    log = tmp_path / "run.log"
    seen = []
    with captured_output(log) as capture:
        capture.on_line = seen.append
        print("from python")
        print("to stderr", file=sys.stderr)
        os.write(1, b"from C level\n")
        subprocess.run([sys.executable, "-c", "print('from a child')"], check=True)
        capture.say("progress line")
    out, err = capfd.readouterr()
    assert out == "progress line\n" and err == ""
    text = log.read_text()
    for line in ("from python", "to stderr", "from C level", "from a child"):
        assert line in text
    assert seen == ["from python", "to stderr"]  # Python-level lines reach the callback
    print("after")  # the streams are restored
    assert capfd.readouterr().out == "after\n"


def test_task_progress_reports_finished_tasks_by_display_name(tmp_path):
    output = tmp_path / "train-2" / "executor_output.json"
    output.parent.mkdir()
    output.write_text(json.dumps({"artifacts": {"metrics": {"artifacts": [{"metadata": {"map50": 0.5}}]}}}))
    console = []

    def figure(name, outputs):
        return None if name == "importer" else f"mAP {artifact_metadata(outputs, 'metrics').get('map50')}"

    progress = TaskProgress(console.append, {"train-2": "train-big"}, figure)
    for line in ["14:00:00.0 - INFO - Executing task \x1b[96m'train-2'\x1b[0m",
                 f"    [KFP Executor INFO]: Wrote executor output file to {output}.",
                 "14:00:09.0 - INFO - Task \x1b[96m'train-2'\x1b[0m finished with status \x1b[92mSUCCESS\x1b[0m",
                 "Executing task 'importer'", "Task 'importer' finished with status SUCCESS",
                 "Executing task 'evaluate'", "Task 'evaluate' finished with status FAILURE"]:
        progress(line)
    assert len(console) == 2
    assert console[0].split() == ["train-big", console[0].split()[1], "s", "mAP", "0.5"]
    assert console[1].split()[0] == "evaluate" and console[1].endswith("FAILURE")
    assert progress.failed == ["evaluate"]
    assert artifact_metadata({}, "metrics") == {}
