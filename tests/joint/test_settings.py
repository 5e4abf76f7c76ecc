"""Typed joint settings: one source of defaults, the YAML and Python callers meet in the same objects."""

from __future__ import annotations

import json

import pytest

from mlkit.errors import MlkitError
from mlkit.joint.cloud import CloudConfig
from mlkit.joint.outputs import OutputConfig
from mlkit.joint.settings import CloudSettings, EdgeSettings
from mlkit.joint.spec import load_service
from mlkit.joint.worker import WorkerConfig
from tests.joint.conftest import LITTLE, joint_spec


def test_the_settings_defaults_are_the_configs_defaults():
    assert EdgeSettings().worker_config() == WorkerConfig()
    assert EdgeSettings().output_config() == OutputConfig()
    url = "http://127.0.0.1:8080"
    assert CloudSettings(endpoint=url).cloud_config("big", None) == CloudConfig(url, "big")


def test_a_spec_with_no_parameters_but_the_required_ones_gets_the_same_defaults(tmp_path, video):
    config = joint_spec(tmp_path, video, "http://127.0.0.1:9", {"name": "CloudOnly", "parameters": []})
    service = load_service(config)
    edge, cloud = service.edge_settings(), service.cloud_settings()
    assert isinstance(edge, EdgeSettings) and isinstance(cloud, CloudSettings)
    for name, field in EdgeSettings.model_fields.items():
        if name not in {kv.key for kv in service.spec.edgeWorker.workerSpec.parameters}:
            assert getattr(edge, name) == field.default, name


def test_settings_refuse_unknown_keys_and_name_the_bad_one():
    from mlkit.specfiles import from_pairs, settings

    with pytest.raises(MlkitError,
                       match="unknown key 'fps'; known keys: agreement_hard_threshold, agreement_hard_window"):
        from_pairs(EdgeSettings, [("fps", "3")], "spec.edgeWorker")
    with pytest.raises(MlkitError, match="edge settings: jpeg_quality: Input should be a valid integer"):
        settings(EdgeSettings, {"jpeg_quality": "high"}, "edge settings")
    assert from_pairs(EdgeSettings, [("video_url", 0)], "spec.edgeWorker").video_url == "0"  # a camera index


def test_mlkit_joint_run_from_python_with_typed_settings(video, cloud_server, tmp_path):
    import mlkit.joint

    out = tmp_path / "out"
    summary = mlkit.joint.run(video, edge_model=LITTLE / "int8",
                              edge=EdgeSettings(results=str(out / "results.jsonl"), stats=str(out / "stats.json"),
                                                report_seconds=0),
                              cloud={"endpoint": cloud_server.url, "timeout_ms": 60000, "max_in_flight": 16},
                              mining={"name": "IBT", "threshold_img": 0.9, "threshold_box": 0.9},
                              echo=lambda line: None, progress=False)
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert summary.stats["frames"] == len(records) == 10
    assert json.loads((out / "stats.json").read_text())["frames"] == 10
    with pytest.raises(MlkitError, match="cloud settings: timeout_ms"):
        mlkit.joint.run(video, edge_model=LITTLE / "int8", cloud={"endpoint": cloud_server.url, "timeout_ms": "soon"},
                        progress=False)
