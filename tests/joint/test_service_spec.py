"""The JointInferenceService YAML: the seed's shape loads, and every mistake is named."""

from __future__ import annotations

import textwrap

import pytest
import yaml
from click.testing import CliRunner

from mlkit.cli import main
from mlkit.cli.joint import EXAMPLE
from mlkit.errors import MlkitError
from mlkit.joint.spec import load_service
from mlkit.mining import build_filter

SEED_SHAPED = """\
apiVersion: neptune.io/v1alpha1
kind: JointInferenceService
metadata:
  name: helmet-detection-inference-example
  namespace: default
spec:
  edgeWorker:
    model:
      name: "helmet-detection-inference-little-model"
      url: models/little/tflite/int8
    nodeName: "edge-node"
    hardExampleMining:
      name: "IBT"
      parameters:
        - key: "threshold_img"
          value: "0.5"
        - key: "threshold_box"
          value: "0.5"
    workerSpec:
      scriptDir: "/code/little-model"
      scriptBootFile: "little_model.py"
      frameworkType: "tensorflow"
      frameworkVersion: "1.15"
      parameters:
        - key: "input_shape"
          value: "416,736"
        - key: "video_url"
          value: "rtsp://localhost/video"
        - key: "all_examples_inference_output"
          value: "/home/data/output"
  cloudWorker:
    model:
      name: "big"
    nodeName: "cloud-node"
    workerSpec:
      parameters:
        - key: "endpoint"
          value: "http://127.0.0.1:8080"
        - key: "timeout_ms"
          value: "500"
"""


def write(tmp_path, text: str):
    path = tmp_path / "joint.yaml"
    path.write_text(text)
    return path


def test_the_seed_shape_loads_with_typed_parameters(tmp_path):
    service = load_service(write(tmp_path, SEED_SHAPED))
    edge, cloud = service.edge_parameters(), service.cloud_parameters()
    assert edge["video_url"] == "rtsp://localhost/video" and edge["score_threshold"] == 0.05
    assert cloud["timeout_ms"] == 500.0 and cloud["max_in_flight"] == 8 and cloud["protocol"] == "v2"
    f = build_filter(service.mining_spec())
    assert f.name == "IBT" and f.params.threshold_img == 0.5 and f.params.threshold_box == 0.5


def test_the_example_config_loads(tmp_path):
    service = load_service(write(tmp_path, EXAMPLE))
    assert service.spec.cloudWorker.model.name == "big"
    assert service.edge_parameters()["hard_example_store"] == "joint-output/hard_examples"
    assert service.cloud_parameters()["upload_max_shape"] == (352, 448)
    assert (service.cloud_parameters()["upload_batch"], service.cloud_parameters()["upload_wait_ms"]) == (8, 80.0)


def test_edge_only_without_a_cloud_worker(tmp_path):
    data = yaml.safe_load(EXAMPLE)
    del data["spec"]["cloudWorker"]
    assert load_service(write(tmp_path, yaml.safe_dump(data))).cloud_parameters() is None


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["spec"]["edgeWorker"].update(gpu=True), "spec.edgeWorker.gpu: Extra inputs are not permitted"),
    (lambda d: d["spec"]["edgeWorker"]["workerSpec"]["parameters"].append({"key": "fps", "value": "3"}),
     "unknown key 'fps'; known keys: agreement_hard_threshold, agreement_hard_window"),
    (lambda d: d["spec"]["cloudWorker"]["workerSpec"]["parameters"][2].update(value="x"),
     "max_in_flight='x': expected an integer"),
    (lambda d: d["spec"]["cloudWorker"]["workerSpec"]["parameters"].append({"key": "timeout_ms", "value": "1"}),
     "key 'timeout_ms' is given twice"),
    (lambda d: d["spec"]["cloudWorker"]["workerSpec"]["parameters"][3].update(value="352x448"),
     "upload_max_shape='352x448': expected HEIGHT,WIDTH as two positive integers"),
    (lambda d: d["spec"]["cloudWorker"]["workerSpec"]["parameters"][4].update(value="many"),
     "upload_batch='many': expected an integer"),
    (lambda d: d["spec"]["edgeWorker"]["workerSpec"]["parameters"].pop(0), "needs video_url"),
    (lambda d: d["spec"]["edgeWorker"]["model"].pop("url"), "spec.edgeWorker.model.url must point"),
    (lambda d: d["spec"].pop("edgeWorker"), "spec.edgeWorker: Field required"),
    (lambda d: d.update(kind="Deployment"), "kind must be JointInferenceService"),
    (lambda d: d.update(apiVersion="v9"), "apiVersion must be one of ['mlkit.io/v1', 'sedna.io/v1alpha1'"),
])
def test_invalid_configs_name_the_problem(tmp_path, edit, message):
    data = yaml.safe_load(EXAMPLE)
    edit(data)
    with pytest.raises(MlkitError) as err:
        load_service(write(tmp_path, yaml.safe_dump(data)))
    assert message in str(err.value)


def test_a_bad_filter_parameter_is_named(tmp_path):
    text = EXAMPLE.replace('{key: threshold_box, value: "0.9"}', '{key: threshold_boxes, value: "0.9"}')
    with pytest.raises(MlkitError, match="unknown parameter 'threshold_boxes'"):
        build_filter(load_service(write(tmp_path, text)).mining_spec())


def test_cli_errors_are_usage_errors_not_tracebacks(tmp_path):
    runner = CliRunner()
    missing = runner.invoke(main, ["joint", "run", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "joint-inference config not found" in missing.output
    assert "Traceback" not in missing.output
    broken = runner.invoke(main, ["joint", "run", str(write(tmp_path, "spec: [unclosed"))])
    assert broken.exit_code == 2 and "is not valid YAML" in broken.output
    no_video = textwrap.dedent(EXAMPLE).replace("data/helmet.avi", str(tmp_path / "missing.avi"))
    result = runner.invoke(main, ["joint", "run", str(write(tmp_path, no_video)), "--no-progress"])
    assert result.exit_code == 2 and "video file not found" in result.output, result.output


def test_the_old_config_option_still_runs_with_a_deprecation_line(tmp_path):
    runner = CliRunner()
    old = runner.invoke(main, ["joint", "run", "--config", str(tmp_path / "nope.yaml")])
    assert "`--config FILE` is deprecated" in old.output and "nope.yaml" in old.output
    assert old.exit_code == 2 and "Traceback" not in old.output
    both = runner.invoke(main, ["joint", "run", "a.yaml", "--config", "b.yaml"])
    assert both.exit_code == 2 and "give the spec once" in both.output
    neither = runner.invoke(main, ["joint", "run"])
    assert neither.exit_code == 2 and "Missing argument 'SERVICE.yaml'" in neither.output
