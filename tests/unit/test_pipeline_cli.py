"""`mlkit pipeline run|compile|submit` through click's CliRunner.

`run` is tested here with the pipeline's run_local replaced (the real kfp.local run of the whole
pipeline, through this same command, is in tests/integration/test_pipeline_object_detection.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from kfp import dsl

from mlkit.cli import pipeline as pipeline_cli
from mlkit.cli.pipeline import pipeline

ALL_EXECUTORS = {"exec-convert", "exec-convert-2", "exec-download", "exec-evaluate", "exec-evaluate-2",
                 "exec-generate-dataset", "exec-publish", "exec-serve", "exec-train", "exec-train-2"}


def invoke(*args):
    result = CliRunner().invoke(pipeline, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


def _docs(path):
    return list(yaml.safe_load_all(Path(path).read_text()))


# --------------------------------------------------------------------------- locating the pipelines
def test_pipelines_are_the_installed_package(tmp_path, monkeypatch):
    """Any folder will do: the pipelines are mlkit.pipelines, not a repository folder (the wheel test runs
    the same commands from a wheel installed outside the checkout)."""
    import mlkit.pipelines

    monkeypatch.chdir(tmp_path)
    assert pipeline_cli.pipeline_registry() is mlkit.pipelines
    assert pipeline_cli.load_pipeline("object-detection").__name__ == "mlkit.pipelines.object_detection"
    r = invoke("compile", "object-detection", "--out", tmp_path / "out")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "object_detection.yaml").is_file()


@pytest.mark.parametrize("command", [("run", "nope"), ("compile", "nope"), ("submit", "nope", "--host", "http://x")])
def test_unknown_pipeline_name(command, tmp_path):
    r = invoke(*command)
    assert r.exit_code == 2
    known = "incremental-learning, joint-inference, joint-inference-video, object-detection"
    assert f"unknown pipeline 'nope'; known pipelines: {known}" in r.output


# --------------------------------------------------------------------------- compile
def test_compile_writes_every_pipeline(tmp_path):
    r = invoke("compile", "--out", tmp_path, "--base-image", "registry.example/mlkit:dev")
    assert r.exit_code == 0, r.output
    out = tmp_path / "object_detection.yaml"
    assert f"wrote {out}" in r.output
    docs = _docs(out)
    assert len(docs) == 1  # no cluster flags: no platform section
    spec = docs[0]
    assert spec["pipelineInfo"]["name"] == "object-detection"
    assert set(spec["root"]["inputDefinitions"]["parameters"]) == {"dataset_uri", "profile", "map_threshold",
                                                                    "tflite_variant", "serve_mode", "serve_name",
                                                                    "init_from", "backbone_weights"}
    executors = spec["deploymentSpec"]["executors"]
    containers = {k: v["container"] for k, v in executors.items() if "container" in v}
    assert set(containers) == ALL_EXECUTORS
    assert {c["image"] for c in containers.values()} == {"registry.example/mlkit:dev"}
    assert not any("pip install" in " ".join(c["command"]) for c in containers.values())


def test_compile_cluster_flags_produce_kubernetes_config(tmp_path):
    r = invoke("compile", "object-detection", "--out", tmp_path, "--aws-secret", "aws-secret",
               "--pvc", "detection-data", "--pvc-mount", "/mnt/nfs")
    assert r.exit_code == 0, r.output
    spec, platform = _docs(tmp_path / "object_detection.yaml")
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(executors) == ALL_EXECUTORS
    for name, config in executors.items():
        assert config["pvcMount"][0]["mountPath"] == "/mnt/nfs"
        assert config["pvcMount"][0]["pvcNameParameter"]["runtimeValue"]["constant"] == "detection-data"
        with_secret = name in ("exec-download", "exec-convert", "exec-convert-2", "exec-serve")  # serve uploads
        assert ("secretAsEnv" in config) == with_secret, name
        if with_secret:
            (secret,) = config["secretAsEnv"]
            assert secret["secretName"] == "aws-secret"
            assert {m["envVar"] for m in secret["keyToEnv"]} == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def test_base_image_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MLKIT_BASE_IMAGE", "registry.example/mlkit:env")
    r = invoke("compile", "--out", tmp_path)
    assert r.exit_code == 0, r.output
    images = {e["container"]["image"] for e in _docs(tmp_path / "object_detection.yaml")[0]["deploymentSpec"][
        "executors"].values() if "container" in e}
    assert images == {"registry.example/mlkit:env"}


@pytest.mark.parametrize("flags, message", [
    (("--pvc-mount", "/data"), "--pvc-mount needs --pvc"),
    (("--pvc", "Data_PVC"), "PVC 'Data_PVC' is not a Kubernetes object name"),
    (("--aws-secret", "aws secret"), "secret 'aws secret' is not a Kubernetes object name"),
    (("--pvc", "data", "--pvc-mount", "mnt/data"), "pvc_mount must be an absolute path"),
])
def test_compile_rejects_bad_cluster_flags(flags, message, tmp_path):
    r = invoke("compile", "--out", tmp_path, *flags)
    assert r.exit_code == 2
    assert message in r.output
    assert not (tmp_path / "object_detection.yaml").exists()


# --------------------------------------------------------------------------- submit
class FakeClient:
    """Stands in for kfp.Client: no Kubeflow cluster exists on this machine or in CI."""

    instances: list[FakeClient] = []

    def __init__(self, host=None, namespace=None, **kwargs):
        self.host, self.namespace, self.calls = host, namespace, []
        FakeClient.instances.append(self)

    def create_run_from_pipeline_package(self, pipeline_file, arguments=None, **kwargs):
        # The package is a temp file deleted after submission: read it now.
        self.calls.append({"package": _docs(pipeline_file), "arguments": arguments, **kwargs})

        class Result:
            run_id = "run-123"

        return Result()


@pytest.fixture
def fake_client(monkeypatch):
    """Mocks only kfp.Client; compiling the package is real. No cluster is reachable from the tests."""
    import kfp

    FakeClient.instances = []
    monkeypatch.setattr(kfp, "Client", FakeClient)
    return FakeClient


def test_submit_sends_a_compiled_package_with_cluster_settings(fake_client):
    """Submit to a mocked kfp.Client (no cluster here) and check the package it receives."""
    r = invoke("submit", "object-detection", "--host", "http://kfp.example:8080", "--experiment", "helmets",
               "--run-name", "nightly", "--profile", "demo", "--dataset-uri", "s3://bucket/helmets",
               "--aws-secret", "aws-secret", "--pvc", "detection-data",
               "--base-image", "registry.example/mlkit:1")
    assert r.exit_code == 0, r.output
    assert "run run-123" in r.output
    (client,) = fake_client.instances
    assert client.host == "http://kfp.example:8080"
    (call,) = client.calls
    assert call["experiment_name"] == "helmets" and call["run_name"] == "nightly"
    # map_threshold defaults to the demo profile's gate; a submitted run deploys an InferenceService
    assert call["arguments"] == {"dataset_uri": "s3://bucket/helmets", "profile": "demo",
                                 "map_threshold": 0.5, "tflite_variant": "int8", "serve_mode": "cluster",
                                 "serve_name": "object-detection", "init_from": "",
                                 "backbone_weights": "none"}
    spec, platform = call["package"]
    assert spec["pipelineInfo"]["name"] == "object-detection"
    assert set(spec["root"]["inputDefinitions"]["parameters"]) == set(call["arguments"])
    assert "exec-publish" in spec["deploymentSpec"]["executors"]
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert executors["exec-download"]["secretAsEnv"][0]["secretName"] == "aws-secret"
    assert executors["exec-train"]["pvcMount"][0]["mountPath"] == "/mnt/data"
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()
              if "container" in e}
    assert images == {"registry.example/mlkit:1"}


def test_submit_reports_an_unreachable_cluster(monkeypatch):
    import kfp

    def unreachable(*args, **kwargs):
        raise TimeoutError("Failed getting healthz endpoint after 5 attempts.")

    monkeypatch.setattr(kfp, "Client", unreachable)
    r = invoke("submit", "object-detection", "--host", "http://nowhere:1")
    assert r.exit_code == 1
    assert "submitting object-detection to http://nowhere:1 failed: TimeoutError" in r.output


def test_submit_needs_a_host():
    r = invoke("submit", "object-detection")
    assert r.exit_code == 2 and "--host" in r.output


# --------------------------------------------------------------------------- run (run_local replaced)
def _fake_outputs(run_dir: Path) -> dict:
    """Output artifacts as kfp.local returns them: uri = <root>/<run>/<task>/<output>."""
    def art(cls, task, key, **metadata):
        return cls(name=key, uri=str(run_dir / task / key), metadata=metadata)

    outputs = {"dataset": art(dsl.Dataset, "generate-dataset", "dataset")}
    for name, suffix in (("little", ""), ("big", "-2")):
        outputs |= {
            f"{name}_model": art(dsl.Model, f"train{suffix}", "model"),
            f"{name}_train_metrics": art(dsl.Metrics, f"train{suffix}", "metrics", map50=0.5),
            f"{name}_tflite": art(dsl.Model, f"convert{suffix}", "tflite"),
            f"{name}_fidelity": art(dsl.Metrics, f"convert{suffix}", "fidelity", int8_size_mb=1.5),
            f"{name}_eval_metrics": art(dsl.Metrics, f"evaluate{suffix}", "metrics", map50=0.42, map=0.2,
                                        images_per_second=30.0),
            f"{name}_confusion": art(dsl.ClassificationMetrics, f"evaluate{suffix}", "confusion"),
        }
    return outputs


def test_run_forwards_options_and_prints_the_summary(tmp_path, monkeypatch):
    import mlkit.pipelines.object_detection as od

    seen = {}

    def fake_run_local(pipeline_root, **arguments):
        seen.update(arguments, pipeline_root=pipeline_root)
        run_dir = Path(pipeline_root) / "object-detection-2026-01-01"
        (run_dir / "publish" / "repository").mkdir(parents=True)
        (run_dir / "serve").mkdir()
        (run_dir / "serve" / "executor_output.json").write_text(
            json.dumps({"parameterValues": {"url": "http://127.0.0.1:8080"}}))
        gate = od.run_arguments(**arguments)["map_threshold"]
        return od.summarize(_fake_outputs(run_dir), gate, arguments["tflite_variant"])

    monkeypatch.setattr(od, "run_local", fake_run_local)
    r = invoke("run", "object-detection", "--profile", "demo", "--pipeline-root", tmp_path,
               "--map-threshold", "0.4", "--tflite-variant", "int8")
    assert r.exit_code == 0, r.output
    assert seen == {"pipeline_root": tmp_path, "dataset_uri": "", "profile": "demo", "map_threshold": 0.4,
                    "tflite_variant": "int8"}
    assert "gate: big mAP@0.5 0.420 >= 0.4: passed, models published" in r.output
    assert str(tmp_path / "object-detection-2026-01-01" / "publish" / "repository") in r.output
    assert "served at:    http://127.0.0.1:8080" in r.output
    assert "little" in r.output and "0.420" in r.output


def test_run_failure_is_one_clear_line(tmp_path, monkeypatch):
    import mlkit.pipelines.object_detection as od

    def failing(pipeline_root, **arguments):
        raise RuntimeError("Pipeline 'object-detection' finished with status FAILURE. "
                           "Inner task failed: train.")

    monkeypatch.setattr(od, "run_local", failing)
    r = invoke("run", "object-detection", "--pipeline-root", tmp_path)
    assert r.exit_code == 1
    assert "Inner task failed: train." in r.output


def test_run_rejects_unknown_profile_and_variant(tmp_path):
    assert invoke("run", "object-detection", "--profile", "huge").exit_code == 2
    assert invoke("run", "object-detection", "--tflite-variant", "int4").exit_code == 2


@pytest.mark.parametrize(("args", "message"), [
    (("--dataset-uri", "gs://bucket/data"), "unsupported URI scheme 'gs://'"),
    (("--dataset-uri", "/no/such/dataset"), "/no/such/dataset does not exist"),
    (("--map-threshold", "5"), "5.0 is not in the range 0<=x<=1"),
    (("--param", "map_threshold=-1"), "map_threshold must be in [0, 1], got -1"),
])
def test_run_checks_the_dataset_and_gate_before_starting(tmp_path, args, message):
    result = invoke("run", "object-detection", *args, "--pipeline-root", str(tmp_path))
    assert result.exit_code == 2 and message in result.output, result.output
    assert not any(tmp_path.iterdir())  # nothing ran


def test_a_cluster_path_is_not_checked_on_this_machine():
    import mlkit.pipelines.object_detection as od

    assert od.run_arguments(dataset_uri="/mnt/data/site-a")["dataset_uri"] == "/mnt/data/site-a"


def test_cli_variants_match_the_library():
    from mlkit.models.export import VARIANTS

    assert pipeline_cli._VARIANTS == VARIANTS


def test_cli_profiles_match_the_library():
    from mlkit.cli.tools import PROFILE_NAMES
    from mlkit.profiles import PROFILES

    assert set(PROFILE_NAMES) == set(PROFILES)


def test_bundled_start_needs_the_committed_architecture():
    import mlkit.pipelines.object_detection as od
    from mlkit.errors import MlkitError

    assert od.run_arguments(profile="demo", init_from="bundled")["init_from"] == "bundled"
    with pytest.raises(MlkitError, match="profile 'test': its little detector differs from the committed one in "
                                         "input_width, input_height, neck_channels, head_convs"):
        od.run_arguments(profile="test", init_from="bundled")


def test_run_arguments_fill_the_profile_gate():
    import mlkit.pipelines.object_detection as od

    assert od.run_arguments(profile="full")["map_threshold"] == 0.5
    assert od.run_arguments(profile="full", map_threshold=0.1)["map_threshold"] == 0.1
    from mlkit.errors import MlkitError

    with pytest.raises(MlkitError, match="serve_mode"):
        od.run_arguments(serve_mode="edge")
    with pytest.raises(MlkitError, match="DNS-1035"):
        od.run_arguments(serve_name="Object_Detection")
    assert json.dumps(od.run_arguments())  # plain JSON values: they go to kfp.Client as run arguments
