"""A pipeline config put to use: attached to a model repository (the server serves its pipelines, or one node of
a KServe InferenceGraph) or loaded in this process (``Graph``, no server needed)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kserve import Model

from mlkit.errors import MlkitError
from mlkit.serving.graph.config import GraphConfig, load_config
from mlkit.serving.graph.executor import NodeRun, execute
from mlkit.serving.graph.pipeline import ModelSignature, build_pipelines
from mlkit.serving.graph.serving import GraphRuntime, PipelineModel, Resolve, model_signature
from mlkit.serving.graph.step import step_models

log = logging.getLogger("mlkit.serving.graph.serving")  # the pipelines' log lines keep their logger


def _resolver(repository) -> Resolve:
    from mlkit.serving.repository import versioned

    def resolve(name: str, version: int | None):
        return repository.get_model(name if version is None else versioned(name, version))

    return resolve


def _signature(repository, cfg: GraphConfig) -> Callable[[str, int | None], ModelSignature]:
    resolve = _resolver(repository)
    paths = cfg.models()

    def signature(name: str, version: int | None) -> ModelSignature:
        model = resolve(name, version)
        if model is None or not model.ready:
            errors = [m.load_error for m in repository.versions.get(name, {}).values() if m.load_error]
            which = f"model {name!r}" + (f" version {version}" if version else "")
            if errors:
                raise MlkitError(f"{which} could not be loaded from {paths.get(name)}: {errors[-1]}")
            raise MlkitError(f"{which} is not loaded: no version folder <n>/model.tflite under {paths.get(name)}")
        return model_signature(model)

    return signature


def attach_graph(repository, config: str | Path | GraphConfig, *, step: str | None = None,
                 max_workers: int = 4) -> dict[str, Model]:
    """Load the config's models into ``repository`` and register its pipelines (or one cluster step).

    Returns ``{name: kserve model}`` of what was registered. Raises ``MlkitError`` for an invalid config
    before any pipeline is registered, so a server never starts with a broken pipeline.
    """
    cfg = config if isinstance(config, GraphConfig) else load_config(config)
    models = cfg.models()
    pipeline_names = [p.name for p in cfg.pipeline_config_list]
    drop: set[str] = set()
    if step is not None:
        # The whole pipeline is checked as in-server (so every model it uses is loaded once); the step then
        # keeps only its own node's model.
        pipeline, node = _split_step(step)
        nodes = cfg.pipeline(pipeline).nodes
        if node not in {n.name for n in nodes}:
            raise MlkitError(f"pipeline {pipeline!r} has no node {node!r} (nodes: {[n.name for n in nodes]})")
        used = {n.model_name for n in nodes if n.model_name}
        drop = used - {n.model_name for n in nodes if n.name == node and n.model_name}
        models = {k: v for k, v in models.items() if k in used}
    else:
        for name, base in models.items():
            if repository.root is not None and (repository.root / name).is_dir() and \
                    (repository.root / name).resolve() != base.resolve():
                raise MlkitError(f"model {name!r} of {cfg.source or 'the pipeline config'} ({base}) clashes with "
                                 f"the folder {repository.root / name} of the model repository; rename one")
    for name in pipeline_names:
        if repository.root is not None and (repository.root / name).is_dir():
            raise MlkitError(f"pipeline {name!r} is named like the model folder {repository.root / name}; "
                             "a request would not know which to run")
    for name, base in models.items():
        repository.add_model_path(name, base)
        repository.load_model(name)
    runtime = GraphRuntime(_resolver(repository), max_workers=max_workers)
    if step is not None:
        registered = step_models(cfg, _split_step(step), _signature(repository, cfg), runtime)
        for name in drop:
            repository.unload(name)
            repository.model_paths.pop(name, None)
    else:
        pipelines = build_pipelines(cfg, _signature(repository, cfg))
        registered = {name: PipelineModel(p, runtime) for name, p in pipelines.items()}
    repository.reserved |= set(registered)
    for name, model in registered.items():
        repository.update(model, name)
        log.info("serving pipeline %s (%d nodes, models %s)", name, len(model.pipeline.nodes),
                 sorted(n for n, _ in model.pipeline.model_names))
    return registered


def _split_step(step: str) -> tuple[str, str]:
    pipeline, sep, node = step.partition("/")
    if not sep or not pipeline or not node:
        raise MlkitError(f"graph step {step!r} must be PIPELINE/NODE")
    return pipeline, node


# --------------------------------------------------------------------------- in-process use
class Graph:
    """A pipeline config loaded in this process: ``run`` a pipeline on numpy inputs, no server needed.

    ``Graph.load("models/ensemble/config.json").run("helmet_ensemble", image=[crop1, crop2])``.
    """

    def __init__(self, repository, pipelines: dict[str, PipelineModel]) -> None:
        self.repository = repository
        self.pipelines = pipelines

    @classmethod
    def load(cls, config: str | Path | GraphConfig, num_threads: int = 1, max_batch_size: int = 1) -> Graph:
        from mlkit.serving.repository import TFLiteModelRepository

        repository = TFLiteModelRepository(None, num_threads=num_threads, max_batch_size=max_batch_size)
        return cls(repository, attach_graph(repository, config))

    def pipeline(self, name: str) -> PipelineModel:
        try:
            return self.pipelines[name]
        except KeyError:
            raise MlkitError(f"no pipeline {name!r}; pipelines: {sorted(self.pipelines)}") from None

    def model(self, name: str):
        model = self.repository.get_model(name)
        if model is None:
            raise MlkitError(f"no model {name!r}; models: {sorted(self.repository.versions)}")
        return model

    async def arun(self, name: str, trace: list[NodeRun] | None = None, **inputs: Any) -> dict[str, Any]:
        pm = self.pipeline(name)
        return await execute(pm.pipeline, inputs, pm.runtime, trace)

    def run(self, name: str, trace: list[NodeRun] | None = None, **inputs: Any) -> dict[str, Any]:
        """Run pipeline ``name``; inputs by pipeline input name (images: a list of RGB uint8 arrays)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.arun(name, trace, **inputs))
        # Inside a running loop (Jupyter): asyncio.run is refused there, so run on a helper thread's loop.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, self.arun(name, trace, **inputs)).result()

    def close(self) -> None:
        for pm in self.pipelines.values():
            pm.runtime.close()
        self.repository.stop_all()

    def __enter__(self) -> Graph:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
