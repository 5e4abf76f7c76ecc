"""Audits in the edge worker (mlkit.joint.audits) against a real cloud server on 127.0.0.1."""

from __future__ import annotations

import json

import pytest

from mlkit.errors import MlkitError
from mlkit.joint.agreement import AgreementConfig, AuditSampler
from mlkit.joint.audits import AuditConfig
from mlkit.joint.cloud import CloudClient, CloudConfig
from mlkit.joint.worker import JointWorker, WorkerConfig
from mlkit.mining import build_filter
from tests.joint.conftest import first_result_timing, run_worker

NOTHING_HARD = {"method": "Keyframe", "param": {"keyframe_ratio": 0.0}}
SHARE = 0.5


def audited(n: int) -> list[int]:
    sampler = AuditSampler(SHARE)
    return [i for i in range(n) if sampler.audit(i)]


def test_audited_frames_are_scored_without_changing_their_results(edge_model, frames, cloud_server, tmp_path):
    store, metrics = tmp_path / "store", tmp_path / "agreement.prom"
    config = WorkerConfig(report_every_s=0, audits=AuditConfig(share=SHARE, store=store, metrics_file=metrics,
                                                               agreement=AgreementConfig(window=4, min_frames=2)))
    with CloudClient(CloudConfig(cloud_server.url, "big", timeout_s=60, score_threshold=0.05,
                                 max_in_flight=16)) as cloud:
        results, stats = run_worker(edge_model, frames, cloud, NOTHING_HARD, tmp_path / "out", config)
    picked = audited(len(frames))
    assert 0 < len(picked) < len(frames)
    assert [r.index for r in results if r.audit] == picked
    assert all(r.source == "edge" and not r.is_hard for r in results)  # an audit is not an upload of the result
    assert stats["hard_frames"] == 0 and stats["audits"] == stats["audits_answered"] == len(picked)
    assert stats["audit_frames_total"] == len(picked) and stats["hard_frames_total"] == 0
    # The cloud here is the little fp32 model, the edge its int8 copy: they agree closely.
    assert stats["agreement"] > 0.5 and stats["alarm"] is False
    records = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in records if r["audit"]] == picked
    assert all("agreement" in r and "alarm" in r for r in records)
    saved = json.loads((store / "agreement.json").read_text())
    assert saved["agreement"] == stats["agreement"] and saved["audit_frames_total"] == len(picked)
    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families(metrics.read_text())}
    (sample,) = [s for s in families["mlkit_joint_agreement"].samples if s.labels == {"source": "audit"}]
    assert sample.value == stats["agreement"]
    assert families["mlkit_joint_audits_answered"].samples[0].value == len(picked)


def test_hard_frames_are_watched_without_audits(edge_model, frames, cloud_server):
    config = WorkerConfig(report_every_s=0, audits=AuditConfig(watch=True))
    with CloudClient(CloudConfig(cloud_server.url, "big", timeout_s=60, max_in_flight=16)) as cloud:
        results, stats = run_worker(edge_model, frames, cloud, {"method": "Keyframe",
                                                                "param": {"keyframe_ratio": 0.34}}, None, config)
    assert stats["audits"] == 0 and not any(r.audit for r in results)
    assert stats["hard_frames_total"] == stats["cloud_results"] > 0


def test_an_audit_holds_no_result_back(edge_model, frames, slow_server):
    """The server holds every answer 3 s: the audited frame 0's result still comes before frame 1 is read."""
    seed = next(seed for seed in range(100) if AuditSampler(SHARE, seed).audit(0))  # a sampler that picks frame 0
    config = WorkerConfig(report_every_s=0, audits=AuditConfig(share=SHARE, seed=seed))
    with CloudClient(CloudConfig(slow_server.url, "big", timeout_s=60, max_in_flight=16)) as cloud:
        worker = JointWorker(edge_model, build_filter(NOTHING_HARD), cloud, config)
        pulled, first, first_at, rest = first_result_timing(worker, frames[:3])
    assert first.index == 0 and first.audit and first_at < pulled[1]
    assert worker.stats.snapshot()["audits_answered"] >= 1  # waited for at the end of the run


def test_audits_give_way_to_hard_frames(edge_model, frames, slow_server):
    """With half the cloud's slots taken by hard frames (answers held 3 s), audits are skipped, not queued."""
    config = WorkerConfig(report_every_s=0, audits=AuditConfig(share=0.5))
    with CloudClient(CloudConfig(slow_server.url, "big", timeout_s=60, max_in_flight=2)) as cloud:
        _, stats = run_worker(edge_model, frames, cloud, {"method": "Keyframe", "param": {"keyframe_ratio": 0.34}},
                              None, config)
    assert stats["audits_skipped"] > 0
    assert stats["audits"] + stats["audits_skipped"] == len([i for i in audited(len(frames))
                                                             if i not in (0, 2, 5, 7, 10)])


def test_bad_audit_settings_are_refused():
    with pytest.raises(MlkitError, match="audit share must be in"):
        AuditConfig(share=1.5)
    with pytest.raises(MlkitError, match="audits are a sample"):
        AuditConfig(share=0.8)
