"""The committed detectors that ship inside mlkit (the repository's ``models/`` folder, ``mlkit.pretrained``).

``little`` (edge) and ``big`` (cloud) each hold their Keras weights, model card and int8 TFLite model, so an
installed mlkit can fine-tune them (``mlkit demo``), serve them and compare against them anywhere.
"""

from __future__ import annotations

from pathlib import Path

from mlkit.errors import MlkitError

PACKAGE = "mlkit.pretrained"
NAMES = ("little", "big")


def bundled_root() -> Path:
    """The folder of the committed models inside the installed package (or the source checkout)."""
    from importlib.resources import files

    return Path(str(files(PACKAGE)))


def bundled_model(name: str, variant: str | None = None) -> Path:
    """The Keras folder of committed model ``name`` or, with ``variant``, its TFLite folder."""
    if name not in NAMES:
        raise MlkitError(f"no committed model {name!r}; choose one of {', '.join(NAMES)}")
    folder = bundled_root() / name
    if variant is not None:
        folder = folder / "tflite" / variant
    marker = folder / ("model.tflite" if variant else "model.weights.h5")
    if not marker.is_file():
        raise MlkitError(f"the committed model {name}{'/' + variant if variant else ''} is not installed "
                         f"(no {marker}); this mlkit ships little and big with Keras weights and int8 TFLite")
    return folder


def init_folder(init_from: str, name: str) -> Path | None:
    """Where model ``name`` starts training: None for ``""`` (random weights), the committed model for
    ``"bundled"``, else ``<init_from>/<name>`` (a folder holding ``little/`` and ``big/`` model folders)."""
    if not init_from:
        return None
    if init_from == "bundled":
        return bundled_model(name)
    folder = Path(init_from) / name
    if not (folder / "model.weights.h5").is_file():
        raise MlkitError(f"init_from {init_from!r}: no trained model at {folder} (expected {name}/model.weights.h5 "
                         f"and config.json); give a folder holding little/ and big/, 'bundled' for the committed "
                         f"models, or '' to start from random weights")
    return folder
