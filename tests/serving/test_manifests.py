"""KServe manifests: built with the kserve SDK, validated against KServe's CRD schemas, deployed via KServeClient.

No Kubernetes API server exists on this machine or in CI: the deploy/delete tests replace only
``kserve.KServeClient`` (through the ``factory`` seam of ``manifests.kserve_client``) and assert the calls
it receives; everything else (manifest building, serialisation, kubeconfig lookup) is real.

The CRDs come from ``../shared/kserve-crds`` (next to the repository); the schema tests skip when it is absent.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from mlkit.errors import MlkitError
from mlkit.serving import manifests

REPO = Path(__file__).resolve().parents[2]
CRDS = (REPO / ".." / "shared" / "kserve-crds").resolve()


@functools.cache
def _schemas():
    from mlkit.serving.crd_schema import CrdSchemas

    return CrdSchemas(CRDS)


def crd_errors(doc: dict) -> list[str]:
    if not CRDS.is_dir():
        pytest.skip(f"KServe CRDs not found at {CRDS} (the shared folder next to the repository)")
    return _schemas().errors(doc)


def test_crd_schemas_refuse_a_folder_without_crds_and_an_unknown_kind(tmp_path):
    from mlkit.serving.crd_schema import CrdSchemas

    with pytest.raises(MlkitError, match="not found"):
        CrdSchemas(tmp_path / "missing")
    (tmp_path / "cm.yaml").write_text("kind: ConfigMap\napiVersion: v1\n")
    with pytest.raises(MlkitError, match="no CustomResourceDefinition"):
        CrdSchemas(tmp_path)
    if CRDS.is_dir():
        with pytest.raises(MlkitError, match="no CRD for kind 'Pod'"):
            _schemas().errors({"kind": "Pod"})


def assert_valid(doc: dict) -> None:
    assert crd_errors(doc) == []


# --------------------------------------------------------------------------- manifests
def test_inference_service_custom_container_with_batcher():
    isvc = manifests.inference_service("helmet", "s3://models/helmet", max_batch_size=8, max_latency_ms=20,
                                       threads=2, cpu="2", memory="2Gi", min_replicas=0)
    doc = manifests.to_dict(isvc)
    assert_valid(doc)
    assert doc["apiVersion"] == "serving.kserve.io/v1beta1" and doc["kind"] == "InferenceService"
    assert doc["metadata"] == {"name": "helmet", "namespace": "kubeflow",
                               "labels": {"app.kubernetes.io/managed-by": "mlkit"}}
    predictor = doc["spec"]["predictor"]
    assert predictor["batcher"] == {"maxBatchSize": 8, "maxLatency": 20}
    assert predictor["minReplicas"] == 0
    (container,) = predictor["containers"]
    assert container["image"] == manifests.DEFAULT_IMAGE
    assert container["env"] == [{"name": "STORAGE_URI", "value": "s3://models/helmet"}]
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "2Gi"}
    assert container["ports"] == [{"containerPort": 8080, "name": "http1", "protocol": "TCP"}]  # Knative: one port
    args = container["args"]
    assert args[:4] == ["--model-dir", "/mnt/models", "--host", "0.0.0.0"]
    assert dict(zip(args[4::2], args[5::2], strict=True)) == {
        "--http-port": "8080", "--grpc-port": "8081", "--threads": "2", "--max-batch-size": "8",
        "--max-latency-ms": "20"}


def test_container_args_are_what_the_image_entrypoint_accepts():
    from mlkit.serving.__main__ import parse_args

    args = parse_args(manifests.server_args(threads=3, max_batch_size=4, max_latency_ms=7))
    assert (args.model_dir, args.host, args.http_port, args.grpc_port) == ("/mnt/models", "0.0.0.0", 8080, 8081)
    assert (args.threads, args.max_batch_size, args.max_latency_ms, args.instances) == (3, 4, 7.0, 1)
    assert "--instances" not in manifests.server_args()  # the default stays out of the manifests
    assert "--model-control" not in manifests.server_args()  # as every default: the image's own, poll (hot reload)
    assert parse_args(manifests.server_args()).model_control == "poll"
    assert parse_args(manifests.server_args(threads=1, instances=2)).instances == 2


def test_raw_deployment_exposes_grpc_and_no_batcher_by_default():
    doc = manifests.to_dict(manifests.inference_service("helmet", "gs://b/m", deployment_mode="RawDeployment"))
    assert_valid(doc)
    assert doc["metadata"]["annotations"] == {"serving.kserve.io/deploymentMode": "RawDeployment"}
    assert "batcher" not in doc["spec"]["predictor"]
    assert [p["name"] for p in doc["spec"]["predictor"]["containers"][0]["ports"]] == ["http1", "h2c"]


@pytest.mark.parametrize("cluster", [False, True])
def test_serving_runtime(cluster):
    doc = manifests.to_dict(manifests.serving_runtime(image="registry.example/mlkit:1", cluster=cluster))
    assert_valid(doc)
    assert doc["kind"] == ("ClusterServingRuntime" if cluster else "ServingRuntime")
    assert ("namespace" in doc["metadata"]) is not cluster
    spec = doc["spec"]
    assert spec["supportedModelFormats"] == [{"autoSelect": True, "name": "tflite", "version": "2"}]
    assert spec["protocolVersions"] == ["v1", "v2", "grpc-v2"]
    (container,) = spec["containers"]
    assert container["command"] == ["python", "-m", "mlkit.serving"]
    assert container["args"][:4] == ["--model-dir", "/mnt/models", "--host", "0.0.0.0"]
    assert container["image"] == "registry.example/mlkit:1"


def test_tflite_inference_service_is_the_short_user_form():
    doc = manifests.to_dict(manifests.tflite_inference_service("helmet", "s3://models/helmet"))
    assert_valid(doc)
    assert doc["spec"]["predictor"]["model"] == {
        "modelFormat": {"name": "tflite", "version": "2"}, "protocolVersion": "v2", "runtime": "mlkit-tflite",
        "storageUri": "s3://models/helmet"}


def test_the_validator_bites():
    """A manifest a cluster would refuse fails here: wrong type, unknown field, missing required field."""
    good = manifests.to_dict(manifests.inference_service("helmet", "s3://m/h", max_batch_size=4))
    assert_valid(good)
    bad_type = copy.deepcopy(good)
    bad_type["spec"]["predictor"]["batcher"]["maxBatchSize"] = "x"
    assert any("maxBatchSize" in e and "'x' is not of type 'integer'" in e for e in crd_errors(bad_type))
    typo = copy.deepcopy(good)
    typo["spec"]["predictor"]["containers"][0]["imagee"] = "x"
    assert any("imagee" in e for e in crd_errors(typo))
    no_image_name = copy.deepcopy(good)
    del no_image_name["spec"]["predictor"]["containers"][0]["name"]
    assert any("'name' is a required property" in e for e in crd_errors(no_image_name))
    # int-or-string fields take both, and nothing else
    for cpu, ok in (("500m", True), (2, True), (1.5, False)):
        doc = copy.deepcopy(good)
        doc["spec"]["predictor"]["containers"][0]["resources"]["limits"]["cpu"] = cpu
        assert (crd_errors(doc) == []) is ok, cpu


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "Helmet_1"}, "DNS-1035"),
    ({"storage_uri": "models/helmet"}, "storage_uri"),
    ({"max_batch_size": 0}, "max_batch_size"),
    ({"max_latency_ms": 2.5}, "whole number"),
    ({"deployment_mode": "Knative"}, "deployment_mode"),
    ({"image": " "}, "image is empty"),
    ({"instances": 0}, "instances must be >= 1"),
    ({"storage_uri": "://models"}, "storage-initializer can fetch"),
    ({"image": "bad image!!"}, "not a container image reference"),
    ({"namespace": "Bad NS"}, "not a valid Kubernetes namespace"),
    ({"cpu": "abc"}, "cpu 'abc' is not a positive Kubernetes quantity"),
    ({"cpu": "0"}, "cpu '0' is not a positive"),
    ({"memory": "-5Gi"}, "memory '-5Gi' is not a positive"),
])
def test_bad_arguments(kwargs, message):
    args = {"name": "helmet", "storage_uri": "s3://m/h", **kwargs}
    with pytest.raises(MlkitError, match=message):
        manifests.inference_service(**args)


def test_default_image_is_the_component_image():
    from mlkit.components.common import MLKIT_IMAGE

    assert manifests.DEFAULT_IMAGE == MLKIT_IMAGE


# --------------------------------------------------------------------------- CLI
def _cli(*args):
    from mlkit.cli import main

    result = CliRunner().invoke(main, ["serve", *map(str, args)])
    assert "Traceback" not in result.output, result.output
    return result


def test_cli_manifest_prints_valid_yaml():
    r = _cli("manifest", "helmet", "--storage-uri", "s3://m/h", "--max-batch-size", "4", "--max-latency-ms", "10",
             "--image", "registry.example/mlkit:2")
    assert r.exit_code == 0, r.output
    (doc,) = yaml.safe_load_all(r.output)
    assert_valid(doc)
    assert doc["spec"]["predictor"]["batcher"] == {"maxBatchSize": 4, "maxLatency": 10}
    assert doc["spec"]["predictor"]["containers"][0]["image"] == "registry.example/mlkit:2"


def test_cli_manifest_runtime_form():
    r = _cli("manifest", "helmet", "--storage-uri", "s3://m/h", "--runtime", "--cluster-runtime")
    assert r.exit_code == 0, r.output
    runtime, isvc = yaml.safe_load_all(r.output)
    assert (runtime["kind"], isvc["kind"]) == ("ClusterServingRuntime", "InferenceService")
    assert isvc["spec"]["predictor"]["model"]["runtime"] == runtime["metadata"]["name"]
    for doc in (runtime, isvc):
        assert_valid(doc)
    r = _cli("manifest", "helmet", "--storage-uri", "s3://m/h", "--runtime", "--max-batch-size", "4")
    assert r.exit_code == 2 and "drop --runtime" in r.output



def _auth_parts(container: dict, volumes: list) -> tuple[str, dict, dict]:
    """(the --auth-token-file argument, the container's mount, the pod's volume)."""
    args = container["args"]
    (mount,) = container["volumeMounts"]
    (volume,) = volumes
    return args[args.index("--auth-token-file") + 1], mount, volume


@pytest.mark.parametrize("raw", [False, True])
def test_cli_manifest_mounts_the_auth_secret_and_passes_the_token_file(raw):
    from mlkit.serving.__main__ import parse_args

    r = _cli("manifest", "helmet", "--storage-uri", "s3://m/h", "--auth-secret", "helmet-token",
             *(["--raw"] if raw else []))
    assert r.exit_code == 0, r.output
    (doc,) = yaml.safe_load_all(r.output)
    assert_valid(doc)
    predictor = doc["spec"]["predictor"]
    (container,) = predictor["containers"]
    path, mount, volume = _auth_parts(container, predictor["volumes"])
    assert path == "/etc/mlkit/auth/token" and parse_args(container["args"]).auth_token_file == path
    assert mount == {"mountPath": "/etc/mlkit/auth", "name": volume["name"], "readOnly": True}
    assert volume["secret"] == {"secretName": "helmet-token", "items": [{"key": "token", "path": "token"}]}
    assert "--auth-token-file" not in manifests.server_args()  # no secret, no authentication
    assert "volumes" not in manifests.to_dict(manifests.inference_service("h", "s3://m/h"))["spec"]["predictor"]


def test_the_runtime_form_mounts_the_auth_secret_in_the_runtime():
    r = _cli("manifest", "helmet", "--storage-uri", "s3://m/h", "--runtime", "--auth-secret", "tok")
    assert r.exit_code == 0, r.output
    runtime, isvc = yaml.safe_load_all(r.output)
    for doc in (runtime, isvc):
        assert_valid(doc)
    (container,) = runtime["spec"]["containers"]
    path, mount, volume = _auth_parts(container, runtime["spec"]["volumes"])
    assert path.startswith(mount["mountPath"] + "/") and volume["secret"]["secretName"] == "tok"


def test_a_bad_auth_secret_name_is_refused():
    r = _cli("manifest", "helmet", "--storage-uri", "s3://m/h", "--auth-secret", "Helmet_Token")
    assert r.exit_code != 0 and "not a valid Kubernetes Secret name" in r.output


# --------------------------------------------------------------------------- cluster (KServeClient mocked)
class FakeKServeClient:
    """Stands in for kserve.KServeClient; records calls. ``existing`` makes ``get`` find the object."""

    def __init__(self, existing: dict | None = None, ready_url: str = "http://helmet.kubeflow.example.com"):
        self.calls, self.existing, self.ready_url = [], existing, ready_url

    def get(self, name, namespace=None):
        self.calls.append(("get", name, namespace))
        if self.existing is None and not any(c[0] == "create" for c in self.calls):
            raise RuntimeError("Exception when calling CustomObjectsApi->get_namespaced_custom_object: (404)")
        return {"metadata": {"name": name, "resourceVersion": "41"}, "status": {"url": self.ready_url}}

    def create(self, isvc, namespace=None):
        self.calls.append(("create", manifests.to_dict(isvc), namespace))

    def replace(self, name, isvc, namespace=None):
        self.calls.append(("replace", name, manifests.to_dict(isvc), namespace))

    def wait_isvc_ready(self, name, namespace=None, timeout_seconds=600, polling_interval=10):
        self.calls.append(("wait_isvc_ready", name, namespace, timeout_seconds))

    def delete(self, name, namespace=None):
        self.calls.append(("delete", name, namespace))


@pytest.fixture
def no_kubeconfig(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing-config"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


@pytest.fixture
def kubeconfig(tmp_path, monkeypatch):
    path = tmp_path / "kubeconfig"
    path.write_text("apiVersion: v1\nkind: Config\n")
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path


def test_deploy_creates_and_waits():
    fake = FakeKServeClient()
    isvc = manifests.inference_service("helmet", "s3://m/h", namespace="ignored")
    status = manifests.deploy(isvc, "team-a", timeout=120, client=fake)
    assert status == {"name": "helmet", "namespace": "team-a", "url": "http://helmet.kubeflow.example.com",
                      "ready": True}
    (_, created, namespace) = fake.calls[1]
    assert [c[0] for c in fake.calls] == ["get", "create", "wait_isvc_ready", "get"]
    assert namespace == "team-a" and created["metadata"]["namespace"] == "team-a"
    assert_valid(created)
    assert fake.calls[2] == ("wait_isvc_ready", "helmet", "team-a", 120)


def test_deploy_replaces_an_existing_service_without_waiting():
    fake = FakeKServeClient(existing={})
    status = manifests.deploy(manifests.inference_service("helmet", "s3://m/h"), wait=False, client=fake)
    assert status["ready"] is False
    assert [c[0] for c in fake.calls] == ["get", "replace"]
    assert fake.calls[1][2]["metadata"]["resourceVersion"] == "41"


def test_delete_and_api_errors():
    fake = FakeKServeClient()
    manifests.delete("helmet", "team-a", client=fake)
    assert fake.calls == [("delete", "helmet", "team-a")]

    class Failing(FakeKServeClient):
        def wait_isvc_ready(self, name, namespace=None, **kw):
            raise RuntimeError("Timeout to start the InferenceService helmet.")

    with pytest.raises(MlkitError, match="waiting for InferenceService kubeflow/helmet failed: Timeout"):
        manifests.deploy(manifests.inference_service("helmet", "s3://m/h"), client=Failing())


def test_client_comes_from_the_kubeconfig(kubeconfig):
    seen = {}
    client = manifests.kserve_client(factory=lambda **kw: seen.update(kw) or "client")
    assert client == "client" and seen == {"config_file": str(kubeconfig)}


def test_no_kubeconfig_is_a_clear_error(no_kubeconfig):
    with pytest.raises(MlkitError, match="no kubeconfig found: set KUBECONFIG or ~/.kube/config"):
        manifests.deploy(manifests.inference_service("helmet", "s3://m/h"))
    with pytest.raises(MlkitError, match="no kubeconfig found"):
        manifests.delete("helmet")
    r = _cli("deploy", "helmet", "--storage-uri", "s3://m/h")
    assert r.exit_code == 2 and "no kubeconfig found" in r.output


def test_cli_deploy_and_delete_use_kserve_client(kubeconfig, monkeypatch):
    import kserve

    fakes = []

    def factory(**kw):
        fakes.append(FakeKServeClient())
        return fakes[-1]

    monkeypatch.setattr(kserve, "KServeClient", factory)
    r = _cli("deploy", "helmet", "--storage-uri", "s3://m/h", "--namespace", "team-a", "--timeout", "30")
    assert r.exit_code == 0, r.output
    assert "InferenceService team-a/helmet ready at http://helmet.kubeflow.example.com" in r.output
    r = _cli("delete", "helmet", "--namespace", "team-a")
    assert r.exit_code == 0, r.output
    assert fakes[1].calls == [("delete", "helmet", "team-a")]
