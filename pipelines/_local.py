"""What every pipeline module shares: a kfp.local run and the ``python -m pipelines.<name>`` compile entry."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any


def run_with_kfp_local(pipeline: Callable, pipeline_root: str | Path, arguments: dict[str, Any]) -> Any:
    """Run ``pipeline(**arguments)`` with kfp.local (one subprocess per task, this Python); returns the task.

    Outputs land under ``pipeline_root/<pipeline>-<timestamp>/<task>/``.
    """
    from kfp import local

    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    with warnings.catch_warnings():
        # Per-task noise: the SubprocessRunner warns for every image without "python" in its name (mlkit's
        # image is one) and for display names and cluster settings, which only a cluster uses.
        warnings.filterwarnings("ignore", message=".*non-Python base image", category=RuntimeWarning)
        warnings.filterwarnings("ignore", message=".*have no effect in the current local runner",
                                category=UserWarning)
        return pipeline(**arguments)


def compile_main(pipeline: Callable, default_target: str) -> None:
    """``python -m pipelines.<name> [out.yaml]``: compile the default-image pipeline to IR YAML."""
    from kfp import compiler

    target = sys.argv[1] if len(sys.argv) > 1 else default_target
    compiler.Compiler().compile(pipeline, target)
    print(f"wrote {target}")
