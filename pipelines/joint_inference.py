"""The joint-inference pipeline: deploy the cloud (big) model, then evaluate edge + cloud over a dataset.

```
dataset-source (nested, as in object-detection): generate (profile) or download (dataset_uri) -> Dataset
importer little_uri -> Model (TFLite variants)      importer big_uri -> Model (TFLite variants)
publish (little + big, variant) -> model repository
serve (local detached server, or a KServe InferenceService) -> url
joint-inference: little model in the task (the edge), big model at url (the cloud); every hard-example
                 filter's threshold swept -> Metrics, sweep chart (HTML), report (JSON + PNG)
```

``little_uri`` / ``big_uri`` point to the TFLite folders that `mlkit export` (or the object-detection
pipeline's convert step) writes: ``<uri>/<variant>/model.tflite + metadata.json``. Locally they default
to the repository's models/little/tflite and models/big/tflite.

Run locally: ``mlkit pipeline run joint-inference --profile test``; compile: ``mlkit pipeline compile``.
"""

# No `from __future__ import annotations`: KFP reads the real annotations of the pipeline functions.
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Metrics, Model

from mlkit.components.common import default_base_image
from mlkit.components.joint_inference import component as joint_component
from mlkit.components.publish import component as publish_component
from mlkit.components.serve import component as serve_component
from mlkit.pipelines._local import check_dataset_uri, compile_main, run_with_kfp_local
from mlkit.pipelines.object_detection import _cluster_settings, build_dataset_source

PIPELINE_NAME = "joint-inference"
REPO = Path(__file__).resolve().parents[1]


class Outputs(NamedTuple):
    dataset: Dataset
    metrics: Metrics
    report: Artifact
    sweep: HTML


def build_pipeline(base_image: str | None = None, aws_secret: str | None = None,
                   pvc: str | None = None, pvc_mount: str = "/mnt/data") -> Callable:
    """The pipeline function with every component on ``base_image`` (see object_detection.build_pipeline)."""
    image = base_image or default_base_image()
    cluster = _cluster_settings(aws_secret, pvc, pvc_mount)
    dataset_source = build_dataset_source(image, aws_secret, pvc, pvc_mount)
    publish_op = publish_component.make_component(image)
    serve_op = serve_component.make_component(image)
    joint_op = joint_component.make_component(image)

    @dsl.pipeline(name=PIPELINE_NAME,
                  description="Serve the big model as the cloud, run the little model as the edge, and measure "
                              "joint inference: mAP@0.5 against upload ratio for every hard-example filter.")
    def joint_inference(little_uri: str, big_uri: str, dataset_uri: str = "", profile: str = "test",
                        tflite_variant: str = "int8", upload_budget: float = 0.3, split: str = "test",
                        tune_split: str = "val", limit: int = 0, serve_mode: str = "local",
                        serve_name: str = "joint-cloud") -> Outputs:
        data = dataset_source(dataset_uri=dataset_uri, profile=profile).set_display_name("dataset-source").output
        little = dsl.importer(artifact_uri=little_uri, artifact_class=Model, reimport=False).set_display_name(
            "little-model")
        big = dsl.importer(artifact_uri=big_uri, artifact_class=Model, reimport=False).set_display_name("big-model")
        published = cluster(publish_op(little=little.output, big=big.output, variant=tflite_variant)
                            .set_display_name("publish").set_caching_options(False))
        served = cluster(serve_op(repository=published.outputs["repository"], mode=serve_mode, name=serve_name,
                                  image=image).set_display_name("serve").set_caching_options(False), secret=True)
        joint = cluster(joint_op(edge_model=little.output, dataset=data, endpoint=served.outputs["url"],
                                 cloud_model="big", variant=tflite_variant, split=split, tune_split=tune_split,
                                 upload_budget=upload_budget, limit=limit)
                        .set_display_name("joint-inference").set_caching_options(False))
        return Outputs(data, joint.outputs["metrics"], joint.outputs["report"], joint.outputs["sweep"])

    return joint_inference


joint_inference = build_pipeline()


def run_arguments(little_uri: str | None = None, big_uri: str | None = None, dataset_uri: str = "",
                  profile: str = "test", tflite_variant: str = "int8", upload_budget: float = 0.3,
                  limit: int = 0, serve_mode: str = "local", serve_name: str = "joint-cloud") -> dict:
    """Checked arguments; the model URIs default to the repository's models/little|big/tflite."""
    from mlkit.errors import MlkitError
    from mlkit.models.export import VARIANTS
    from mlkit.profiles import get_profile

    get_profile(profile)
    check_dataset_uri(dataset_uri, on_this_machine=False)
    uris = {}
    for name, uri in (("little", little_uri), ("big", big_uri)):
        uri = uri or str(REPO / "models" / name / "tflite")
        if "://" not in uri:
            if not (Path(uri) / tflite_variant / "model.tflite").is_file():
                raise MlkitError(f"{name} model: no {tflite_variant}/model.tflite under {uri}; train and export it "
                                 f"(mlkit train ... && mlkit export ...) or pass {name}_uri")
            uri = str(Path(uri).resolve())
        uris[name] = uri
    if tflite_variant not in VARIANTS:
        raise MlkitError(f"unknown TFLite variant {tflite_variant!r}; choose from {list(VARIANTS)}")
    if not 0 < float(upload_budget) <= 1:
        raise MlkitError(f"upload_budget must be in (0, 1], got {upload_budget}")
    if int(limit) < 0:
        raise MlkitError(f"limit must be >= 0 (0 = every image), got {limit}")
    if serve_mode not in ("local", "cluster"):
        raise MlkitError(f"serve_mode must be 'local' or 'cluster', got {serve_mode!r}")
    if not re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", serve_name):
        raise MlkitError(f"serve_name {serve_name!r} must be a DNS-1035 label (lower-case letters, digits, '-')")
    return {"little_uri": uris["little"], "big_uri": uris["big"], "dataset_uri": dataset_uri, "profile": profile,
            "tflite_variant": tflite_variant, "upload_budget": float(upload_budget), "limit": int(limit),
            "serve_mode": serve_mode, "serve_name": serve_name}


def run_local(pipeline_root: str | Path, little_uri: str | None = None, big_uri: str | None = None,
              dataset_uri: str = "", profile: str = "test", tflite_variant: str = "int8",
              upload_budget: float = 0.3, limit: int = 0, serve_name: str = "joint-cloud",
              keep_serving: bool = False) -> dict:
    """Run with kfp.local and summarize. The cloud server is stopped afterwards unless ``keep_serving``."""
    from mlkit.serving import lifecycle

    arguments = run_arguments(little_uri, big_uri, check_dataset_uri(dataset_uri, on_this_machine=True), profile,
                              tflite_variant, upload_budget, limit, "local", serve_name)
    try:
        task = run_with_kfp_local(joint_inference, pipeline_root, arguments)
    finally:
        if not keep_serving:
            lifecycle.stop(serve_name)
    return summarize(task.outputs)


def summarize(outputs: dict[str, Any]) -> dict:
    import json

    report = Path(outputs["report"].path)
    return {"run_dir": str(report.parents[1]), "dataset": outputs["dataset"].path,
            "metrics": dict(outputs["metrics"].metadata), "report": str(report / "joint_evaluation.json"),
            "chart": str(report / "sweep.png"),
            "evaluation": json.loads((report / "joint_evaluation.json").read_text())}


def format_summary(summary: dict) -> str:
    from mlkit.joint.evaluate import FilterResult, JointEvaluation, SweepPoint

    ev = dict(summary["evaluation"])
    for key in ("best", "best_fraction_of_cloud", "bytes_ratio"):
        ev.pop(key, None)
    filters = []
    for f in ev.pop("filters"):
        f["points"] = [SweepPoint(**p) for p in f["points"]]
        filters.append(FilterResult(**f))
    ev["oracle"] = [SweepPoint(**p) for p in ev.get("oracle", [])]
    table = JointEvaluation(filters=filters, **ev).table()
    return "\n".join([table, "", f"{'run outputs:':<14}{summary['run_dir']}", f"{'report:':<14}{summary['report']}",
                      f"{'chart:':<14}{summary['chart']}"])


if __name__ == "__main__":  # pragma: no cover - `python -m mlkit.pipelines.joint_inference [out.yaml]`
    compile_main(joint_inference, "joint_inference.yaml")
