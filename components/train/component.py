"""train: Dataset -> Model (a trained Keras detector folder) + Metrics on the test split."""

# No `from __future__ import annotations` here: KFP reads the real annotation objects (Input[Dataset], ...).

from kfp.dsl import Dataset, Input, Metrics, Model, Output
from kfp.dsl.python_component import PythonComponent

from mlkit.components.common import MLKIT_IMAGE, mlkit_component, with_base_image


@mlkit_component
def train(dataset: Input[Dataset], model: Output[Model], metrics: Output[Metrics], profile: str = "test",
          model_name: str = "little", init_from: str = "", backbone_weights: str = "none"):
    """Train the profile's ``little`` (edge) or ``big`` (cloud) detector and evaluate it on the test split.

    ``init_from``: "" starts from random weights, "bundled" from the committed model that ships with mlkit,
    any other value is a folder holding ``little/`` and ``big/`` model folders. ``backbone_weights``: where the
    backbone starts without ``init_from``: "none", "imagenet" or a weights file (``mlkit.models.backbone``).

    ``model`` receives the model folder (config.json, model.weights.h5, model_card.json, ...);
    ``metrics`` gets map50, map, ap50_<class>, train_seconds, params and epochs_run.
    """
    import dataclasses
    import math
    import os

    from mlkit.models.bundled import init_folder
    from mlkit.models.workflow import train_and_evaluate
    from mlkit.profiles import get_profile

    if model_name not in ("little", "big"):
        raise ValueError(f"model_name must be 'little' or 'big', got {model_name!r}")
    p = get_profile(profile)
    cfg, tc = (p.little, p.little_train) if model_name == "little" else (p.big, p.big_train)
    tc = dataclasses.replace(tc, backbone_weights=backbone_weights)
    os.makedirs(model.path, exist_ok=True)
    out = train_and_evaluate(cfg, tc, dataset.path, model.path, init_from=init_folder(init_from, model_name),
                             show_progress=False)
    values = {k: out["meta"][k] for k in ("train_seconds", "params", "epochs_run")}
    if out["result"] is not None:
        res = out["result"]
        values.update(map50=res.map50, map=res.map, **{f"ap50_{c}": v for c, v in res.ap50_per_class.items()})
    for key, value in values.items():
        if value is not None and math.isfinite(value):  # undefined (no GT of a class) is left out
            metrics.log_metric(key, float(value))
    model.framework = "keras"
    model.metadata.update(name=cfg.name, profile=profile, input_size=[cfg.input_width, cfg.input_height],
                          init_from=init_from, backbone_weights=backbone_weights)


def make_component(base_image: str = MLKIT_IMAGE) -> PythonComponent:
    """``train`` built on ``base_image``."""
    return with_base_image(train, base_image)
