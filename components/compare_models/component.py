"""compare_models: new + deployed Model on the same eval split -> Metrics, report, and the deploy decision."""

# No `from __future__ import annotations` here: KFP reads the real annotation objects (Input[Dataset], ...).

from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output
from kfp.dsl.python_component import PythonComponent

from mlkit.components.common import MLKIT_IMAGE, mlkit_component, with_base_image


@mlkit_component
def compare_models(new_model: Input[Model], deployed_model: Input[Model], data: Input[Dataset],
                   metrics: Output[Metrics], report: Output[Artifact], operator: str = ">",
                   threshold: float = 0.0, metric: str = "map_delta", variant: str = "int8", split: str = "eval",
                   score_threshold: float = 0.3, iou_threshold: float = 0.5) -> str:
    """Evaluate both models' ``tflite/<variant>`` on ``split``; return ``"deploy"`` when
    ``metric operator threshold`` holds (metric: precision_delta, recall_delta or map_delta, new minus
    deployed, per class; a list reduces by its mean unless indexed, e.g. ``precision_delta[1]``), else
    ``"keep"``. A plain string return: kfp.local 2.17 resolves only ``Output`` in dsl.If conditions.

    ``metrics``: new_map50, deployed_map50, map50_delta, value (the condition's metric) and per-class
    deltas. ``report``: ``report.json`` with both evaluations, the deltas and the reason.
    """
    import json
    import math
    import os

    from mlkit.incremental.rounds import RoundParams, decide, evaluate_model, write_report
    from mlkit.incremental.spec import Condition
    from mlkit.models.config import DetectorConfig

    condition = Condition(operator=operator, threshold=threshold, metric=metric)
    params = RoundParams(variant=variant, score_threshold=score_threshold, iou_threshold=iou_threshold)
    names = DetectorConfig.load(os.path.join(new_model.path, "config.json")).class_names
    new = evaluate_model(new_model.path, data.path, split, params)
    old = evaluate_model(deployed_model.path, data.path, split, params)
    result = decide(new, old, condition, names)
    os.makedirs(report.path, exist_ok=True)
    write_report(os.path.join(report.path, "report.json"), result)
    values = {"new_map50": new["map50"], "deployed_map50": old["map50"], "map50_delta": result["map50_delta"],
              "value": result["value"]}
    for key, per_class in result["deltas"].items():
        values.update({f"{key}_{c}": v for c, v in zip(names, per_class, strict=True)})
    for key, value in values.items():
        if value is not None and math.isfinite(value):
            metrics.log_metric(key, float(value))
    print(json.dumps({"decision": "deploy" if result["deploy"] else "keep", "reason": result["reason"]}))
    return "deploy" if result["deploy"] else "keep"


def make_component(base_image: str = MLKIT_IMAGE) -> PythonComponent:
    """``compare_models`` built on ``base_image``."""
    return with_base_image(compare_models, base_image)
