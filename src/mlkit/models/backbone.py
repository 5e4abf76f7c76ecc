"""Where a detector's MobileNetV2 backbone starts: random weights, Keras's ImageNet weights, or a local file.

``--backbone-weights`` (``TrainConfig.backbone_weights``) takes:

- ``none``: random weights (mlkit's committed models were trained so, on synthetic scenes);
- ``imagenet``: the standard ``keras.applications`` MobileNetV2 weights for the model's width (``alpha``), without
  the classifier top. Keras keeps them in ``$KERAS_HOME/models`` (default ``~/.keras/models``) and downloads them
  there the first time. Offline, the error names the file to place there;
- a path: a weights file for a MobileNetV2 of the model's width without its top, in Keras's legacy ``.h5`` layout
  (as the ImageNet files are) or Keras 3's ``.weights.h5``.

A detector that starts from a trained model (``init_from``) takes all its weights from it instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from mlkit.errors import MlkitError

NONE, IMAGENET = "none", "imagenet"
KERAS_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
IMAGENET_ROWS = 224  # keras.applications serves no-top weights for 96..224; non-square inputs take 224's


def imagenet_file_name(alpha: float) -> str:
    """The no-top ImageNet weights file that ``keras.applications.MobileNetV2`` loads for width ``alpha``."""
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{IMAGENET_ROWS}_no_top.h5"


def keras_models_dir() -> Path:
    """Where Keras caches downloaded weights: ``$KERAS_HOME/models``, else ``~/.keras/models``."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "models"


def check_backbone_weights(value: str) -> str:
    """Refuse an empty value; ``none`` and ``imagenet`` as they are, anything else is a path checked on use."""
    if not isinstance(value, str) or not value.strip():
        raise MlkitError("backbone weights must be 'none', 'imagenet' or the path of a weights file")
    return value.strip()


def resolve_backbone_weights(value: str, alpha: float) -> Path | None:
    """The weights file for a width-``alpha`` backbone (None for ``none``), downloaded for ``imagenet`` if Keras
    does not have it yet. Raises ``MlkitError`` in one line naming what is missing and how to fix it."""
    value = check_backbone_weights(value)
    if value == NONE:
        return None
    if value != IMAGENET:
        path = Path(value).expanduser()
        if not path.is_file():
            raise MlkitError(f"backbone weights file {path} does not exist (give 'none', 'imagenet' or the path of a "
                             f"MobileNetV2 width-{float(alpha)} no-top weights file)")
        return path
    name = imagenet_file_name(alpha)
    cached = keras_models_dir() / name
    if cached.is_file():
        return cached
    import keras

    try:
        return Path(keras.utils.get_file(name, KERAS_WEIGHTS_URL + name, cache_subdir="models"))
    except Exception as exc:  # noqa: BLE001 - any download failure means the same thing to the user
        reason = str(exc).split(" -- ")[-1].strip()[:120]
        raise MlkitError(f"ImageNet weights for MobileNetV2 width {float(alpha)} are not on this machine and could "
                         f"not be downloaded ({reason}): place {name} (from {KERAS_WEIGHTS_URL}) in "
                         f"{keras_models_dir()}, or pass the file's path as the backbone weights") from None


def load_backbone_weights(backbone, path: Path, alpha: float) -> None:
    """Load ``path`` into a ``keras.applications.MobileNetV2`` backbone; ``MlkitError`` if it does not fit."""
    import warnings

    def refuse(reason: str) -> MlkitError:
        return MlkitError(f"could not load backbone weights from {path}: {reason[:200]} (a MobileNetV2 "
                          f"width-{float(alpha)} weights file without the classifier top is needed)")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            backbone.load_weights(str(path))
        except Exception as exc:  # noqa: BLE001 - Keras raises several kinds for a file that does not fit
            raise refuse(str(exc).splitlines()[0]) from None
    # Keras 3 only warns when part of a .weights.h5 file matches nothing and leaves those layers as they were.
    skipped = [str(w.message) for w in caught if "freshly-initialized" in str(w.message) or "Skipping" in
               str(w.message)]
    if skipped:
        raise refuse(f"{len(skipped)} parts of the file match no layer, e.g. {skipped[0].splitlines()[0]}")
