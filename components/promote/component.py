"""promote: Model -> a new version in a serving repository (atomic; the server hot-reloads it)."""

# No `from __future__ import annotations` here: KFP reads the real annotation objects (Input[Model], ...).

from kfp.dsl import Input, Model
from kfp.dsl.python_component import PythonComponent

from mlkit.components.common import MLKIT_IMAGE, mlkit_component, with_base_image


@mlkit_component
def promote(model: Input[Model], repository: str, model_name: str = "little", version: int = 0,
            variant: str = "int8", round_number: int = 0) -> str:
    """Copy ``<model>/tflite/<variant>`` to ``<repository>/<model_name>/<version>`` through ``<version>.tmp``
    and a rename; ``version`` 0 means the next free one. Returns the version folder. ``repository`` is a
    path every task and the server see (locally a folder, on a cluster a mounted PVC).
    """
    import os

    from mlkit.incremental import promotion

    src = os.path.join(model.path, "tflite", variant)
    v = version or promotion.next_version(repository, model_name)
    folder = promotion.promote(repository, model_name, v, src,
                               {"model": model.path, "round": round_number, "reason": "pipeline promote"})
    return str(folder)


def make_component(base_image: str = MLKIT_IMAGE) -> PythonComponent:
    """``promote`` built on ``base_image``."""
    return with_base_image(promote, base_image)
