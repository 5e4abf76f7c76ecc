"""serve: a model repository -> a running endpoint (local detached server, or a KServe InferenceService)."""

# No `from __future__ import annotations` here: KFP reads the real annotation objects (Input[Model], ...).

from typing import NamedTuple

from kfp.dsl import Artifact, Input, Model, Output
from kfp.dsl.python_component import PythonComponent

from mlkit.components.common import MLKIT_IMAGE, mlkit_component, with_base_image


@mlkit_component
def serve(repository: Input[Model], endpoint: Output[Artifact], mode: str = "local", name: str = "mlkit",
          port: int = 8080, namespace: str = "kubeflow", storage_uri: str = "",
          image: str = "ghcr.io/mlkit/mlkit-serving:0.1.0",  # a literal: the task runs only this function's source
          timeout: int = 300) -> NamedTuple("ServeOutputs", [("url", str)]):
    """Serve ``repository`` (``<name>/<version>/model.tflite``) and return its URL.

    ``mode="local"``: a detached ``python -m mlkit.serving`` on 127.0.0.1 that outlives the task (state under
    ``$MLKIT_STATE_DIR`` or ``~/.mlkit/servers``; stop it with ``mlkit serve stop NAME``); ``port`` is
    the wanted HTTP port, replaced by a free one when busy (gRPC: a free port).
    ``mode="cluster"``: uploads the repository to ``storage_uri`` (empty: serve the artifact where it is,
    ``minio://`` read as ``s3://``), creates or replaces InferenceService ``namespace/name`` running ``image``
    and waits up to ``timeout`` s until it is Ready.
    ``endpoint`` gets the details as metadata (and ``endpoint.json``).
    """
    import json
    import logging
    import os
    from collections import namedtuple

    log = logging.getLogger("mlkit.components.serve")
    if mode not in ("local", "cluster"):
        raise ValueError(f"mode must be 'local' or 'cluster', got {mode!r}")
    if not os.path.isdir(repository.path) or not os.listdir(repository.path):
        raise ValueError(f"model repository {repository.path} is missing or empty: publish models first")
    if not 0 <= port <= 65535 or timeout < 1:
        raise ValueError(f"port must be in 0..65535 and timeout >= 1, got {port} and {timeout}")
    if mode == "local":
        from mlkit.serving import lifecycle

        state = lifecycle.start(name, repository.path, http_port=port, timeout=float(timeout), replace=True)
        info = {"mode": mode, "name": name, "url": state.url, "grpc_url": state.grpc_url, "pid": state.pid,
                "log": state.log, "model_dir": state.model_dir}
    else:
        from mlkit.data.storage import upload
        from mlkit.serving import manifests

        if storage_uri:
            upload(repository.path, storage_uri)
            uri = storage_uri
        else:
            uri = repository.uri.replace("minio://", "s3://", 1)
            if "://" not in uri:
                raise ValueError(f"the repository is at the local path {uri}; pass storage_uri (s3://...) so the "
                                 "cluster can fetch it")
        isvc = manifests.inference_service(name, uri, image=image, namespace=namespace)
        status = manifests.deploy(isvc, namespace, wait=True, timeout=timeout)
        info = {"mode": mode, "name": name, "namespace": namespace, "url": status["url"] or "",
                "storage_uri": uri, "image": image}
    log.info("serving %s at %s", repository.path, info["url"])
    os.makedirs(endpoint.path, exist_ok=True)
    with open(os.path.join(endpoint.path, "endpoint.json"), "w") as f:
        json.dump(info, f, indent=2)
    endpoint.metadata.update(info)
    return namedtuple("ServeOutputs", ["url"])(info["url"])


def make_component(base_image: str = MLKIT_IMAGE) -> PythonComponent:
    """``serve`` built on ``base_image``."""
    return with_base_image(serve, base_image)
