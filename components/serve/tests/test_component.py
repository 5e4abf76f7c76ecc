"""serve component: python_func in local mode (a real detached server, stopped in teardown) and in cluster
mode with only ``kserve.KServeClient`` replaced (no Kubernetes API server exists here or in CI)."""

import dataclasses
import json
import shutil

import httpx
import pytest
from kfp import dsl

from mlkit.components.serve.component import serve
from mlkit.serving import lifecycle


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    """A model repository ``helmet/1/{model.tflite,metadata.json}`` with a tiny untrained detector."""
    from mlkit.models.config import LITTLE
    from mlkit.models.detector import build_detector
    from mlkit.models.export import export_tflite
    from mlkit.models.train import save_detector

    tmp = tmp_path_factory.mktemp("model")
    cfg = dataclasses.replace(LITTLE, input_width=128, input_height=96, neck_channels=16, head_convs=1)
    save_detector(build_detector(cfg, seed=0), cfg, tmp / "keras")
    exported = export_tflite(tmp / "keras", tmp / "export", ["fp32"])["fp32"].parent
    repo = tmp / "repo"
    shutil.copytree(exported, repo / "helmet" / "1", ignore=shutil.ignore_patterns("*.json.tmp"))
    return repo


@pytest.fixture
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MLKIT_STATE_DIR", str(tmp_path / "state"))
    yield tmp_path / "state"
    for state, _ in lifecycle.status():
        lifecycle.stop(state.name, timeout=5)


def test_local_mode_starts_a_detached_server(repository, state_dir, tmp_path):
    endpoint = dsl.Artifact(uri=str(tmp_path / "endpoint"))
    out = serve.python_func(repository=dsl.Model(uri=str(repository)), endpoint=endpoint, name="unit-serve",
                            port=0, timeout=120)
    assert out.url.startswith("http://127.0.0.1:")
    assert httpx.get(f"{out.url}/v2/models/helmet/ready", timeout=5).status_code == 200
    assert endpoint.metadata["url"] == out.url and endpoint.metadata["mode"] == "local"
    assert json.loads((tmp_path / "endpoint" / "endpoint.json").read_text())["url"] == out.url
    assert lifecycle.get("unit-serve").url == out.url  # `mlkit serve stop unit-serve` can end it

    # serving again under the same name replaces the server (a re-run of the pipeline)
    again = serve.python_func(repository=dsl.Model(uri=str(repository)),
                              endpoint=dsl.Artifact(uri=str(tmp_path / "e2")), name="unit-serve", port=0)
    assert [s.name for s, alive in lifecycle.status() if alive] == ["unit-serve"]
    assert httpx.get(f"{again.url}/v2/health/ready", timeout=5).status_code == 200


class FakeKServeClient:
    calls: list = []

    def __init__(self, **kwargs):
        FakeKServeClient.calls.append(("init", kwargs))

    def get(self, name, namespace=None):
        if not any(c[0] == "create" for c in self.calls):
            raise RuntimeError("(404) Not Found")
        return {"status": {"url": f"http://{name}.{namespace}.example.com"}}

    def create(self, isvc, namespace=None):
        from mlkit.serving.manifests import to_dict

        FakeKServeClient.calls.append(("create", to_dict(isvc), namespace))

    def wait_isvc_ready(self, name, namespace=None, timeout_seconds=600, polling_interval=10):
        FakeKServeClient.calls.append(("wait", name, namespace, timeout_seconds))


def test_cluster_mode_uploads_and_deploys(repository, tmp_path, monkeypatch):
    import kserve

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    FakeKServeClient.calls = []
    monkeypatch.setattr(kserve, "KServeClient", FakeKServeClient)
    bucket = tmp_path / "bucket"  # a file:// destination stands in for s3:// (same upload code path)
    endpoint = dsl.Artifact(uri=str(tmp_path / "endpoint"))
    out = serve.python_func(repository=dsl.Model(uri=str(repository)), endpoint=endpoint, mode="cluster",
                            name="helmet", namespace="team-a", storage_uri=f"file://{bucket}",
                            image="registry.example/mlkit:1", timeout=60)

    assert out.url == "http://helmet.team-a.example.com"
    assert (bucket / "helmet" / "1" / "model.tflite").is_file()
    kinds = [c[0] for c in FakeKServeClient.calls]
    assert kinds == ["init", "create", "wait"]
    (_, created, namespace) = FakeKServeClient.calls[1]
    assert namespace == "team-a"
    container = created["spec"]["predictor"]["containers"][0]
    assert container["image"] == "registry.example/mlkit:1"
    assert container["env"] == [{"name": "STORAGE_URI", "value": f"file://{bucket}"}]
    assert FakeKServeClient.calls[2] == ("wait", "helmet", "team-a", 60)
    assert endpoint.metadata["storage_uri"] == f"file://{bucket}"


def test_errors(repository, tmp_path, monkeypatch):
    model = dsl.Model(uri=str(repository))
    with pytest.raises(ValueError, match="mode must be"):
        serve.python_func(repository=model, endpoint=dsl.Artifact(uri=str(tmp_path / "e")), mode="edge")
    with pytest.raises(ValueError, match="missing or empty"):
        serve.python_func(repository=dsl.Model(uri=str(tmp_path / "nothing")),
                          endpoint=dsl.Artifact(uri=str(tmp_path / "e")))
    with pytest.raises(ValueError, match="pass storage_uri"):
        serve.python_func(repository=model, endpoint=dsl.Artifact(uri=str(tmp_path / "e")), mode="cluster")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ValueError, match="no kubeconfig found"):  # MlkitError is a ValueError
        serve.python_func(repository=model, endpoint=dsl.Artifact(uri=str(tmp_path / "e")), mode="cluster",
                          storage_uri=f"file://{tmp_path / 'b'}")


def test_task_source_is_self_contained():
    """A task runs only the function's source (plus kfp's star imports): no module-level names may leak in."""
    from mlkit.components.common import MLKIT_IMAGE

    assert serve.component_spec.inputs["image"].default == MLKIT_IMAGE
    code = serve.component_spec.implementation.container.command[-1]  # the ephemeral_component.py text
    namespace = {}
    exec(compile(code, "ephemeral_component.py", "exec"), namespace)  # defines serve(); NameError if not
    assert callable(namespace["serve"])


def test_interface():
    spec = serve.component_spec
    assert set(spec.inputs) == {"repository", "mode", "name", "port", "namespace", "storage_uri", "image",
                                "timeout"}
    assert set(spec.outputs) == {"endpoint", "url"}
