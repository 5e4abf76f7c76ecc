"""The object-detection pipeline: dataset -> train little + big -> TFLite -> evaluate -> mAP gate -> publish.

```
dataset-source (nested):  If dataset_uri == ""  generate-dataset (profile)      -> uri
                          Else                  download-dataset (dataset_uri)  -> uri
                          OneOf(uri) -> importer -> Dataset
train-little | train-big  (Model + Metrics)
convert-little | convert-big  (TFLite variants fp32,fp16,dynamic,int8 + fidelity Metrics)
evaluate-little | evaluate-big  (tflite_variant: Metrics + ClassificationMetrics, returns mAP@0.5)
If evaluate-big mAP@0.5 >= map_threshold:  publish  (model repository <name>/<version>/model.tflite)
                                            -> serve    (serve_mode "local": detached server on 127.0.0.1,
                                                         "cluster": KServe InferenceService; returns url)
```

Two kfp.local 2.17 limits shape it (the same IR runs on a cluster):

* ``dsl.OneOf`` over *artifacts* fails locally ("Expected 1 artifact in ArtifactSelectorSpec. Got: 2"),
  over *parameters* it works: each dataset branch returns its artifact's URI, OneOf selects the
  string and ``dsl.importer`` turns it back into the Dataset artifact.
* A ``dsl.If`` condition on a NamedTuple output (``outputs["map50"]``) silently evaluates to False
  locally; only a plain return value (``outputs["Output"]``) resolves, so evaluate returns a float.

Run locally: ``mlkit pipeline run object-detection --profile test`` (or ``run_local``); compile:
``mlkit pipeline compile``; submit to Kubeflow: ``mlkit pipeline submit object-detection --host URL``.
"""

# No `from __future__ import annotations`: KFP reads the real annotations of the pipeline functions.
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from kfp import dsl
from kfp.dsl import ClassificationMetrics, Dataset, Metrics, Model

from mlkit.components.common import default_base_image
from mlkit.components.convert import component as convert_component
from mlkit.components.download import component as download_component
from mlkit.components.evaluate import component as evaluate_component
from mlkit.components.generate_dataset import component as generate_component
from mlkit.components.publish import component as publish_component
from mlkit.components.serve import component as serve_component
from mlkit.components.train import component as train_component
from mlkit.pipelines._local import (
    check_bundled_start,
    check_dataset_uri,
    check_fraction,
    compile_main,
    run_with_kfp_local,
)

PIPELINE_NAME = "object-detection"
MODELS = ("little", "big")
AWS_SECRET_KEYS = {"AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY"}
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")

class Outputs(NamedTuple):
    """The pipeline's outputs (publish is conditional, so its repository is not one of them)."""

    dataset: Dataset
    little_model: Model
    big_model: Model
    little_train_metrics: Metrics
    big_train_metrics: Metrics
    little_tflite: Model
    big_tflite: Model
    little_fidelity: Metrics
    big_fidelity: Metrics
    little_eval_metrics: Metrics
    big_eval_metrics: Metrics
    little_confusion: ClassificationMetrics
    big_confusion: ClassificationMetrics


def _check_k8s_name(kind: str, name: str) -> None:
    if not _K8S_NAME.match(name):
        raise ValueError(f"{kind} {name!r} is not a Kubernetes object name: use lower-case letters, digits, "
                         "'-' and '.', starting and ending with a letter or digit")


def _cluster_settings(aws_secret: str | None, pvc: str | None, pvc_mount: str) -> Callable:
    """A function applying the cluster-only settings to a task (``secret=True``: also the AWS secret)."""
    if aws_secret is not None:
        _check_k8s_name("secret", aws_secret)
    if pvc is not None:
        _check_k8s_name("PVC", pvc)
        if not pvc_mount.startswith("/"):
            raise ValueError(f"pvc_mount must be an absolute path, got {pvc_mount!r}")

    def cluster(task: dsl.PipelineTask, secret: bool = False) -> dsl.PipelineTask:
        if aws_secret and secret:
            from kfp import kubernetes

            kubernetes.use_secret_as_env(task, secret_name=aws_secret, secret_key_to_env=AWS_SECRET_KEYS)
        if pvc:
            from kfp import kubernetes

            kubernetes.mount_pvc(task, pvc_name=pvc, mount_path=pvc_mount)
        return task

    return cluster


def build_dataset_source(base_image: str | None = None, aws_secret: str | None = None, pvc: str | None = None,
                         pvc_mount: str = "/mnt/data") -> Callable:
    """The nested ``dataset-source`` pipeline: generate (empty ``dataset_uri``) or download -> Dataset."""
    image = base_image or default_base_image()
    cluster = _cluster_settings(aws_secret, pvc, pvc_mount)
    generate_op = generate_component.make_component(image)
    download_op = download_component.make_component(image)

    @dsl.pipeline(name="dataset-source",
                  description="Synthetic scenes for the profile when dataset_uri is empty, else the "
                              "downloaded dataset, as one Dataset artifact.")
    def dataset_source(dataset_uri: str = "", profile: str = "test") -> Dataset:
        with dsl.If(dataset_uri == "", name="synthetic-data"):
            generated = cluster(generate_op(profile=profile).set_display_name("generate-dataset"))
        with dsl.Else(name="downloaded-data"):
            # The bucket may change under the same URI: never serve a cached copy.
            downloaded = cluster(download_op(uri=dataset_uri).set_display_name("download-dataset")
                                 .set_caching_options(False), secret=True)
        uri = dsl.OneOf(generated.outputs["Output"], downloaded.outputs["Output"])
        return dsl.importer(artifact_uri=uri, artifact_class=Dataset, reimport=False).set_display_name(
            "dataset").output

    return dataset_source


def build_pipeline(base_image: str | None = None, aws_secret: str | None = None,
                   pvc: str | None = None, pvc_mount: str = "/mnt/data") -> Callable:
    """The pipeline function with every component on ``base_image`` (default: ``default_base_image()``).

    Cluster-only settings (kfp.local ignores them): ``aws_secret`` names a Kubernetes Secret whose
    AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY become environment variables of the download and convert
    tasks; ``pvc`` names a PersistentVolumeClaim mounted at ``pvc_mount`` in every component task.
    Raises ``ValueError`` for a name Kubernetes would refuse or a relative mount path.
    """
    image = base_image or default_base_image()
    cluster = _cluster_settings(aws_secret, pvc, pvc_mount)
    dataset_source = build_dataset_source(image, aws_secret, pvc, pvc_mount)
    train_op = train_component.make_component(image)
    convert_op = convert_component.make_component(image)
    evaluate_op = evaluate_component.make_component(image)
    publish_op = publish_component.make_component(image)
    serve_op = serve_component.make_component(image)

    @dsl.pipeline(name=PIPELINE_NAME,
                  description="Train the edge (little) and cloud (big) helmet detectors, convert them "
                              "to TFLite, evaluate, and publish both when the big model's mAP@0.5 passes "
                              "the gate, then serve them (locally or as a KServe InferenceService).")
    def object_detection(dataset_uri: str = "", profile: str = "test", map_threshold: float = 0.0,
                         tflite_variant: str = "int8", serve_mode: str = "local",
                         serve_name: str = "object-detection", init_from: str = "",
                         backbone_weights: str = "none") -> Outputs:
        source = dataset_source(dataset_uri=dataset_uri, profile=profile).set_display_name("dataset-source")
        data = source.output
        train, conv, ev = {}, {}, {}
        for name in MODELS:
            train[name] = cluster(train_op(dataset=data, profile=profile, model_name=name, init_from=init_from,
                                           backbone_weights=backbone_weights).set_display_name(f"train-{name}"))
            conv[name] = cluster(convert_op(model=train[name].outputs["model"], dataset=data, profile=profile)
                                 .set_display_name(f"convert-{name}"), secret=True)
            ev[name] = cluster(evaluate_op(model=conv[name].outputs["tflite"], dataset=data,
                                           variant=tflite_variant).set_display_name(f"evaluate-{name}"))
        with dsl.If(ev["big"].outputs["Output"] >= map_threshold, name="map-gate"):
            # Publishing writes a repository and serving starts a process: always run them when the gate passes.
            published = cluster(publish_op(little=conv["little"].outputs["tflite"], big=conv["big"].outputs["tflite"],
                                           variant=tflite_variant).set_display_name("publish")
                                .set_caching_options(False))
            cluster(serve_op(repository=published.outputs["repository"], mode=serve_mode, name=serve_name,
                             image=image).set_display_name("serve").set_caching_options(False), secret=True)
        return Outputs(
            data,
            train["little"].outputs["model"], train["big"].outputs["model"],
            train["little"].outputs["metrics"], train["big"].outputs["metrics"],
            conv["little"].outputs["tflite"], conv["big"].outputs["tflite"],
            conv["little"].outputs["fidelity"], conv["big"].outputs["fidelity"],
            ev["little"].outputs["metrics"], ev["big"].outputs["metrics"],
            ev["little"].outputs["confusion"], ev["big"].outputs["confusion"],
        )

    return object_detection


object_detection = build_pipeline()


# --------------------------------------------------------------------------- runs
def run_arguments(dataset_uri: str = "", profile: str = "test", map_threshold: float | None = None,
                  tflite_variant: str = "int8", serve_mode: str = "local",
                  serve_name: str = "object-detection", init_from: str = "", backbone_weights: str = "none") -> dict:
    """Checked pipeline arguments; ``map_threshold`` defaults to the profile's ``map_gate``.

    ``init_from``: "" trains from random weights, "bundled" fine-tunes the committed models that ship with mlkit
    (in the image too), another value is a folder holding ``little/`` and ``big/`` (a path the tasks can read).
    ``backbone_weights``: where a detector trained without ``init_from`` starts its backbone: "none", "imagenet" or a
    weights file the tasks can read (``mlkit.models.backbone``).

    Raises ``MlkitError`` for an unknown profile, TFLite variant or serve mode, a serve name that is not
    a DNS-1035 label (an InferenceService name), or committed models that the profile's detectors cannot start
    from, before anything runs.
    """
    from mlkit.errors import MlkitError
    from mlkit.models.export import VARIANTS
    from mlkit.profiles import get_profile

    gate = get_profile(profile).map_gate if map_threshold is None else check_fraction("map_threshold", map_threshold)
    check_dataset_uri(dataset_uri, on_this_machine=False)
    if tflite_variant not in VARIANTS:
        raise MlkitError(f"unknown TFLite variant {tflite_variant!r}; choose from {list(VARIANTS)}")
    if serve_mode not in ("local", "cluster"):
        raise MlkitError(f"serve_mode must be 'local' or 'cluster', got {serve_mode!r}")
    if not re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", serve_name):
        raise MlkitError(f"serve_name {serve_name!r} must be a DNS-1035 label (lower-case letters, digits, '-')")
    if init_from == "bundled":
        check_bundled_start(profile)
    from mlkit.models.backbone import check_backbone_weights

    return {"dataset_uri": dataset_uri, "profile": profile, "map_threshold": gate,
            "tflite_variant": tflite_variant, "serve_mode": serve_mode, "serve_name": serve_name,
            "init_from": init_from, "backbone_weights": check_backbone_weights(backbone_weights)}


def run_local(pipeline_root: str | Path, dataset_uri: str = "", profile: str = "test",
              map_threshold: float | None = None, tflite_variant: str = "int8",
              serve_name: str = "object-detection", init_from: str = "", backbone_weights: str = "none") -> dict:
    """Run the pipeline with kfp.local (one subprocess per task, this Python) and summarize its outputs.

    When the gate passes, the serve step leaves a detached local server named ``serve_name`` running (its
    URL is in the summary); stop it with ``mlkit serve stop <serve_name>`` or
    ``mlkit.serving.lifecycle.stop(serve_name)``.

    Outputs land under ``pipeline_root/object-detection-<timestamp>/<task>/``. Raises ``MlkitError``
    for bad arguments (see ``run_arguments``) and ``RuntimeError`` naming the failed task when a task
    fails (kfp.local has printed its log).
    """
    arguments = run_arguments(check_dataset_uri(dataset_uri, on_this_machine=True), profile, map_threshold,
                              tflite_variant, "local", serve_name, init_from, backbone_weights)
    task = run_with_kfp_local(object_detection, pipeline_root, arguments)
    return summarize(task.outputs, arguments["map_threshold"], tflite_variant)


def summarize(outputs: dict[str, Any], map_threshold: float, tflite_variant: str) -> dict:
    """Paths and metrics of a finished local run, from the pipeline's output artifacts."""
    run_dir = Path(outputs["big_eval_metrics"].path).parents[1]  # <root>/<run>/<task>/<output>
    repository = run_dir / "publish" / "repository"
    served = run_dir / "serve" / "executor_output.json"  # conditional task: not a pipeline output
    url = None
    if served.is_file():
        url = json.loads(served.read_text()).get("parameterValues", {}).get("url")
    models = {}
    for name in MODELS:
        models[name] = {
            "model": outputs[f"{name}_model"].path,
            "tflite": outputs[f"{name}_tflite"].path,
            "train": dict(outputs[f"{name}_train_metrics"].metadata),
            "fidelity": dict(outputs[f"{name}_fidelity"].metadata),
            "evaluation": dict(outputs[f"{name}_eval_metrics"].metadata),
            "confusion": outputs[f"{name}_confusion"].metadata.get("confusionMatrix"),
        }
    big_map50 = float(models["big"]["evaluation"]["map50"])
    return {
        "run_dir": str(run_dir),
        "dataset": outputs["dataset"].path,
        "tflite_variant": tflite_variant,
        "models": models,
        "gate": {"big_map50": big_map50, "threshold": map_threshold, "passed": big_map50 >= map_threshold},
        "repository": str(repository) if repository.is_dir() else None,
        "url": url,
    }


def format_summary(summary: dict) -> str:
    """A plain-text report of ``summarize``'s result."""
    v = summary["tflite_variant"]
    lines = [f"{'model':<7} {'keras mAP@.5':>12} {v + ' mAP@.5':>12} {'mAP':>7} {'img/s':>7} {v + ' MB':>8}",
             "-" * 58]
    for name, m in summary["models"].items():
        ev, fid = m["evaluation"], m["fidelity"]
        lines.append(f"{name:<7} {m['train'].get('map50', float('nan')):>12.3f} {ev['map50']:>12.3f} "
                     f"{ev.get('map', float('nan')):>7.3f} {ev.get('images_per_second', float('nan')):>7.1f} "
                     f"{fid.get(f'{v}_size_mb', float('nan')):>8.2f}")
    g = summary["gate"]
    lines += ["", f"gate: big mAP@0.5 {g['big_map50']:.3f} >= {g['threshold']:g}: "
                  + ("passed, models published" if g["passed"] else "not passed, nothing published"),
              "", f"{'run outputs:':<14}{summary['run_dir']}", f"{'dataset:':<14}{summary['dataset']}"]
    for name, m in summary["models"].items():
        lines.append(f"{name + ' model:':<14}{m['model']}")
        lines.append(f"{name + ' tflite:':<14}{m['tflite']}")
    if summary["repository"]:
        lines.append(f"{'repository:':<14}{summary['repository']}")
    if summary.get("url"):
        lines.append(f"{'served at:':<14}{summary['url']}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - `python -m mlkit.pipelines.object_detection [out.yaml]`
    compile_main(object_detection, "object_detection.yaml")
