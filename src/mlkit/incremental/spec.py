"""The IncrementalLearningJob YAML, shaped like the seed's (Sedna's) job, validated at load time.

::

    apiVersion: mlkit.io/v1
    kind: IncrementalLearningJob
    metadata: {name: helmet-detection-demo}
    spec:
      initialModel: {name: initial-model, url: models/little-site-a}     # trained detector folder
      dataset: {name: incremental-dataset, url: runs/il/dataset, format: jsonl, trainProb: 0.8}
      trainSpec:
        workerSpec:
          parameters:
            - {key: batch_size, value: "16"}
            - {key: epochs, value: "3"}
            - {key: input_shape, value: "256,320"}          # height,width, as in the seed
            - {key: class_names, value: "person,helmet,helmet-on,helmet-off"}
            - {key: nms_threshold, value: "0.5"}
            - {key: obj_threshold, value: "0.3"}
        trigger:
          checkPeriodSeconds: 60
          timer: {start: "02:00", end: "04:00"}
          condition: {operator: ">", threshold: 500, metric: num_of_samples}
          # or, on a site change: {operator: "<", threshold: 0.45, metric: agreement}  (needs HE_SAVED_URL)
      evalSpec: {workerSpec: {parameters: [...]}}
      deploySpec:
        model: {name: deploy-model, url: runs/il/serving}                # serving repository
        trigger:
          condition: {operator: ">", threshold: 0.1, metric: "precision_delta"}   # or precision_delta[1]
        hardExampleMining: {name: IBT, parameters: [...]}
        workerSpec: {parameters: [{key: HE_SAVED_URL, value: runs/il/hard_examples}]}
      outputDir: runs/il/output

Parameter values are strings, as in Kubernetes; each known key has a type and is converted and checked
here. Unknown fields and keys are refused naming the known ones. ``nodeName`` and the seed's
``workerSpec`` script fields are accepted and ignored: mlkit's pipeline is the script. An unquoted
``02:00`` is read by YAML 1.1 as the base-60 integer 120; it is turned back into ``02:00``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mlkit.errors import MlkitError
from mlkit.specfiles import KeyValue, Settings, Strict, WorkerSpec, from_pairs, parse_hw, scalar

OPERATORS = (">", ">=", "=", "!=", "<", "<=")
TRAIN_METRICS = ("num_of_samples", "agreement", "agreement_hard")  # agreement: mlkit.incremental.store
DEPLOY_METRICS = ("precision_delta", "recall_delta", "map_delta")
_METRIC = re.compile(r"^(?P<name>[a-z_]+)(?:\[(?P<index>[^\[\]]+)\])?$")
_HHMM = re.compile(r"^(\d{1,2}):(\d{2})$")

class TrainSettings(Settings):
    """``spec.trainSpec.workerSpec.parameters``."""

    batch_size: int = Field(16, description="training batch size")
    epochs: int = Field(3, description="epochs per round")
    learning_rate: float = Field(5e-4, description="peak learning rate of a round (lower than from scratch: it "
                                                   "fine-tunes)")
    input_shape: str | None = Field(None, description="height,width; checked against the initial model")
    class_names: str | None = Field(None, description="comma-separated; checked against the initial model")
    nms_threshold: float = Field(0.5, description="IoU of non-maximum suppression at evaluation")
    obj_threshold: float = Field(0.3, description="score threshold for precision/recall")
    replay_ratio: float = Field(1.0, description="older train samples mixed in per new sample (against forgetting)")
    tflite_variant: str = Field("int8", description="TFLite variant evaluated and deployed")
    seed: int = Field(0, description="training and sampling seed")


class EvalSettings(Settings):
    """``spec.evalSpec.workerSpec.parameters``; unset thresholds are the trainSpec's."""

    input_shape: str | None = Field(None, description="height,width; informational")
    class_names: str | None = Field(None, description="comma-separated; checked against the initial model")
    obj_threshold: float | None = Field(None, description="score threshold for precision/recall (default: "
                                                          "trainSpec's)")
    nms_threshold: float | None = Field(None, description="IoU of non-maximum suppression (default: trainSpec's)")


class DeploySettings(Settings):
    """``spec.deploySpec.workerSpec.parameters``."""

    HE_SAVED_URL: str | None = Field(None, description="hard-example store written by the deploy worker (clean "
                                                       "frames + sidecars)")
    input_shape: str | None = Field(None, description="height,width; informational")
    video_url: str | None = Field(None, description="the deploy worker's video source (used by `mlkit joint run`)")
    model_name: str = Field("little", description="name of the model in the serving repository")


class Condition(Strict):
    operator: str
    threshold: float
    metric: str

    @field_validator("operator")
    @classmethod
    def _op(cls, v: str) -> str:
        v = "=" if v == "==" else v
        if v not in OPERATORS:
            raise ValueError(f"unknown operator {v!r}; use one of {' '.join(OPERATORS)}")
        return v

    @field_validator("metric")
    @classmethod
    def _metric(cls, v: str) -> str:
        v = v.strip()
        m = _METRIC.match(v)
        if not m or m["name"] not in (*TRAIN_METRICS, *DEPLOY_METRICS):
            raise ValueError(f"unknown metric {v!r}; use {', '.join((*TRAIN_METRICS, *DEPLOY_METRICS))}, "
                             "optionally indexed like precision_delta[1] or precision_delta[helmet]")
        return v

    @property
    def metric_name(self) -> str:
        return _METRIC.match(self.metric)["name"]

    @property
    def metric_index(self) -> int | str | None:
        index = _METRIC.match(self.metric)["index"]
        if index is None:
            return None
        index = index.strip()
        return int(index) if index.lstrip("-").isdigit() else index

    def describe(self) -> str:
        return f"{self.metric} {self.operator} {self.threshold:g}"


def _hhmm(v: Any) -> str:
    if isinstance(v, int) and not isinstance(v, bool):  # YAML 1.1 read 02:00 as 2*60+0
        v = f"{v // 60:02d}:{v % 60:02d}"
    if not isinstance(v, str):
        raise ValueError(f"expected a time HH:MM, got {v!r}")
    m = _HHMM.match(v.strip())
    if not m or int(m[1]) > 23 or int(m[2]) > 59:
        raise ValueError(f"expected a time HH:MM between 00:00 and 23:59, got {v!r}")
    return f"{int(m[1]):02d}:{m[2]}"


class Timer(Strict):
    start: str
    end: str

    @field_validator("start", "end", mode="before")
    @classmethod
    def _time(cls, v: Any) -> str:
        return _hhmm(v)


class TrainTrigger(Strict):
    checkPeriodSeconds: float = 60.0
    timer: Timer | None = None  # absent: any time of day
    condition: Condition

    @field_validator("checkPeriodSeconds")
    @classmethod
    def _period(cls, v: float) -> float:
        if not v > 0:
            raise ValueError(f"must be > 0 seconds, got {v}")
        return v

    @field_validator("condition")
    @classmethod
    def _train_metric(cls, v: Condition) -> Condition:
        if v.metric_name not in TRAIN_METRICS:
            raise ValueError(f"the train trigger's metric must be one of {list(TRAIN_METRICS)}, got {v.metric!r}")
        return v


class DeployTrigger(Strict):
    condition: Condition

    @field_validator("condition")
    @classmethod
    def _deploy_metric(cls, v: Condition) -> Condition:
        if v.metric_name not in DEPLOY_METRICS:
            raise ValueError(f"the deploy trigger's metric must be one of {list(DEPLOY_METRICS)}, got {v.metric!r}")
        return v


class ModelRef(Strict):
    name: str
    url: str | None = None
    format: str | None = None


class DatasetRef(Strict):
    name: str = "incremental-dataset"
    url: str
    format: str = "jsonl"
    trainProb: float = 0.8
    nodeName: str | None = None

    @field_validator("format")
    @classmethod
    def _format(cls, v: str) -> str:
        if v != "jsonl":
            raise ValueError(f"format {v!r} is not supported: the dataset index is mlkit's index.jsonl "
                             "(format: jsonl); bring YOLO, VOC or COCO labels in with `mlkit label import`")
        return v

    @field_validator("trainProb")
    @classmethod
    def _prob(cls, v: float) -> float:
        if not 0 < v <= 1:
            raise ValueError(f"must be in (0, 1], got {v}")
        return v


class HardExampleMining(Strict):
    name: str
    parameters: list[KeyValue] = Field(default_factory=list)


class TrainSpec(Strict):
    workerSpec: WorkerSpec = Field(default_factory=WorkerSpec)
    trigger: TrainTrigger


class EvalSpec(Strict):
    workerSpec: WorkerSpec = Field(default_factory=WorkerSpec)


class DeploySpec(Strict):
    model: ModelRef
    trigger: DeployTrigger
    nodeName: str | None = None
    hardExampleMining: HardExampleMining | None = None
    workerSpec: WorkerSpec = Field(default_factory=WorkerSpec)


class JobSpec(Strict):
    initialModel: ModelRef
    dataset: DatasetRef
    trainSpec: TrainSpec
    evalSpec: EvalSpec = Field(default_factory=EvalSpec)
    deploySpec: DeploySpec
    nodeName: str | None = None
    outputDir: str


class Metadata(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    namespace: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", v):
            raise ValueError(f"{v!r} is not a Kubernetes object name (lower-case letters, digits, '-', '.')")
        return v


class IncrementalLearningJob(Strict):
    apiVersion: str = "mlkit.io/v1"
    kind: str = "IncrementalLearningJob"
    metadata: Metadata
    spec: JobSpec
    source: str | None = Field(default=None, exclude=True)  # the YAML file, for relative paths

    @property
    def name(self) -> str:
        return self.metadata.name

    def train_parameters(self) -> dict[str, Any]:
        return _settings(TrainSettings, self.spec.trainSpec.workerSpec, "spec.trainSpec").model_dump()

    def eval_parameters(self) -> dict[str, Any]:
        p = _settings(EvalSettings, self.spec.evalSpec.workerSpec, "spec.evalSpec").model_dump()
        train = self.train_parameters()
        for key in ("obj_threshold", "nms_threshold"):
            if p[key] is None:
                p[key] = train[key]
        return p

    def deploy_parameters(self) -> dict[str, Any]:
        return _settings(DeploySettings, self.spec.deploySpec.workerSpec, "spec.deploySpec").model_dump()

    def mining_spec(self) -> dict | None:
        hem = self.spec.deploySpec.hardExampleMining
        if hem is None:
            return None
        return {"method": hem.name, "param": {kv.key: scalar(kv.value) for kv in hem.parameters}}

    def path(self, value: str) -> Path:
        """A path from the spec: relative paths are relative to the YAML file's folder."""
        p = Path(value).expanduser()
        if p.is_absolute() or self.source is None:
            return p
        return Path(self.source).parent / p

    @property
    def output_dir(self) -> Path:
        return self.path(self.spec.outputDir)

    @property
    def dataset_dir(self) -> Path:
        return self.path(self.spec.dataset.url)

    @property
    def serving_repository(self) -> Path:
        return self.path(self.spec.deploySpec.model.url)

    @property
    def initial_model(self) -> Path:
        return self.path(self.spec.initialModel.url)

    @property
    def hard_example_store(self) -> Path | None:
        url = self.deploy_parameters()["HE_SAVED_URL"]
        return self.path(url) if url else None


def _check(job: IncrementalLearningJob, where: str) -> None:
    """Cross-field checks that pydantic field validators cannot express."""
    from mlkit.specfiles import check_kind_and_version

    check_kind_and_version(where, job.kind, job.apiVersion, "IncrementalLearningJob")
    if not job.spec.initialModel.url:
        raise MlkitError(f"{where}: spec.initialModel.url must point to the initial model (a trained detector "
                         "folder with config.json and model.weights.h5)")
    if not job.spec.deploySpec.model.url:
        raise MlkitError(f"{where}: spec.deploySpec.model.url must name the serving repository folder "
                         "(<url>/<model>/<version>/model.tflite)")
    train = job.train_parameters()
    for key in ("batch_size", "epochs"):
        if train[key] < 1:
            raise MlkitError(f"{where}: spec.trainSpec.workerSpec.parameters: {key} must be >= 1, got {train[key]}")
    if not 0 < train["learning_rate"] < 1:
        raise MlkitError(f"{where}: spec.trainSpec.workerSpec.parameters: learning_rate must be in (0, 1)")
    if train["replay_ratio"] < 0:
        raise MlkitError(f"{where}: spec.trainSpec.workerSpec.parameters: replay_ratio must be >= 0")
    for key in ("nms_threshold", "obj_threshold"):
        if not 0 <= train[key] <= 1:
            raise MlkitError(f"{where}: spec.trainSpec.workerSpec.parameters: {key} must be in [0, 1]")
    from mlkit.models.export import VARIANTS

    if train["tflite_variant"] not in VARIANTS:
        raise MlkitError(f"{where}: spec.trainSpec.workerSpec.parameters: tflite_variant must be one of "
                         f"{list(VARIANTS)}, got {train['tflite_variant']!r}")
    for section, params in (("trainSpec", train), ("evalSpec", job.eval_parameters())):
        shape = params.get("input_shape")
        if shape is None:
            continue
        try:
            parse_hw(shape)
        except ValueError:
            raise MlkitError(f"{where}: spec.{section}.workerSpec.parameters: input_shape must be "
                             f"'height,width', got {shape!r}") from None
    job.deploy_parameters()
    condition = job.spec.trainSpec.trigger.condition
    if condition.metric_name != "num_of_samples" and job.hard_example_store is None:
        raise MlkitError(f"{where}: spec.trainSpec.trigger.condition: metric {condition.metric_name} is read from the "
                         "edge worker's agreement.json in the hard-example store; set HE_SAVED_URL in "
                         "spec.deploySpec.workerSpec.parameters")
    if job.mining_spec() is not None:
        from mlkit.mining import build_filter

        try:
            build_filter(job.mining_spec())
        except MlkitError as exc:
            raise MlkitError(f"{where}: spec.deploySpec.hardExampleMining: {exc}") from None


def parse_job(data: Any, where: str = "job", source: str | Path | None = None) -> IncrementalLearningJob:
    """Validate a parsed YAML document; every problem is an ``MlkitError`` naming the field."""
    if not isinstance(data, dict):
        raise MlkitError(f"{where}: expected a mapping with 'metadata' and 'spec', got {type(data).__name__}")
    try:
        job = IncrementalLearningJob.model_validate({**data, "source": str(source) if source else None})
    except ValidationError as exc:
        from mlkit.specfiles import validation_problems

        raise MlkitError(f"{where}: {validation_problems(exc)}") from None
    _check(job, where)
    return job


def load_job(path: str | Path) -> IncrementalLearningJob:
    """Read and validate an IncrementalLearningJob YAML file."""
    from mlkit.specfiles import read_yaml

    path = Path(path)
    return parse_job(read_yaml(path, "incremental learning job"), str(path), source=path.resolve())


def _settings(cls: type[Settings], worker: WorkerSpec, where: str) -> Settings:
    return from_pairs(cls, ((kv.key, kv.value) for kv in worker.parameters), where)
