"""mlkit's Kubeflow pipelines. ``PIPELINES`` maps a pipeline's name to the module that defines it.

Every module in the registry exposes ``build_pipeline(base_image=None, aws_secret=None, pvc=None,
pvc_mount="/mnt/data")`` (the pipeline function), the default-image pipeline, ``run_arguments(...)``
(checked run arguments with defaults filled in), ``run_local(pipeline_root, ...)`` (a kfp.local run that
returns a summary) and ``format_summary(summary)``. ``mlkit pipeline run|compile|submit`` use these.
Modules are imported on demand, so ``import mlkit.pipelines`` stays cheap.
"""

from __future__ import annotations

import importlib
from types import ModuleType

PIPELINES: dict[str, str] = {
    "object-detection": "mlkit.pipelines.object_detection",
    "joint-inference": "mlkit.pipelines.joint_inference",
    "joint-inference-video": "mlkit.pipelines.joint_inference_video",
    "incremental-learning": "mlkit.pipelines.incremental_learning",
}


def load(name: str) -> ModuleType:
    """The module of pipeline ``name``; KeyError names the known pipelines."""
    try:
        return importlib.import_module(PIPELINES[name])
    except KeyError:
        raise KeyError(f"unknown pipeline {name!r}; known: {', '.join(sorted(PIPELINES))}") from None


def file_stem(name: str) -> str:
    """The file name (no suffix) of a pipeline's compiled YAML: its module's name, e.g. object_detection."""
    return PIPELINES[name].rsplit(".", 1)[-1]
