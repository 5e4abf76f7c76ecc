"""The JointInferenceService YAML, shaped like the seed's (edgeWorker / cloudWorker / hardExampleMining).

The edge worker names the little model, the hard-example filter and the worker's parameters (the video source,
thresholds, output folders); the cloud worker names the served model and the client's parameters (endpoint,
timeout, upload batching, the token file). ``mlkit joint example-config`` prints a complete one.

Parameter values are strings, as in Kubernetes; they validate into the typed ``EdgeSettings`` and
``CloudSettings`` (``mlkit.joint.settings``), which Python callers use directly (``mlkit.joint.run``). Unknown
fields and keys are refused with the list of known ones. ``nodeName`` and the
``workerSpec`` script fields of the seed are accepted and ignored: mlkit's worker is the script.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlkit.errors import MlkitError
from mlkit.joint.settings import CloudSettings, EdgeSettings
from mlkit.specfiles import KeyValue, Strict, WorkerSpec, from_pairs, scalar


class ModelRef(Strict):
    name: str
    url: str | None = None  # a local model (edge): .tflite file or folder; the cloud uses name at its endpoint


class HardExampleMining(Strict):
    name: str
    parameters: list[KeyValue] = Field(default_factory=list)


class EdgeWorker(Strict):
    model: ModelRef
    nodeName: str | None = None
    hardExampleMining: HardExampleMining
    workerSpec: WorkerSpec = Field(default_factory=WorkerSpec)


class CloudWorker(Strict):
    model: ModelRef
    nodeName: str | None = None
    workerSpec: WorkerSpec = Field(default_factory=WorkerSpec)


class ServiceSpec(Strict):
    edgeWorker: EdgeWorker
    cloudWorker: CloudWorker | None = None  # absent: edge only


class Metadata(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = "joint-inference"
    namespace: str | None = None


class JointInferenceService(Strict):
    apiVersion: str = "mlkit.io/v1"
    kind: str = "JointInferenceService"
    metadata: Metadata = Field(default_factory=Metadata)
    spec: ServiceSpec

    def edge_settings(self) -> EdgeSettings:
        pairs = ((kv.key, kv.value) for kv in self.spec.edgeWorker.workerSpec.parameters)
        return from_pairs(EdgeSettings, pairs, "spec.edgeWorker")

    def cloud_settings(self) -> CloudSettings | None:
        if self.spec.cloudWorker is None:
            return None
        return from_pairs(CloudSettings, ((kv.key, kv.value) for kv in self.spec.cloudWorker.workerSpec.parameters),
                          "spec.cloudWorker")

    def edge_parameters(self) -> dict[str, Any]:
        return self.edge_settings().model_dump()

    def cloud_parameters(self) -> dict[str, Any] | None:
        cloud = self.cloud_settings()
        return None if cloud is None else cloud.model_dump()

    def mining_spec(self) -> dict:
        """``{"method": ..., "param": {...}}`` for ``mlkit.mining.build_filter``."""
        hem = self.spec.edgeWorker.hardExampleMining
        return {"method": hem.name, "param": {kv.key: scalar(kv.value) for kv in hem.parameters}}


def load_service(path: str | Path) -> JointInferenceService:
    """Read and validate a JointInferenceService YAML; every problem is an ``MlkitError`` naming the field."""
    from mlkit.specfiles import check_kind_and_version, read_yaml, validation_problems

    path = Path(path)
    data = read_yaml(path, "joint-inference config")
    if not isinstance(data, dict):
        raise MlkitError(f"{path}: expected a mapping with 'spec', got {type(data).__name__}")
    try:
        service = JointInferenceService.model_validate(data)
    except ValidationError as exc:
        raise MlkitError(f"{path}: {validation_problems(exc)}") from None
    check_kind_and_version(str(path), service.kind, service.apiVersion, "JointInferenceService")
    edge = service.edge_parameters()
    if not edge["video_url"]:
        raise MlkitError(f"{path}: spec.edgeWorker.workerSpec.parameters needs video_url (the video source)")
    if service.spec.edgeWorker.model.url is None:
        raise MlkitError(f"{path}: spec.edgeWorker.model.url must point to the edge model (.tflite or folder)")
    cloud = service.cloud_parameters()
    if cloud is not None and not cloud["endpoint"]:
        raise MlkitError(f"{path}: spec.cloudWorker.workerSpec.parameters needs endpoint (http://host:port)")
    return service
