"""Compile a pipeline into a KServe InferenceGraph (Sequence + Ensemble routers) and its InferenceServices.

In-server, a node starts when its inputs are ready and tensors stay in memory. A KServe InferenceGraph
is coarser: its router calls one InferenceService per step over HTTP, runs a ``Sequence`` one step after
another (passing ``$request`` or the previous ``$response``) and an ``Ensemble`` all at once, merging
the answers into ``{stepName: response}``. So the compiler groups nodes by level (longest distance from
the request):

```
root (Sequence): level 0 -> level 1 -> ... (Hard dependencies: a failed step ends the request)
level k with one node      -> a step calling that node's service
level k with several nodes -> a step to node "level-k" (Ensemble of one step per node, named like the node)
```

Each node runs as its own InferenceService (``mlkit.serving.graph.step``), custom nodes included; data
that skips a level is forwarded by the steps in between. A node that reads both the request and other
nodes cannot be fed (a step gets one or the other) and is refused with an error naming it.
``storage_uri`` is where the config's folder is uploaded; model ``base_path``s must be relative to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlkit.errors import MlkitError
from mlkit.serving.graph.config import GraphConfig, load_config
from mlkit.serving.graph.pipeline import Pipeline
from mlkit.serving.graph.step import dns_name, step_service_name
from mlkit.serving.manifests import DEFAULT_IMAGE, DEFAULT_NAMESPACE, GRPC_PORT, HTTP_PORT, MODEL_DIR


def _check_layered(p: Pipeline) -> list[list[str]]:
    from mlkit.serving.graph.step import plan_step

    for name in p.nodes:
        plan_step(p, name)  # raises for a node the router cannot feed
    return p.levels()


def inference_graph(p: Pipeline, namespace: str = DEFAULT_NAMESPACE):
    """The InferenceGraph of pipeline ``p`` (kserve SDK object)."""
    import kserve
    from kubernetes.client import V1ObjectMeta

    levels = _check_layered(p)
    nodes: dict[str, Any] = {}
    root_steps = []
    for k, names in enumerate(levels):
        data = "$request" if k == 0 else "$response"
        if len(names) == 1:
            root_steps.append(kserve.V1alpha1InferenceStep(
                name=names[0], service_name=step_service_name(p.name, names[0]), data=data, dependency="Hard"))
        else:
            router = f"level-{k}"
            nodes[router] = kserve.V1alpha1InferenceRouter(router_type="Ensemble", steps=[
                kserve.V1alpha1InferenceStep(name=n, service_name=step_service_name(p.name, n), dependency="Hard")
                for n in names])
            root_steps.append(kserve.V1alpha1InferenceStep(name=router, node_name=router, data=data,
                                                           dependency="Hard"))
    nodes = {"root": kserve.V1alpha1InferenceRouter(router_type="Sequence", steps=root_steps), **nodes}
    return kserve.V1alpha1InferenceGraph(
        api_version="serving.kserve.io/v1alpha1", kind="InferenceGraph",
        metadata=V1ObjectMeta(name=dns_name(p.name), namespace=namespace,
                              labels={"app.kubernetes.io/managed-by": "mlkit"},
                              annotations={"mlkit.io/pipeline": p.name}),
        spec=kserve.V1alpha1InferenceGraphSpec(nodes=nodes))


def step_services(p: Pipeline, storage_uri: str, config_name: str, namespace: str = DEFAULT_NAMESPACE,
                  image: str = DEFAULT_IMAGE, cpu: str = "1", memory: str = "1Gi") -> list:
    """One InferenceService per node, running the serving image as that node's graph step."""
    from mlkit.serving.manifests import inference_service

    out = []
    for name in p.nodes:
        isvc = inference_service(step_service_name(p.name, name), storage_uri, image=image, namespace=namespace,
                                 cpu=cpu, memory=memory)
        isvc.spec.predictor.containers[0].args = [
            "--graph-config", f"{MODEL_DIR}/{config_name}", "--graph-step", f"{p.name}/{name}",
            "--host", "0.0.0.0", "--http-port", str(HTTP_PORT), "--grpc-port", str(GRPC_PORT)]
        isvc.metadata.annotations = {"mlkit.io/pipeline": p.name, "mlkit.io/node": name}
        out.append(isvc)
    return out


def compile_pipeline(p: Pipeline, storage_uri: str, config_name: str = "config.json", **kw) -> list:
    """[InferenceGraph, InferenceService...] for pipeline ``p``."""
    graph = inference_graph(p, kw.get("namespace", DEFAULT_NAMESPACE))
    return [graph, *step_services(p, storage_uri, config_name, **kw)]


def compile_config(config: str | Path | GraphConfig, storage_uri: str, only: str | None = None, **kw) -> dict:
    """``{pipeline: [InferenceGraph, InferenceServices...]}``; the config is fully checked first (models loaded)."""
    from mlkit.serving.graph.loading import Graph

    cfg = config if isinstance(config, GraphConfig) else load_config(config)
    for item in cfg.model_config_list:
        raw = item.config.base_path
        if Path(raw).is_absolute() or ".." in Path(raw).parts:
            raise MlkitError(f"model {item.config.name!r}: base_path {raw!r} must be relative to the config's "
                             f"folder, which is what {storage_uri} holds on the cluster")
    with Graph.load(cfg) as g:
        pipelines = {n: pm.pipeline for n, pm in g.pipelines.items() if only is None or n == only}
    if only is not None and not pipelines:
        names = [p.name for p in cfg.pipeline_config_list]
        raise MlkitError(f"no pipeline {only!r} in the config (pipelines: {names})")
    config_name = cfg.source.name if cfg.source else "config.json"
    return {n: compile_pipeline(p, storage_uri, config_name, **kw) for n, p in pipelines.items()}


def write_manifests(compiled: dict[str, list], out_dir: str | Path) -> list[Path]:
    """One ``<pipeline>.yaml`` per pipeline (InferenceGraph first), written atomically."""
    from mlkit.data.atomic import atomic_write_text
    from mlkit.serving.manifests import to_yaml

    out_dir = Path(out_dir)
    paths = []
    for name, objs in compiled.items():
        paths.append(atomic_write_text(out_dir / f"{dns_name(name)}.yaml", to_yaml(*objs)))
    return paths
