"""`mlkit incremental status` prints the state like kubectl get; a bad job is a one-line usage error."""

from __future__ import annotations

from click.testing import CliRunner
from il_helpers import FakeClock, FakeRounds, add_samples, write_job

from mlkit.cli import main


def test_status_table_after_rounds(tmp_path, tiny_model, monkeypatch):
    from mlkit.incremental.controller import Controller, InProcessRunner
    from mlkit.incremental.spec import load_job

    monkeypatch.setenv("MLKIT_STATE_DIR", str(tmp_path / "state"))
    job = write_job(tmp_path, tiny_model, name="helmet-il", min_samples=2, deploy_threshold=0.05)
    fake = FakeRounds([0.1, 0.01])
    c = Controller(load_job(job), runner=InProcessRunner(train_fn=fake.train, evaluate_fn=fake.evaluate),
                   clock=FakeClock(), echo=lambda m: None, prepare=lambda *a: {"new": 2, "replay": 0, "eval": 1})
    c.setup()
    for r in range(2):
        add_samples(tmp_path / "dataset", 2, start=10 * r)
        c.poll_once()
    add_samples(tmp_path / "dataset", 1, start=50)
    c.poll_once()
    result = CliRunner().invoke(main, ["incremental", "status", "helmet-il", "--rounds"])
    assert result.exit_code == 0, result.output
    header, row = result.output.splitlines()[:2]
    assert header.split()[:8] == ["NAME", "PHASE", "ROUND", "SAMPLES", "DEPLOYED", "LAST-ROUND", "MAP50", "MAP-DELTA"]
    assert row.split()[:8] == ["helmet-il", "Waiting", "2", "1", "v2", "kept", "0.610", "+0.010"]
    assert "round 1: 2 samples, deployed v2" in result.output and "round 2: 2 samples, kept" in result.output
    assert "num_of_samples >= 2 does not hold (num_of_samples = 1)" in result.output


def test_unknown_job_and_bad_spec_are_usage_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("MLKIT_STATE_DIR", str(tmp_path / "state"))
    result = CliRunner().invoke(main, ["incremental", "status", "nope"])
    assert result.exit_code == 2 and "no incremental learning job named 'nope'" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: IncrementalLearningJob\nmetadata: {name: x}\nspec: {outputDir: o}\n")
    result = CliRunner().invoke(main, ["incremental", "run", str(bad)])
    assert result.exit_code == 2 and "spec.initialModel: Field required" in result.output
    assert "Traceback" not in result.output
