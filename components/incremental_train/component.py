"""incremental_train: round Dataset + deployed Model -> new Model (fine-tuned, with its TFLite export)."""

# No `from __future__ import annotations` here: KFP reads the real annotation objects (Input[Dataset], ...).

from kfp.dsl import Dataset, Input, Metrics, Model, Output
from kfp.dsl.python_component import PythonComponent

from mlkit.components.common import MLKIT_IMAGE, mlkit_component, with_base_image


@mlkit_component
def incremental_train(data: Input[Dataset], deployed: Input[Model], model: Output[Model], metrics: Output[Metrics],
                      epochs: int = 3, batch_size: int = 16, learning_rate: float = 0.0005, seed: int = 0,
                      variant: str = "int8"):
    """Fine-tune the deployed detector on the round's ``train`` split and export ``tflite/<variant>``.

    ``deployed`` is a model folder (config.json, model.weights.h5, tflite/<variant>/); ``model`` receives
    the same layout. ``metrics``: train_images, epochs_run, train_seconds, final loss.
    """
    from mlkit.incremental.rounds import RoundParams, train_candidate

    params = RoundParams(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, seed=seed,
                         variant=variant)
    meta = train_candidate(data.path, deployed.path, model.path, params)
    for key in ("train_images", "epochs_run", "train_seconds"):
        metrics.log_metric(key, float(meta[key]))
    model.framework = "keras"
    model.metadata.update(variant=variant, init_from=deployed.uri)


def make_component(base_image: str = MLKIT_IMAGE) -> PythonComponent:
    """``incremental_train`` built on ``base_image``."""
    return with_base_image(incremental_train, base_image)
