"""What every pipeline module shares: a kfp.local run and the ``python -m mlkit.pipelines.<name>`` compile entry."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any


def check_dataset_uri(uri: str, on_this_machine: bool) -> str:
    """``uri`` if the download step can take it: "" (generate), a local path, file://, s3:// or https://.

    ``on_this_machine`` (kfp.local): a local path must exist here. On a cluster it is a path inside the task's pod
    (a mounted volume), which cannot be checked from here.
    """
    from mlkit.data.storage import parse_uri
    from mlkit.errors import MlkitError

    if not uri:
        return uri
    scheme, location = parse_uri(uri)  # StorageError names an unsupported scheme or a malformed URI
    if on_this_machine and scheme == "file" and not Path(location).exists():
        raise MlkitError(f"dataset_uri {uri}: {location} does not exist; give an existing dataset folder, an s3:// or "
                         f"https:// URI, or leave it empty to generate synthetic data")
    return uri


def check_fraction(name: str, value: float | str) -> float:
    """``value`` as a float in [0, 1]; ``MlkitError`` otherwise."""
    from mlkit.errors import MlkitError

    try:
        x = float(value)
    except (TypeError, ValueError):
        raise MlkitError(f"{name} must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= x <= 1.0:
        raise MlkitError(f"{name} must be in [0, 1], got {x:g}")
    return x


def check_bundled_start(profile: str) -> None:
    """``MlkitError`` unless the profile's detectors have the committed models' architecture (init_from="bundled")."""
    import json

    from mlkit.errors import MlkitError
    from mlkit.models.bundled import NAMES, bundled_model
    from mlkit.profiles import get_profile

    p = get_profile(profile)
    for name, cfg in zip(NAMES, (p.little, p.big), strict=True):
        committed = json.loads((bundled_model(name) / "config.json").read_text())
        ours = json.loads(json.dumps(cfg.to_dict()))  # tuples as lists, as in the committed config.json
        keys = [k for k in ("input_width", "input_height", "alpha", "neck_channels", "head_convs", "class_names")
                if committed.get(k) != ours.get(k)]
        if keys:
            raise MlkitError(f"profile {profile!r}: its {name} detector differs from the committed one in "
                             f"{', '.join(keys)}, so it cannot start from it (init_from='bundled'); use the demo or "
                             f"full profile, or train from scratch (init_from='')")


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
    """``python -m mlkit.pipelines.<name> [out.yaml]``: compile the default-image pipeline to IR YAML."""
    from kfp import compiler

    target = sys.argv[1] if len(sys.argv) > 1 else default_target
    compiler.Compiler().compile(pipeline, target)
    print(f"wrote {target}")
