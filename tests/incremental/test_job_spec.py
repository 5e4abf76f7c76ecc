"""The IncrementalLearningJob YAML: the seed's shape loads; bad specs fail naming the field."""

from __future__ import annotations

import pytest
import yaml

from mlkit.errors import MlkitError
from mlkit.incremental.spec import load_job, parse_job

SEED = """\
apiVersion: neptune.io/v1alpha1
kind: IncrementalLearningJob
metadata: {name: helmet-detection-demo, namespace: neptune-test}
spec:
  initialModel: {name: "initial-model", url: models/little}
  dataset: {name: "incremental-dataset", url: data/il, trainProb: 0.8}
  trainSpec:
    workerSpec:
      scriptDir: "/code"
      scriptBootFile: "train.py"
      frameworkType: "tensorflow"
      frameworkVersion: "1.15"
      parameters:
        - key: "batch_size"
          value: "32"
        - key: "epochs"
          value: "1"
        - key: "input_shape"
          value: "352,640"
        - key: "class_names"
          value: "person,helmet,helmet-on,helmet-off"
        - key: "nms_threshold"
          value: "0.4"
        - key: "obj_threshold"
          value: "0.3"
    trigger:
      checkPeriodSeconds: 60
      timer:
        start: 02:00
        end: 04:00
      condition:
        operator: ">"
        threshold: 500
        metric: num_of_samples
  evalSpec:
    workerSpec:
      parameters:
        - {key: "input_shape", value: "352,640"}
  deploySpec:
    model: {name: "deploy-model", url: serving}
    trigger:
      condition:
        operator: ">"
        threshold: 0.1
        metric: precision_delta
    nodeName: "cloud0"
    hardExampleMining:
      name: "IBT"
    workerSpec:
      parameters:
        - key: "HE_SAVED_URL"
          value: "/he_saved_url"
  nodeName: "cloud0"
  outputDir: "/output"
"""


def test_seed_shaped_job_loads(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(SEED)
    job = load_job(path)
    trig = job.spec.trainSpec.trigger
    # unquoted 02:00 is the YAML 1.1 integer 120: read back as a time
    assert (trig.timer.start, trig.timer.end) == ("02:00", "04:00")
    assert trig.checkPeriodSeconds == 60 and trig.condition.describe() == "num_of_samples > 500"
    assert job.train_parameters()["batch_size"] == 32 and job.train_parameters()["nms_threshold"] == 0.4
    assert job.eval_parameters()["obj_threshold"] == 0.3  # inherited from trainSpec
    assert job.spec.deploySpec.trigger.condition.metric == "precision_delta"
    assert job.dataset_dir == tmp_path / "data" / "il"  # relative to the YAML file
    assert str(job.hard_example_store) == "/he_saved_url"
    assert job.mining_spec() == {"method": "IBT", "param": {}}


def _with(path: str, value):
    data = yaml.safe_load(SEED)
    node = data
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node[k]
    if value is None:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return data


@pytest.mark.parametrize(("path", "value", "message"), [
    ("spec.trainSpec.trigger.condition.operator", "=>", r"spec\.trainSpec\.trigger\.condition\.operator: .*=>"),
    ("spec.trainSpec.trigger.condition.metric", "map_delta", r"spec\.trainSpec\.trigger\.condition.*num_of_samples"),
    ("spec.deploySpec.trigger.condition.metric", "f1_delta", r"spec\.deploySpec\.trigger\.condition\.metric"),
    ("spec.trainSpec.trigger.timer.start", "25:00", r"spec\.trainSpec\.trigger\.timer\.start: .*HH:MM"),
    ("spec.trainSpec.trigger.checkPeriodSeconds", 0, r"checkPeriodSeconds: must be > 0"),
    ("spec.dataset.trainProb", 1.5, r"spec\.dataset\.trainProb: must be in \(0, 1\]"),
    ("spec.dataset.format", "txt", r"spec\.dataset\.format: .*jsonl"),
    ("spec.deploySpec.model", None, r"spec\.deploySpec\.model: Field required"),
    ("spec.outputDir", None, r"spec\.outputDir: Field required"),
    ("spec.trainSpec.trigger.colour", "red", r"spec\.trainSpec\.trigger\.colour: Extra inputs"),
    ("metadata.name", "Helmet_Demo", r"metadata\.name: .*Kubernetes object name"),
])
def test_bad_spec_names_the_field(path, value, message):
    with pytest.raises(MlkitError, match=message):
        parse_job(_with(path, value))


def test_bad_parameters_are_named():
    data = _with("spec.trainSpec.workerSpec.parameters", [{"key": "epoch", "value": "3"}])
    with pytest.raises(MlkitError, match=r"spec\.trainSpec\.workerSpec\.parameters: unknown key 'epoch'"):
        parse_job(data)
    data = _with("spec.trainSpec.workerSpec.parameters", [{"key": "epochs", "value": "three"}])
    with pytest.raises(MlkitError, match=r"epochs='three': expected an integer"):
        parse_job(data)
    data = _with("spec.trainSpec.workerSpec.parameters", [{"key": "input_shape", "value": "352x640"}])
    with pytest.raises(MlkitError, match=r"input_shape must be 'height,width'"):
        parse_job(data)
    data = _with("spec.trainSpec.workerSpec.parameters", [{"key": "input_shape", "value": "0,640"}])
    with pytest.raises(MlkitError, match=r"input_shape must be 'height,width', got '0,640'"):
        parse_job(data)
    data = _with("spec.deploySpec.hardExampleMining", {"name": "Nope"})
    with pytest.raises(MlkitError, match=r"spec\.deploySpec\.hardExampleMining"):
        parse_job(data)


def test_not_a_mapping_and_missing_file(tmp_path):
    with pytest.raises(MlkitError, match="expected a mapping"):
        parse_job(["a"])
    with pytest.raises(MlkitError, match="not found"):
        load_job(tmp_path / "nope.yaml")


def test_agreement_train_trigger_is_accepted_and_needs_the_store():
    condition = {"operator": "<", "threshold": 0.45, "metric": "agreement[helmet]"}
    data = _with("spec.trainSpec.trigger.condition", condition)
    job = parse_job(data)
    assert job.spec.trainSpec.trigger.condition.describe() == "agreement[helmet] < 0.45"
    data["spec"]["deploySpec"]["workerSpec"]["parameters"] = []
    with pytest.raises(MlkitError, match=r"trigger\.condition: metric agreement is read from .*agreement\.json.*"
                                         r"set HE_SAVED_URL"):
        parse_job(data)
