"""The incremental-learning round: train from the deployed model, compare on one eval split, deploy if better.

```
importer data_uri -> Dataset (the round's folder: train = new + replayed samples, eval = common eval set)
importer deployed_uri -> Model (the deployed model folder: Keras weights + tflite/<variant>)
incremental-train (init from deployed)   -> Model (+ tflite/<variant>), Metrics
compare-models (new vs deployed, eval)   -> Metrics, report, "deploy" | "keep"
If "deploy": promote -> <repository>/<model_name>/<version> (atomic rename; the server hot-reloads)
```

The controller (``mlkit incremental run``) writes the round's data, calls this pipeline when the train
trigger fires, and reads the outcome back. A ``dsl.If`` on a plain return value, as in
object_detection (kfp.local 2.17 resolves only ``Output`` in conditions). On a cluster, ``data_uri``,
``deployed_uri`` and ``repository`` must be paths on a volume every task mounts (``pvc``).

Run one round by hand: ``mlkit pipeline run incremental-learning --param data_uri=... --param
deployed_uri=... --param repository=...``; compile: ``mlkit pipeline compile``.
"""

# No `from __future__ import annotations`: KFP reads the real annotations of the pipeline functions.
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Metrics, Model

from mlkit.components.common import default_base_image
from mlkit.components.compare_models import component as compare_component
from mlkit.components.incremental_train import component as train_component
from mlkit.components.promote import component as promote_component
from mlkit.pipelines._local import compile_main, run_with_kfp_local
from mlkit.pipelines.object_detection import _cluster_settings

PIPELINE_NAME = "incremental-learning"


class Outputs(NamedTuple):
    model: Model
    train_metrics: Metrics
    compare_metrics: Metrics
    report: Artifact


def build_pipeline(base_image: str | None = None, aws_secret: str | None = None,
                   pvc: str | None = None, pvc_mount: str = "/mnt/data") -> Callable:
    """The pipeline function with every component on ``base_image`` (see object_detection.build_pipeline)."""
    image = base_image or default_base_image()
    cluster = _cluster_settings(aws_secret, pvc, pvc_mount)
    train_op = train_component.make_component(image)
    compare_op = compare_component.make_component(image)
    promote_op = promote_component.make_component(image)

    @dsl.pipeline(name=PIPELINE_NAME,
                  description="One incremental-learning round: fine-tune the deployed model on new labelled "
                              "samples, evaluate new and deployed models on the same eval split, and promote "
                              "the new one into the serving repository when the deploy condition holds.")
    def incremental_learning(data_uri: str, deployed_uri: str, repository: str, model_name: str = "little",
                             version: int = 0, round_number: int = 1, epochs: int = 3, batch_size: int = 16,
                             learning_rate: float = 0.0005, seed: int = 0, variant: str = "int8",
                             score_threshold: float = 0.3, iou_threshold: float = 0.5, operator: str = ">",
                             threshold: float = 0.0, metric: str = "map_delta") -> Outputs:
        data = dsl.importer(artifact_uri=data_uri, artifact_class=dsl.Dataset, reimport=True).set_display_name(
            "round-data")
        deployed = dsl.importer(artifact_uri=deployed_uri, artifact_class=Model, reimport=True).set_display_name(
            "deployed-model")
        # Every round has new data under a new path: caching could only ever return a stale model.
        train = cluster(train_op(data=data.output, deployed=deployed.output, epochs=epochs, batch_size=batch_size,
                                 learning_rate=learning_rate, seed=seed, variant=variant)
                        .set_display_name("train-from-deployed").set_caching_options(False))
        compare = cluster(compare_op(new_model=train.outputs["model"], deployed_model=deployed.output,
                                     data=data.output, operator=operator, threshold=threshold, metric=metric,
                                     variant=variant, split="eval", score_threshold=score_threshold,
                                     iou_threshold=iou_threshold)
                          .set_display_name("evaluate-new-vs-deployed").set_caching_options(False))
        with dsl.If(compare.outputs["Output"] == "deploy", name="deploy-condition"):
            cluster(promote_op(model=train.outputs["model"], repository=repository, model_name=model_name,
                               version=version, variant=variant, round_number=round_number)
                    .set_display_name("promote").set_caching_options(False))
        return Outputs(train.outputs["model"], train.outputs["metrics"], compare.outputs["metrics"],
                       compare.outputs["report"])

    return incremental_learning


incremental_learning = build_pipeline()


def run_arguments(data_uri: str = "", deployed_uri: str = "", repository: str = "", model_name: str = "little",
                  version: int = 0, round_number: int = 1, epochs: int = 3, batch_size: int = 16,
                  learning_rate: float = 0.0005, seed: int = 0, variant: str = "int8", score_threshold: float = 0.3,
                  iou_threshold: float = 0.5, operator: str = ">", threshold: float = 0.0,
                  metric: str = "map_delta", **_ignored: Any) -> dict:
    """Checked arguments (values may be strings, as from ``--param KEY=VALUE``)."""
    from mlkit.errors import MlkitError
    from mlkit.incremental.spec import Condition

    if not data_uri or not deployed_uri or not repository:
        raise MlkitError("incremental-learning needs data_uri (a round's dataset folder), deployed_uri (the deployed "
                         "model folder) and repository (the serving repository); `mlkit incremental run` sets them")
    try:
        Condition(operator=operator, threshold=float(threshold), metric=metric)
    except Exception as exc:  # pydantic's ValidationError names the field
        raise MlkitError(f"deploy condition: {exc}") from None
    for name, uri in (("data_uri", data_uri), ("deployed_uri", deployed_uri)):
        if "://" not in uri and not Path(uri).exists():
            raise MlkitError(f"{name} {uri} does not exist")
    return {"data_uri": data_uri, "deployed_uri": deployed_uri, "repository": repository, "model_name": model_name,
            "version": int(version), "round_number": int(round_number), "epochs": int(epochs),
            "batch_size": int(batch_size), "learning_rate": float(learning_rate), "seed": int(seed),
            "variant": variant, "score_threshold": float(score_threshold), "iou_threshold": float(iou_threshold),
            "operator": operator, "threshold": float(threshold), "metric": metric}


def run_local(pipeline_root: str | Path, **kw: Any) -> dict:
    """Run one round with kfp.local and summarize (see ``summarize``)."""
    task = run_with_kfp_local(incremental_learning, pipeline_root, run_arguments(**kw))
    return summarize(task.outputs)


def summarize(outputs: dict[str, Any]) -> dict:
    """The new model, the comparison report and whether the promote task ran."""
    report_path = Path(outputs["report"].path) / "report.json"
    run_dir = Path(outputs["model"].path).parents[1]  # <root>/<run>/<task>/<output>
    promoted = run_dir / "promote" / "executor_output.json"
    folder = None
    if promoted.is_file():
        folder = json.loads(promoted.read_text()).get("parameterValues", {}).get("Output")
    report = json.loads(report_path.read_text())
    return {"run_dir": str(run_dir), "model": outputs["model"].path, "report": report,
            "deployed": folder is not None, "version_folder": folder,
            "train": dict(outputs["train_metrics"].metadata), "compare": dict(outputs["compare_metrics"].metadata)}


def format_summary(summary: dict) -> str:
    r = summary["report"]
    new, old = r["new"].get("map50"), r["old"].get("map50")
    lines = [f"new model mAP@0.5 {new:.3f}, deployed {old:.3f} on the same eval split",
             f"decision: {'deploy' if summary['deployed'] else 'keep'}: {r['reason']}",
             f"{'run outputs:':<14}{summary['run_dir']}", f"{'new model:':<14}{summary['model']}"]
    if summary["version_folder"]:
        lines.append(f"{'promoted to:':<14}{summary['version_folder']}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - `python -m mlkit.pipelines.incremental_learning [out.yaml]`
    compile_main(incremental_learning, "incremental_learning.yaml")
