"""Promotion: atomic, idempotent, never reuses a version; a crash at every step leaves a served, valid model
and a consistent state, and a restarted controller finishes the deployment."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest
from il_helpers import Crash, FakeClock, FakeRounds, add_samples, write_job

from mlkit.incremental import promotion
from mlkit.incremental.controller import Controller, InProcessRunner
from mlkit.incremental.spec import load_job
from mlkit.incremental.state import load_state


def test_promote_is_atomic_idempotent_and_cleans_stale_tmp(tmp_path, tiny_model):
    src = tiny_model / "tflite" / "fp32"
    repo = tmp_path / "repo"
    assert promotion.next_version(repo, "m") == 1
    promotion.promote(repo, "m", 1, src)
    (repo / "m" / "2.tmp").mkdir()  # left by a crash
    (repo / "m" / "2.tmp" / "model.tflite").write_bytes(b"half")
    assert promotion.next_version(repo, "m") == 3  # a stale name is never reused
    promotion.promote(repo, "m", 2, src, {"round": 7})
    assert not (repo / "m" / "2.tmp").exists()
    assert promotion.versions(repo, "m") == [1, 2] and promotion.deployed_version(repo, "m") == 2
    assert (repo / "m" / "2" / "READY").is_file()
    assert (repo / "m" / "2" / "model.tflite").read_bytes() == (src / "model.tflite").read_bytes()
    promotion.promote(repo, "m", 2, src)  # already complete: no-op
    with pytest.raises(Exception, match="model.tflite is missing"):
        promotion.promote(repo, "m", 3, tmp_path)


def _served_version(url: str, image: np.ndarray) -> str:
    from mlkit.client.http import ServingClient

    client = ServingClient(url, "little")
    _, headers, body = client.build([image], score_threshold=0.01)
    r = httpx.post(f"{url}/v2/models/little/infer", content=body, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["outputs"], out  # a real answer from a loaded model
    return out["model_version"]


def _wait_for(url: str, image, version: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while _served_version(url, image) != version:
        assert time.monotonic() < deadline, f"version {version} was not hot-loaded"
        time.sleep(0.2)


def test_crash_at_every_promotion_step(tmp_path, tiny_model, monkeypatch):
    from mlkit.serving.server import start_background_server

    monkeypatch.setenv("MLKIT_STATE_DIR", str(tmp_path / "state"))
    job_path = write_job(tmp_path, tiny_model, min_samples=1, deploy_threshold=0.0)
    job = load_job(job_path)
    fake = FakeRounds([0.1] * 20)

    def controller(fault=None):
        runner = InProcessRunner(train_fn=fake.train, evaluate_fn=fake.evaluate, fault=fault)
        c = Controller(job, runner=runner, clock=FakeClock(), echo=lambda m: None,
                       prepare=lambda *a: {"new": 1, "replay": 0, "eval": 1})
        c.setup()
        return c

    controller()  # deploys the initial model as v1
    image = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    with start_background_server(tmp_path / "serving", poll_seconds=0.2, log_path=tmp_path / "server.log") as server:
        assert _served_version(server.url, image) == "1"
        expected = 1
        for n, step in enumerate(promotion.STEPS):
            add_samples(tmp_path / "dataset", 1, start=n)

            def fault(s, step=step):
                if s == step:
                    raise Crash(step)

            with pytest.raises(Crash):
                controller(fault).poll_once()
            target = expected + 1
            renamed = promotion.STEPS.index(step) > promotion.STEPS.index("rename")
            time.sleep(0.5)  # give the watcher a poll
            served = _served_version(server.url, image)  # still answers, with a complete model
            assert served == str(expected) or (renamed and served == str(target))
            s = load_state(tmp_path / "output", "test-job")
            # the state never claims what is not on disk
            assert s.phase == "Deploying" and s.deployed_version == expected and s.target_version == target
            assert promotion.deployed_version(tmp_path / "serving", "little") == (target if renamed else expected)

            restarted = controller()  # a crash after the rename is recognised at setup
            msg = restarted.poll_once() if not renamed else "reconciled at setup"
            s = load_state(tmp_path / "output", "test-job")
            assert (s.phase, s.deployed_version) == ("Waiting", target), (step, msg)
            assert s.deployed_model == str(tmp_path / "output" / "rounds" / str(s.round) / "candidate")
            assert not list((tmp_path / "serving" / "little").glob("*.tmp"))
            _wait_for(server.url, image, str(target))
            expected = target
        assert promotion.versions(tmp_path / "serving", "little") == list(range(1, expected + 1))
    assert "Traceback" not in server.log_text()
