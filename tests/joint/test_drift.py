"""The offline drift check: drift_trace replays the worker's audit and hard-frame choices into the monitor; the
alarm follows a switch to a scene the edge gets wrong and stays quiet without one. (The figures on real clips of
sites A and C come from benchmarks/drift.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from mlkit.detections import Detections
from mlkit.errors import MlkitError
from mlkit.joint.agreement import AgreementConfig, AuditSampler
from mlkit.joint.drift import clip_detections, drift_trace

CLASSES = ("person", "helmet", "helmet-on", "helmet-off")


def _clip(n: int, switch: int | None) -> tuple[list[Detections], list[Detections]]:
    """The cloud sees four workers per frame; the edge agrees until ``switch``, then finds only one of them."""
    edge, cloud = [], []
    for i in range(n):
        boxes = np.array([[x + i % 7, 20, x + 40 + i % 7, 100] for x in (0, 60, 120, 180)], np.float32)
        c = Detections(boxes, [0.9, 0.8, 0.85, 0.95], [0, 1, 2, 3])
        cloud.append(c)
        edge.append(c if switch is None or i < switch else Detections(boxes[:1], [0.9], [0]))
    return edge, cloud


@pytest.mark.parametrize("hem", [{"method": "EdgeOnly"}, {"method": "Random", "param": {"random_ratio": 0.1}}])
def test_alarm_follows_the_switch_and_not_the_same_scene(hem):
    sampler = AuditSampler(0.05, seed=4)
    edge, cloud = _clip(600, switch=300)
    trace = drift_trace(edge, cloud, CLASSES, hem=hem, sampler=sampler, switch=300)
    assert trace.false_alarms == [] and trace.delay is not None and trace.delay <= 150
    assert trace.alarm[-1]  # it stays raised while the edge stays wrong
    same = drift_trace(*_clip(600, switch=None), CLASSES, hem=hem, sampler=sampler)
    assert same.alarms == [] and set(same.agreement) - {None} == {1.0}
    counts = same.counts()
    assert counts["audit"] == pytest.approx(0.05 * (600 - counts["hard"]), abs=3)
    assert trace.to_dict()["delay"] == trace.delay


def test_at_two_percent_a_wrong_audit_raises_the_share_until_the_change_is_confirmed():
    # 2 % of frames is about three audits in 150: one audit the edge gets wrong raises the share for a while.
    sampler = AuditSampler(0.02, seed=4)
    trace = drift_trace(*_clip(600, switch=300), CLASSES, hem={"method": "EdgeOnly"}, sampler=sampler, switch=300)
    after = sum(1 for f in trace.frame if 300 <= f < 450)
    assert after > 150 * 0.02 + 2 and trace.false_alarms == [] and trace.delay is not None and trace.delay <= 150
    same = drift_trace(*_clip(600, switch=None), CLASSES, hem={"method": "EdgeOnly"}, sampler=sampler)
    assert same.alarms == [] and same.counts()["audit"] == sum(sampler.audit(i) for i in range(600))  # no boost
    without = drift_trace(*_clip(600, switch=300), CLASSES, hem={"method": "EdgeOnly"}, sampler=sampler,
                          config=AgreementConfig(boost_share=0.0), switch=300)
    assert sum(1 for f in without.frame if 300 <= f < 450) < after


def test_bad_inputs_are_refused():
    edge, cloud = _clip(10, None)
    with pytest.raises(MlkitError, match="one cloud answer per edge answer"):
        drift_trace(edge, cloud[:5], CLASSES)
    with pytest.raises(MlkitError, match="switch frame 20 is outside"):
        drift_trace(edge, cloud, CLASSES, switch=20)


def test_real_clip_with_the_same_model_on_both_sides_agrees(edge_model, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from mlkit.data.synthetic.video import VideoSpec
    from mlkit.viz.plots import plot_drift

    specs = [VideoSpec(frames=5, site="A", seed=1, width=256, height=192),
             VideoSpec(frames=5, site="C", seed=1, width=256, height=192)]
    edge, cloud, switches = clip_detections(edge_model, edge_model, specs)
    assert len(edge) == len(cloud) == 10 and switches == [5]
    trace = drift_trace(edge, cloud, edge_model.meta.class_names, hem={"method": "CloudOnly"},
                        config=AgreementConfig(hard_window=10, hard_min_frames=3), switch=5)
    assert trace.counts() == {"audit": 0, "hard": 10} and trace.alarms == []
    assert {v for v in trace.agreement_hard if v is not None} == {1.0}
    ax = plot_drift(trace)
    ax.figure.savefig(tmp_path / "drift.png")
    assert (tmp_path / "drift.png").stat().st_size > 0
