"""The controller: checkPeriodSeconds honoured, the timer respected, rounds 2 and 3 redeploy exactly when
their condition holds, and a controller killed mid-round resumes on the same samples."""

from __future__ import annotations

import json

import pytest
from il_helpers import Crash, FakeClock, FakeRounds, add_samples, write_job

from mlkit.incremental import promotion
from mlkit.incremental.controller import Controller, InProcessRunner
from mlkit.incremental.spec import load_job
from mlkit.incremental.state import find_state, load_state


class RecordingPrepare:
    """Stands in for prepare_round_data (the fake trainer reads no images); records each round's cut."""

    def __init__(self) -> None:
        self.cuts: list[tuple[int, int]] = []

    def __call__(self, index_root, cut_from, cut_to, out_dir, replay_ratio, seed) -> dict:
        from mlkit.incremental.index import DatasetIndex

        self.cuts.append((cut_from, cut_to))
        new = [e for e in DatasetIndex(index_root).entries() if cut_from < e["seq"] <= cut_to]
        return {"new": len(new), "replay": 0, "eval": 1}


def _controller(job_path, fake, clock=None, fault=None, prepare=None):
    runner = InProcessRunner(train_fn=fake.train, evaluate_fn=fake.evaluate, fault=fault)
    c = Controller(load_job(job_path), runner=runner, clock=clock or FakeClock(), echo=lambda m: None,
                   prepare=prepare or RecordingPrepare())
    c.setup()
    return c


@pytest.fixture()
def env(tmp_path, tiny_model, monkeypatch):
    monkeypatch.setenv("MLKIT_STATE_DIR", str(tmp_path / "state"))
    return tmp_path


def test_check_period_is_honoured_and_nothing_fires_below_threshold(env, tiny_model):
    job = write_job(env, tiny_model, period=37, min_samples=10)
    add_samples(env / "dataset", 3)
    clock, fake = FakeClock(), FakeRounds([])
    c = _controller(job, fake, clock)
    state = c.run(max_polls=5)
    assert clock.sleeps == [37, 37, 37, 37]  # Sedna polls every 10 s whatever the spec says
    assert state.round == 0 and state.samples == 3 and state.phase == "Waiting"
    assert "does not hold" in state.last_reason


def test_timer_window_blocks_then_allows(env, tiny_model):
    import datetime as dt

    job = write_job(env, tiny_model, period=1800, min_samples=2, timer=("23:00", "01:00"))
    add_samples(env / "dataset", 4)
    clock = FakeClock(dt.datetime(2026, 11, 22, 22, 0))
    fake = FakeRounds([0.1])
    c = _controller(job, fake, clock)
    assert c.poll_once().startswith("waiting: outside the timer window")
    clock.sleep(1800)
    assert c.poll_once().startswith("waiting: outside")  # 22:30
    clock.sleep(1800)  # 23:00: inside, wrapping past midnight
    assert "deployed as v2" in c.poll_once()


def test_rounds_redeploy_when_condition_holds_and_not_otherwise(env, tiny_model):
    job = write_job(env, tiny_model, min_samples=4, deploy_threshold=0.05)
    repo, fake = env / "serving", FakeRounds([0.1, 0.1, 0.0, 0.2])
    c = _controller(job, fake)
    assert promotion.versions(repo, "little") == [1]  # the initial model, deployed at setup
    outcomes = []
    for r in range(4):
        add_samples(env / "dataset", 4, start=10 * r)
        outcomes.append(c.poll_once())
    assert "deployed as v2" in outcomes[0]
    assert "deployed as v3" in outcomes[1]  # round 2 redeploys (Sedna's never does)
    assert "kept v3" in outcomes[2] and "does not hold" in outcomes[2]  # round 3: +0.0 is not > 0.05
    assert "deployed as v4" in outcomes[3]  # round 3 published nothing: v4 is the next version
    assert promotion.versions(repo, "little") == [1, 2, 3, 4]
    # every round trains from the model deployed at that time
    cands = [env / "output" / "rounds" / str(n) / "candidate" for n in (1, 2, 3)]
    assert fake.trained_from == [tiny_model, cands[0], cands[1], cands[1]]
    s = load_state(env / "output", "test-job")
    assert [r.deployed for r in s.rounds] == [True, True, False, True]
    assert s.deployed_version == 4 and s.deployed_model == str(env / "output" / "rounds" / "4" / "candidate")
    assert s.rounds[2].deploy_value == pytest.approx(0.0) and s.rounds[1].deltas["map_delta"][0] == pytest.approx(0.1)
    served = json.loads((repo / "little" / "4" / "promotion.json").read_text())
    assert served["round"] == 4 and served["model"] == s.deployed_model
    assert find_state("test-job").deployed_version == 4  # through the registry, as `mlkit incremental status` does


def test_restart_mid_round_resumes_on_the_same_samples(env, tiny_model):
    job = write_job(env, tiny_model, min_samples=4)
    add_samples(env / "dataset", 5)
    prepare, crashing = RecordingPrepare(), FakeRounds([0.1])

    def die(*a):
        raise Crash()

    crashing.train = die
    c = _controller(job, crashing, prepare=prepare)
    with pytest.raises(Crash):
        c.poll_once()
    s = load_state(env / "output", "test-job")
    assert (s.phase, s.round, s.round_cut, s.deployed_version) == ("Training", 1, 5, 1)
    add_samples(env / "dataset", 3, start=100)  # labelled while the controller was down

    fake = FakeRounds([0.1, 0.1])
    c2 = _controller(job, fake, prepare=prepare)
    msg = c2.poll_once()
    assert "round 1: deployed as v2" in msg
    assert prepare.cuts == [(0, 5), (0, 5)]  # the rerun used the interrupted round's samples only
    s = load_state(env / "output", "test-job")
    assert (s.phase, s.round, s.cut, s.samples, s.deployed_version) == ("Waiting", 1, 5, 3, 2)
    assert len(s.rounds) == 1
    assert c2.poll_once().startswith("waiting")  # 3 < 4 new samples
    add_samples(env / "dataset", 1, start=200)
    assert "round 2: deployed as v3" in c2.poll_once()
    assert prepare.cuts[-1] == (5, 9)


def test_a_failing_round_is_recorded_and_retried(env, tiny_model):
    job = write_job(env, tiny_model, min_samples=1)
    add_samples(env / "dataset", 2)
    fake = FakeRounds([0.1])

    def broken(*a):
        raise RuntimeError("disk full")

    good_train, fake.train = fake.train, broken
    c = _controller(job, fake)
    with pytest.raises(RuntimeError):
        c.poll_once()
    s = load_state(env / "output", "test-job")
    assert s.phase == "Failed" and "disk full" in s.last_error
    fake.train = good_train
    assert "deployed as v2" in _controller(job, fake).poll_once()
    assert load_state(env / "output", "test-job").last_error is None


def _agreement_file(store, agree: bool, since: str):
    """What the edge worker writes: a real monitor's snapshot, its window dated ``since`` (the test's clock)."""
    import numpy as np

    from mlkit.detections import Detections
    from mlkit.joint.agreement import AgreementConfig, AgreementMonitor, write_agreement

    monitor = AgreementMonitor(("person", "helmet", "helmet-on", "helmet-off"), AgreementConfig())
    for i in range(4):  # four audited frames; a stale edge model finds only the first of the cloud's boxes
        boxes = np.array([[x, 10, x + 30, 90] for x in (0, 50, 100, 150)], np.float32) + i
        cloud = Detections(boxes, [0.9] * 4, [0, 1, 2, 3])
        edge = cloud if agree else Detections(boxes[:1], [0.9], [0])
        monitor.add(50 * i, edge, cloud)
    return write_agreement(store, {**monitor.snapshot(), "audit_since": since})


def test_agreement_trigger_starts_a_round_on_a_site_change_and_not_twice_on_one_measurement(env, tiny_model):
    job = write_job(env, tiny_model, condition='{operator: "<", threshold: 0.45, metric: agreement}')
    add_samples(env / "dataset", 4)
    c = _controller(job, FakeRounds([0.1, 0.1]))
    msg = c.poll_once()
    assert "agreement is not measured yet" in msg and "no agreement.json" in msg and c.state.round == 0

    _agreement_file(env / "store", agree=True, since="2026-01-01T00:00:00+00:00")
    msg = c.poll_once()
    assert "agreement < 0.45 does not hold (agreement = 1.000)" in msg and c.state.round == 0

    _agreement_file(env / "store", agree=False, since="2026-01-01T00:00:00+00:00")  # the site changed
    assert "deployed as v2" in c.poll_once()
    assert c.state.round == 1 and c.state.rounds[0].samples == 4

    add_samples(env / "dataset", 4, start=10)
    msg = c.poll_once()  # the same measurement must not start another round
    assert c.state.round == 1 and "began before the last round ended" in msg

    _agreement_file(env / "store", agree=False, since="2999-01-01T00:00:00+00:00")  # measured after the round
    assert "deployed as v3" in c.poll_once() and c.state.round == 2


def test_agreement_trigger_without_new_samples_waits_for_labels(env, tiny_model):
    job = write_job(env, tiny_model, condition='{operator: "<", threshold: 0.45, metric: agreement}')
    c = _controller(job, FakeRounds([]))
    _agreement_file(env / "store", agree=False, since="2026-01-01T00:00:00+00:00")
    msg = c.poll_once()
    assert c.state.round == 0 and "holds" in msg and "no new labelled samples" in msg and "mlkit label" in msg
