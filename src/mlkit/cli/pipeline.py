"""``mlkit pipeline ...``: run Kubeflow pipelines locally (kfp.local), compile them to IR YAML, submit them.

The pipelines are ``mlkit.pipelines`` (the repository's top-level ``pipelines/`` folder, installed with mlkit),
so these commands work from an installed wheel in any folder. kfp is imported inside the commands, so
``import mlkit.cli.pipeline`` stays cheap.

Registered in ``mlkit.cli`` with ``main.add_command(pipeline)``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import click

from mlkit.cli.tools import PROFILE_NAMES, friendly
from mlkit.errors import MlkitError

# The names of mlkit.models.export.VARIANTS (not imported: it would pull numpy into every CLI start).
_VARIANTS = ("fp32", "fp16", "dynamic", "int8")
DEFAULT_PIPELINE_ROOT = Path("runs/pipelines")
DEFAULT_COMPILE_DIR = Path("build/pipelines")


# --------------------------------------------------------------------------- locating pipelines
def pipeline_registry() -> ModuleType:
    """mlkit's pipeline registry, ``mlkit.pipelines`` (``PIPELINES``, ``load``, ``file_stem``)."""
    import mlkit.pipelines

    return mlkit.pipelines


def load_pipeline(name: str) -> ModuleType:
    """The module of registered pipeline ``name``; ``MlkitError`` lists the known names."""
    registry = pipeline_registry()
    if name not in registry.PIPELINES:
        known = ", ".join(sorted(registry.PIPELINES))
        raise MlkitError(f"unknown pipeline {name!r}; known pipelines: {known}")
    return registry.load(name)


def compile_pipeline(name: str, package_path: Path, base_image: str | None = None,
                     aws_secret: str | None = None, pvc: str | None = None,
                     pvc_mount: str = "/mnt/data") -> Path:
    """Compile pipeline ``name`` to IR YAML at ``package_path`` (parents created); returns the path."""
    from kfp import compiler

    module = load_pipeline(name)
    try:
        func = module.build_pipeline(base_image=base_image, aws_secret=aws_secret, pvc=pvc,
                                     pvc_mount=pvc_mount)
    except ValueError as exc:  # a bad image, secret, PVC name or mount path
        raise MlkitError(str(exc)) from exc
    package_path = Path(package_path)
    package_path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(func, str(package_path))
    return package_path


# --------------------------------------------------------------------------- options shared by commands
def _run_options(fn: Callable) -> Callable:
    options = [
        click.option("--profile", type=click.Choice(PROFILE_NAMES), default="test", show_default=True,
                     help="Dataset size, models and training budget."),
        click.option("--dataset-uri", default="", metavar="URI",
                     help="Dataset to download (local path, file://, s3://, https://); "
                          "empty: generate synthetic scenes for the profile."),
        click.option("--map-threshold", type=click.FloatRange(0, 1), default=None, metavar="X",
                     help="Publish only if the big model's mAP@0.5 >= X (default: the profile's gate)."),
        click.option("--tflite-variant", type=click.Choice(_VARIANTS), default="int8", show_default=True,
                     help="TFLite variant to evaluate and publish."),
        click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
                     help="A pipeline-specific argument, e.g. --param little_uri=models/little/tflite "
                          "(repeatable)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _cluster_options(fn: Callable) -> Callable:
    options = [
        click.option("--base-image", default=None, metavar="IMAGE",
                     help="Image every component runs in (default: $MLKIT_BASE_IMAGE, else mlkit's image)."),
        click.option("--aws-secret", default=None, metavar="NAME",
                     help="Kubernetes Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                          "set as env in the download and convert tasks."),
        click.option("--pvc", default=None, metavar="NAME",
                     help="PersistentVolumeClaim to mount in every task."),
        click.option("--pvc-mount", default=None, metavar="PATH",
                     help="Where to mount --pvc  [default: /mnt/data]"),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


_COMMON_DEFAULTS = {"dataset_uri": "", "profile": "test", "map_threshold": None, "tflite_variant": "int8"}


def _arguments_for(fn: Callable, name: str, common: dict[str, Any], params: tuple[str, ...]) -> dict[str, Any]:
    """The common options ``fn`` takes, plus ``--param KEY=VALUE`` pairs; refuses what it does not take."""
    import inspect

    params_ = inspect.signature(fn).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params_.values())
    accepted = [p for p, v in params_.items() if p != "pipeline_root" and v.kind is not inspect.Parameter.VAR_KEYWORD]
    kwargs = {}
    for key, value in common.items():
        if key in accepted or takes_any:
            kwargs[key] = value
        elif value != _COMMON_DEFAULTS.get(key):
            raise MlkitError(f"pipeline {name} has no option --{key.replace('_', '-')}; "
                             f"its arguments: {', '.join(accepted)}")
    for item in params:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise MlkitError(f"--param {item!r}: expected KEY=VALUE")
        if key not in accepted and not takes_any:
            raise MlkitError(f"pipeline {name} has no argument {key!r}; its arguments: {', '.join(accepted)}")
        kwargs[key] = value
    return kwargs


def _pvc_mount(pvc: str | None, pvc_mount: str | None) -> str:
    if pvc_mount is not None and pvc is None:
        raise MlkitError("--pvc-mount needs --pvc NAME (the claim to mount)")
    return pvc_mount or "/mnt/data"


# --------------------------------------------------------------------------- commands
@click.group()
def pipeline() -> None:
    """Run Kubeflow pipelines locally, compile them to IR YAML, submit them to a cluster."""


@pipeline.command("run")
@click.argument("name")
@_run_options
@click.option("--pipeline-root", type=click.Path(file_okay=False, path_type=Path),
              default=DEFAULT_PIPELINE_ROOT, show_default=True,
              help="Where task outputs land (one folder per run).")
@friendly
def run_cmd(name: str, profile: str, dataset_uri: str, map_threshold: float | None, tflite_variant: str,
            params: tuple[str, ...], pipeline_root: Path) -> None:
    """Run pipeline NAME on this machine with kfp.local (object-detection, joint-inference,
    joint-inference-video, incremental-learning)."""
    module = load_pipeline(name)
    kwargs = _arguments_for(module.run_local, name, {"dataset_uri": dataset_uri, "profile": profile,
                                                     "map_threshold": map_threshold,
                                                     "tflite_variant": tflite_variant}, params)
    try:
        summary = module.run_local(pipeline_root, **kwargs)
    except RuntimeError as exc:  # a task failed; kfp.local printed its log above
        raise click.ClickException(f"{exc} See the task log above.") from None
    click.echo(module.format_summary(summary))


@pipeline.command("compile")
@click.argument("names", nargs=-1)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=DEFAULT_COMPILE_DIR, show_default=True,
              help="Folder for <pipeline>.yaml files (pipelines/golden refreshes the golden files).")
@_cluster_options
@friendly
def compile_cmd(names: tuple[str, ...], out_dir: Path, base_image: str | None, aws_secret: str | None,
                pvc: str | None, pvc_mount: str | None) -> None:
    """Compile pipelines NAMES (default: all registered) to KFP IR YAML."""
    mount = _pvc_mount(pvc, pvc_mount)
    registry = pipeline_registry()
    for name in names or sorted(registry.PIPELINES):
        load_pipeline(name)  # an unknown name fails before anything is written
    for name in names or sorted(registry.PIPELINES):
        path = compile_pipeline(name, out_dir / f"{registry.file_stem(name)}.yaml", base_image=base_image,
                                aws_secret=aws_secret, pvc=pvc, pvc_mount=mount)
        click.echo(f"wrote {path}")


@pipeline.command("submit")
@click.argument("name")
@click.option("--host", required=True, metavar="URL",
              help="KFP API endpoint, e.g. http://localhost:8080 after `kubectl port-forward "
                   "-n kubeflow svc/ml-pipeline-ui 8080:80`.")
@click.option("--experiment", default=None, help="Experiment to file the run under (created if absent).")
@click.option("--run-name", default=None, help="Run name shown in the UI.")
@click.option("--namespace", default=None, help="Kubeflow profile namespace (multi-user installs).")
@click.option("--serve-mode", type=click.Choice(["cluster", "local"]), default="cluster", show_default=True,
              help="cluster: deploy a KServe InferenceService; local: a server inside the task's pod (testing).")
@_run_options
@_cluster_options
@friendly
def submit_cmd(name: str, host: str, experiment: str | None, run_name: str | None, namespace: str | None,
               serve_mode: str, profile: str, dataset_uri: str, map_threshold: float | None, tflite_variant: str,
               params: tuple[str, ...], base_image: str | None, aws_secret: str | None, pvc: str | None,
               pvc_mount: str | None) -> None:
    """Compile pipeline NAME and start a run of it on a Kubeflow Pipelines cluster."""
    import kfp
    import urllib3
    from kfp_server_api.exceptions import ApiException

    mount = _pvc_mount(pvc, pvc_mount)
    module = load_pipeline(name)
    arguments: dict[str, Any] = module.run_arguments(**_arguments_for(
        module.run_arguments, name, {"dataset_uri": dataset_uri, "profile": profile, "map_threshold": map_threshold,
                                     "tflite_variant": tflite_variant}, params))
    if "serve_mode" in arguments:
        arguments["serve_mode"] = serve_mode
    with tempfile.TemporaryDirectory(prefix="mlkit-submit-") as tmp:
        package = compile_pipeline(name, Path(tmp) / f"{name}.yaml", base_image=base_image,
                                   aws_secret=aws_secret, pvc=pvc, pvc_mount=mount)
        try:
            client = kfp.Client(host=host, namespace=namespace)
            result = client.create_run_from_pipeline_package(
                str(package), arguments=arguments, run_name=run_name, experiment_name=experiment,
                namespace=namespace)
        except (OSError, ApiException, urllib3.exceptions.HTTPError) as exc:
            message = f"submitting {name} to {host} failed: {type(exc).__name__}: {exc}"
            raise click.ClickException(message) from exc
    click.echo(f"submitted {name} to {host}: run {result.run_id}")
    click.echo("arguments: " + ", ".join(f"{k}={v!r}" for k, v in arguments.items()))
