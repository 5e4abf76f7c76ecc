"""joint_inference: edge Model + Dataset + the cloud endpoint -> Metrics, the sweep chart and the full report."""

# No `from __future__ import annotations` here: KFP reads the real annotation objects (Input[Dataset], ...).

from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output
from kfp.dsl.python_component import PythonComponent

from mlkit.components.common import MLKIT_IMAGE, mlkit_component, with_base_image


@mlkit_component
def joint_inference(edge_model: Input[Model], dataset: Input[Dataset], endpoint: str, metrics: Output[Metrics],
                    report: Output[Artifact], sweep: Output[HTML], cloud_model: str = "big", variant: str = "int8",
                    split: str = "test", tune_split: str = "val", upload_budget: float = 0.3, limit: int = 0,
                    num_threads: int = 2) -> float:
    """Evaluate joint inference over a split: the edge model (``<edge_model>/<variant>/model.tflite``) runs in
    the task, the cloud model answers at ``endpoint``; every hard-example filter's threshold is swept.

    ``metrics``: edge_map50, cloud_map50, best_map50, best_upload_ratio, best_fraction_of_cloud, bytes per
    upload (JPEG vs Sedna's JSON list) and ``<filter>_map50`` / ``<filter>_upload_ratio`` at each filter's
    threshold tuned on ``tune_split`` ("" = tune on ``split``). ``report``: joint_evaluation.json and
    sweep.png. ``sweep``: the chart as HTML for the KFP UI. Returns the best filter's mAP@0.5.
    """
    from mlkit.joint.evaluate import evaluate_on_dataset, pipeline_edge_model, write_pipeline_outputs

    path = pipeline_edge_model(edge_model.path, variant, endpoint)
    result = evaluate_on_dataset(dataset.path, path, cloud_endpoint=endpoint, cloud_name=cloud_model, split=split,
                                 tune_split=tune_split or None, upload_budget=upload_budget, limit=limit or None,
                                 num_threads=num_threads, show_progress=False)
    for key, value in write_pipeline_outputs(result, report.path, sweep.path).items():
        metrics.log_metric(key, value)
    return float(result.best.test_map50)


def make_component(base_image: str = MLKIT_IMAGE) -> PythonComponent:
    """``joint_inference`` built on ``base_image``."""
    return with_base_image(joint_inference, base_image)
