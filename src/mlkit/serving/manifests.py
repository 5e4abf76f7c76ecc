"""KServe manifests for mlkit's serving image, built with the kserve SDK, and deployment with ``KServeClient``.

Two ways to put a model repository on KServe:

- ``inference_service``: an InferenceService whose predictor is a *custom container* running the serving
  image (``python -m mlkit.serving``). ``STORAGE_URI`` makes KServe's storage-initializer download the
  repository to ``/mnt/models`` before the container starts.
- ``serving_runtime`` + ``tflite_inference_service``: install the ``mlkit-tflite`` (Cluster)ServingRuntime
  once, then users write the short form ``predictor.model.modelFormat.name: tflite`` + ``storageUri``.

Ports. Knative (KServe's default *Serverless* mode) allows exactly one container port, so a Serverless
InferenceService exposes HTTP (``http1`` 8080: v1 + v2 REST, /metrics) only. With
``deployment_mode="RawDeployment"`` (plain Deployment + Service) the container also exposes v2 gRPC on 8081
(named ``h2c``). The server listens on both in any case.

Authentication. ``auth_secret=NAME`` mounts the Kubernetes Secret ``NAME`` (its key ``token``) read-only at
``AUTH_TOKEN_FILE`` and starts the server with ``--auth-token-file`` there: every route but health, readiness
and /metrics then needs ``Authorization: Bearer <token>``. Create the Secret first, e.g.
``kubectl create secret generic NAME --from-file=token=./token.txt``.

``deploy`` / ``wait_ready`` / ``delete`` need a kubeconfig (``$KUBECONFIG`` or ``~/.kube/config``) or an
in-cluster service account; without one they raise ``MlkitError`` before touching the network.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlkit.errors import MlkitError

# The serving image; the same reference as components.common.MLKIT_IMAGE (a test keeps them equal).
DEFAULT_IMAGE = "ghcr.io/mlkit/mlkit-serving:0.1.0"
DEFAULT_NAMESPACE = "kubeflow"
DEFAULT_RUNTIME = "mlkit-tflite"
MODEL_FORMAT = "tflite"
MODEL_FORMAT_VERSION = "2"
MODEL_DIR = "/mnt/models"
HTTP_PORT, GRPC_PORT = 8080, 8081
DEPLOYMENT_MODES = ("Serverless", "RawDeployment")
AUTH_SECRET_KEY = "token"  # the Secret's key that holds the token
AUTH_MOUNT = "/etc/mlkit/auth"
AUTH_TOKEN_FILE = f"{AUTH_MOUNT}/{AUTH_SECRET_KEY}"
_AUTH_VOLUME = "mlkit-auth-token"
_DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
_NO_KUBECONFIG = ("no kubeconfig found: set KUBECONFIG or ~/.kube/config (e.g. `kubectl config view` works), "
                  "or run inside a cluster with a service account; `mlkit serve manifest` prints the YAML "
                  "to apply with kubectl instead")


def _check_name(kind: str, name: str) -> None:
    import re

    # InferenceService names become DNS labels (Knative service names): at most 63, no dots.
    if not re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", name or ""):
        raise MlkitError(f"{kind} name {name!r} is not a valid DNS-1035 label: use at most 63 lower-case "
                         "letters, digits and '-', starting with a letter and ending with a letter or digit")


# A container image reference: [host[:port]/]path[:tag][@sha256:digest], lower-case path components.
_IMAGE = (r"[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*"
          r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?")
# A Kubernetes resource quantity (positive): 500m, 1, 1.5, 2Gi, 512Mi, 1e3.
_QUANTITY = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]+)?"


def _check_common(storage_uri: str, image: str, threads: int, min_replicas: int, instances: int = 1) -> None:
    import re

    # Any scheme: a ClusterStorageContainer can add protocols to KServe's built-in s3, gs, pvc, https, hdfs, hf.
    if not storage_uri or not re.match(r"[A-Za-z][A-Za-z0-9+.-]*://.", storage_uri):
        raise MlkitError(f"storage_uri {storage_uri!r} must be a URI KServe's storage-initializer can fetch, "
                         "e.g. s3://bucket/models/helmet, gs://..., pvc://claim/path, https://...")
    _check_image(image)
    if threads < 1 or min_replicas < 0:
        raise MlkitError(f"threads must be >= 1 and min_replicas >= 0, got {threads} and {min_replicas}")
    if instances < 1:
        raise MlkitError(f"instances must be >= 1, got {instances}")


def _check_image(image: str) -> None:
    import re

    if not image or not image.strip():
        raise MlkitError("image is empty: pass the serving image reference, e.g. " + DEFAULT_IMAGE)
    if not re.fullmatch(_IMAGE, image):
        raise MlkitError(f"image {image!r} is not a container image reference such as {DEFAULT_IMAGE}")


def _check_namespace(namespace: str) -> None:
    import re

    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", namespace or ""):
        raise MlkitError(f"namespace {namespace!r} is not a valid Kubernetes namespace: at most 63 lower-case "
                         "letters, digits and '-', starting and ending with a letter or digit")


def _resources(cpu: str, memory: str):
    import re

    from kubernetes.client import V1ResourceRequirements

    for what, value, example in (("cpu", cpu, "500m or 2"), ("memory", memory, "512Mi or 2Gi")):
        if not re.fullmatch(_QUANTITY, str(value)) or not re.search(r"[1-9]", str(value).split("e")[0]):
            raise MlkitError(f"{what} {value!r} is not a positive Kubernetes quantity such as {example}")

    return V1ResourceRequirements(requests={"cpu": cpu, "memory": memory}, limits={"cpu": cpu, "memory": memory})


def _check_secret_name(name: str) -> None:
    import re

    # a Secret's name is a DNS-1123 subdomain
    if len(name or "") > 253 or not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*",
                                                  name or ""):
        raise MlkitError(f"auth secret name {name!r} is not a valid Kubernetes Secret name: lower-case letters, "
                         "digits, '-' and '.', starting and ending with a letter or digit")


def _auth_volume(secret: str | None) -> tuple[list | None, list | None]:
    """(pod volumes, container mounts) putting Secret ``secret``'s token at ``AUTH_TOKEN_FILE``; Nones without one."""
    if secret is None:
        return None, None
    from kubernetes.client import V1KeyToPath, V1SecretVolumeSource, V1Volume, V1VolumeMount

    _check_secret_name(secret)
    # items: a Secret without the key fails the pod's start with an event naming it, not the server's
    volume = V1Volume(name=_AUTH_VOLUME, secret=V1SecretVolumeSource(
        secret_name=secret, items=[V1KeyToPath(key=AUTH_SECRET_KEY, path=AUTH_SECRET_KEY)]))
    return [volume], [V1VolumeMount(name=_AUTH_VOLUME, mount_path=AUTH_MOUNT, read_only=True)]


def _ports(grpc: bool) -> list:
    from kubernetes.client import V1ContainerPort

    ports = [V1ContainerPort(name="http1", container_port=HTTP_PORT, protocol="TCP")]
    if grpc:
        ports.append(V1ContainerPort(name="h2c", container_port=GRPC_PORT, protocol="TCP"))
    return ports


def server_args(threads: int = 1, max_batch_size: int | None = None, max_latency_ms: float | None = None,
                instances: int = 1, auth: bool = False) -> list[str]:
    """Arguments of ``python -m mlkit.serving`` in a pod (model dir /mnt/models, bind 0.0.0.0)."""
    args = ["--model-dir", MODEL_DIR, "--host", "0.0.0.0", "--http-port", str(HTTP_PORT),
            "--grpc-port", str(GRPC_PORT), "--threads", str(threads)]
    if instances != 1:
        args += ["--instances", str(instances)]
    if max_batch_size is not None:
        args += ["--max-batch-size", str(max_batch_size)]
    if max_latency_ms is not None:
        args += ["--max-latency-ms", f"{max_latency_ms:g}"]
    if auth:
        args += ["--auth-token-file", AUTH_TOKEN_FILE]
    return args


def inference_service(name: str, storage_uri: str, image: str = DEFAULT_IMAGE, namespace: str = DEFAULT_NAMESPACE,
                      cpu: str = "1", memory: str = "1Gi", max_batch_size: int | None = None,
                      max_latency_ms: int | None = None, threads: int = 1, min_replicas: int = 1, instances: int = 1,
                      deployment_mode: str = "Serverless", auth_secret: str | None = None):
    """An InferenceService whose predictor is the serving image as a custom container.

    ``max_batch_size`` / ``max_latency_ms``: when either is given, KServe's batcher sidecar merges v1 requests
    (``spec.predictor.batcher``) and the server's own dynamic batcher gets the same limits (v2 and gRPC).
    ``deployment_mode="RawDeployment"`` adds the gRPC port (Knative allows one port, see the module doc).
    ``auth_secret``: a Secret whose key ``token`` the server then requires (see the module doc).
    """
    import kserve
    from kubernetes.client import V1Container, V1EnvVar, V1ObjectMeta

    _check_name("InferenceService", name)
    _check_namespace(namespace)
    _check_common(storage_uri, image, threads, min_replicas, instances)
    if deployment_mode not in DEPLOYMENT_MODES:
        raise MlkitError(f"deployment_mode must be one of {DEPLOYMENT_MODES}, got {deployment_mode!r}")
    if max_batch_size is not None and max_batch_size < 1:
        raise MlkitError(f"max_batch_size must be >= 1, got {max_batch_size}")
    if max_latency_ms is not None and (max_latency_ms < 0 or int(max_latency_ms) != max_latency_ms):
        raise MlkitError(f"max_latency_ms must be a whole number >= 0 (KServe's batcher), got {max_latency_ms}")
    batcher = None
    if max_batch_size is not None or max_latency_ms is not None:
        batcher = kserve.V1beta1Batcher(max_batch_size=max_batch_size,
                                        max_latency=None if max_latency_ms is None else int(max_latency_ms))
    volumes, mounts = _auth_volume(auth_secret)
    container = V1Container(
        name="kserve-container", image=image,
        args=server_args(threads, max_batch_size, max_latency_ms, instances, auth=auth_secret is not None),
        env=[V1EnvVar(name="STORAGE_URI", value=storage_uri)], ports=_ports(deployment_mode == "RawDeployment"),
        resources=_resources(cpu, memory), volume_mounts=mounts)
    annotations = {_DEPLOYMENT_MODE_ANNOTATION: deployment_mode} if deployment_mode != "Serverless" else None
    return kserve.V1beta1InferenceService(
        api_version="serving.kserve.io/v1beta1", kind="InferenceService",
        metadata=V1ObjectMeta(name=name, namespace=namespace, annotations=annotations,
                              labels={"app.kubernetes.io/managed-by": "mlkit"}),
        spec=kserve.V1beta1InferenceServiceSpec(predictor=kserve.V1beta1PredictorSpec(
            min_replicas=min_replicas, batcher=batcher, containers=[container], volumes=volumes)))


def serving_runtime(name: str = DEFAULT_RUNTIME, image: str = DEFAULT_IMAGE, cluster: bool = False,
                    namespace: str = DEFAULT_NAMESPACE, cpu: str = "1", memory: str = "1Gi",
                    auth_secret: str | None = None):
    """A ServingRuntime (``cluster=True``: ClusterServingRuntime) serving ``modelFormat: tflite`` models.

    ``auth_secret``: every model served by this runtime requires the Secret's token (see the module doc); a
    ClusterServingRuntime's Secret must exist in each namespace that uses it.
    """
    import kserve
    from kubernetes.client import V1Container, V1ObjectMeta

    _check_name("ServingRuntime", name)
    _check_namespace(namespace)
    _check_image(image)
    volumes, mounts = _auth_volume(auth_secret)
    auth = ["--auth-token-file", AUTH_TOKEN_FILE] if auth_secret is not None else []
    container = V1Container(
        name="kserve-container", image=image, command=["python", "-m", "mlkit.serving"],
        args=["--model-dir", MODEL_DIR, "--host", "0.0.0.0", "--http-port", str(HTTP_PORT),
              "--grpc-port", str(GRPC_PORT), *auth],
        ports=_ports(False), resources=_resources(cpu, memory), volume_mounts=mounts)
    spec = kserve.V1alpha1ServingRuntimeSpec(
        supported_model_formats=[kserve.V1alpha1SupportedModelFormat(
            name=MODEL_FORMAT, version=MODEL_FORMAT_VERSION, auto_select=True)],
        protocol_versions=["v1", "v2", "grpc-v2"], containers=[container], volumes=volumes,
        annotations={"prometheus.kserve.io/port": str(HTTP_PORT), "prometheus.kserve.io/path": "/metrics"})
    if cluster:
        return kserve.V1alpha1ClusterServingRuntime(
            api_version="serving.kserve.io/v1alpha1", kind="ClusterServingRuntime",
            metadata=V1ObjectMeta(name=name), spec=spec)
    return kserve.V1alpha1ServingRuntime(api_version="serving.kserve.io/v1alpha1", kind="ServingRuntime",
                                         metadata=V1ObjectMeta(name=name, namespace=namespace), spec=spec)


def tflite_inference_service(name: str, storage_uri: str, runtime: str | None = DEFAULT_RUNTIME,
                             namespace: str = DEFAULT_NAMESPACE, protocol_version: str = "v2",
                             min_replicas: int = 1):
    """The user-facing form: ``predictor.model.modelFormat.name: tflite`` + ``storageUri`` (+ ``runtime``).

    ``runtime=None`` lets KServe pick any runtime that auto-selects the tflite format.
    """
    import kserve
    from kubernetes.client import V1ObjectMeta

    _check_name("InferenceService", name)
    _check_namespace(namespace)
    _check_common(storage_uri, DEFAULT_IMAGE, 1, min_replicas)
    model = kserve.V1beta1ModelSpec(
        model_format=kserve.V1beta1ModelFormat(name=MODEL_FORMAT, version=MODEL_FORMAT_VERSION),
        runtime=runtime, storage_uri=storage_uri, protocol_version=protocol_version, name=None)
    return kserve.V1beta1InferenceService(
        api_version="serving.kserve.io/v1beta1", kind="InferenceService",
        metadata=V1ObjectMeta(name=name, namespace=namespace, labels={"app.kubernetes.io/managed-by": "mlkit"}),
        spec=kserve.V1beta1InferenceServiceSpec(predictor=kserve.V1beta1PredictorSpec(
            min_replicas=min_replicas, model=model)))


def to_dict(obj: Any) -> dict:
    """A kserve/kubernetes model as plain JSON-able data with the API's camelCase keys, Nones dropped."""
    from kubernetes.client import ApiClient

    return ApiClient().sanitize_for_serialization(obj)


def to_yaml(*objs: Any) -> str:
    """One YAML document per object (``---`` separated), keys in the API's order."""
    import yaml

    return yaml.safe_dump_all([o if isinstance(o, dict) else to_dict(o) for o in objs], sort_keys=False)


# --------------------------------------------------------------------------- cluster
def kubeconfig_path() -> Path | None:
    """The kubeconfig a client would load (first existing file of ``$KUBECONFIG``, else ``~/.kube/config``)."""
    env = os.environ.get("KUBECONFIG", "")
    candidates = [Path(p).expanduser() for p in env.split(os.pathsep) if p] or [Path("~/.kube/config").expanduser()]
    return next((p for p in candidates if p.is_file()), None)


def _in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and Path(
        "/var/run/secrets/kubernetes.io/serviceaccount/token").is_file()


def kserve_client(factory: Callable[..., Any] | None = None):
    """A ``kserve.KServeClient`` from the kubeconfig (or in-cluster config); ``MlkitError`` when there is none."""
    config = kubeconfig_path()
    if config is None and not _in_cluster():
        raise MlkitError(_NO_KUBECONFIG)
    if factory is None:
        from kserve import KServeClient as factory
    return factory(config_file=str(config)) if config is not None else factory()


def _api_errors(action: str):
    import contextlib

    @contextlib.contextmanager
    def wrap():
        try:
            yield
        except MlkitError:
            raise
        except RuntimeError as exc:  # KServeClient wraps ApiException in RuntimeError
            raise MlkitError(f"{action} failed: {exc}") from exc
        except OSError as exc:
            raise MlkitError(f"{action} failed: cannot reach the cluster: {exc}") from exc

    return wrap()


def deploy(isvc, namespace: str | None = None, wait: bool = True, timeout: int = 300, client=None) -> dict:
    """Create the InferenceService (``replace`` when it exists), optionally wait until Ready; returns the status.

    Returns ``{"name", "namespace", "url", "ready"}``; ``url`` is the service's status URL once known.
    """
    client = client or kserve_client()
    name = isvc.metadata.name
    namespace = namespace or isvc.metadata.namespace or DEFAULT_NAMESPACE
    isvc.metadata.namespace = namespace
    with _api_errors(f"creating InferenceService {namespace}/{name}"):
        try:
            existing = client.get(name, namespace=namespace)
        except RuntimeError:  # KServeClient.get raises RuntimeError for 404 (and for any API error)
            existing = None
        if existing:
            # An update must carry the current resourceVersion (optimistic concurrency).
            isvc.metadata.resource_version = (existing.get("metadata") or {}).get("resourceVersion")
            client.replace(name, isvc, namespace=namespace)
        else:
            client.create(isvc, namespace=namespace)
    if wait:
        return wait_ready(name, namespace, timeout=timeout, client=client)
    return {"name": name, "namespace": namespace, "url": None, "ready": False}


def wait_ready(name: str, namespace: str = DEFAULT_NAMESPACE, timeout: int = 300, client=None) -> dict:
    """Block until the InferenceService is Ready (``MlkitError`` after ``timeout`` s); returns its status."""
    client = client or kserve_client()
    with _api_errors(f"waiting for InferenceService {namespace}/{name}"):
        client.wait_isvc_ready(name, namespace=namespace, timeout_seconds=timeout,
                               polling_interval=min(5, max(1, timeout)))
        isvc = client.get(name, namespace=namespace)
    status = (isvc or {}).get("status", {}) if isinstance(isvc, dict) else {}
    return {"name": name, "namespace": namespace, "url": status.get("url"), "ready": True}


def delete(name: str, namespace: str = DEFAULT_NAMESPACE, client=None) -> None:
    """Delete the InferenceService ``namespace/name``."""
    client = client or kserve_client()
    with _api_errors(f"deleting InferenceService {namespace}/{name}"):
        client.delete(name, namespace=namespace)
