"""metadata.json is checked where it is read: wrong types, and metadata that belongs to another model, are named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mlkit.errors import MlkitError
from mlkit.models.predict import open_detector

MODELS = Path(__file__).resolve().parents[2] / "models"
LITTLE, BIG = MODELS / "little" / "tflite" / "int8", MODELS / "big" / "tflite" / "int8"


def _folder(tmp_path: Path, model: Path, meta) -> Path:
    if not (model / "model.tflite").is_file():
        pytest.skip(f"the committed model {model} is missing")
    shutil.copy2(model / "model.tflite", tmp_path / "model.tflite")
    (tmp_path / "metadata.json").write_text(json.dumps(meta))
    return tmp_path


def _meta() -> dict:
    if not (LITTLE / "metadata.json").is_file():
        pytest.skip("the committed little model is missing")
    return json.loads((LITTLE / "metadata.json").read_text())


@pytest.mark.parametrize(("edit", "message"), [
    (lambda m: m.update(input_width="256"), "input_width must be an integer in 1..8192, got '256'"),
    (lambda m: m.update(input_height=-5), "input_height must be an integer in 1..8192, got -5"),
    (lambda m: m.update(class_names="person"), "class_names must be a non-empty list of class names"),
    (lambda m: m.update(class_names=[]), "class_names must be a non-empty list"),
    (lambda m: m.update(score_threshold=3), "score_threshold must be a number in [0, 1]"),
    (lambda m: m.update(name=""), "name must be a non-empty string"),
])
def test_wrong_field_types_are_named(tmp_path, edit, message):
    meta = _meta()
    edit(meta)
    with pytest.raises(MlkitError, match="metadata.json: model metadata: ") as err:
        open_detector(_folder(tmp_path, LITTLE, meta))
    assert message in str(err.value)


def test_not_an_object(tmp_path):
    with pytest.raises(MlkitError, match="expected a JSON object"):
        open_detector(_folder(tmp_path, LITTLE, [1, 2]))


def test_metadata_of_another_model_is_refused(tmp_path):
    meta = _meta()  # the little model's metadata next to the big model
    (tmp_path / "big").mkdir()
    with pytest.raises(MlkitError, match=r"says the input is 192x256 \(HxW\), but model.tflite takes 352x448"):
        open_detector(_folder(tmp_path / "big", BIG, meta))
    with pytest.raises(MlkitError, match="names 2 classes, but model.tflite scores 4"):
        open_detector(_folder(tmp_path, LITTLE, {**meta, "class_names": ["a", "b"]}))
