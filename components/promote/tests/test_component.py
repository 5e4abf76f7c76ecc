"""promote component: python_func on a model folder (the TFLite bytes are stand-ins: only copied)."""

import json

import pytest
from kfp import dsl

from mlkit.components.promote.component import promote


def _model(root):
    (root / "tflite" / "fp32").mkdir(parents=True)
    (root / "tflite" / "fp32" / "model.tflite").write_bytes(b"new-model")
    (root / "tflite" / "fp32" / "metadata.json").write_text(json.dumps({"name": "little"}))
    return dsl.Model(uri=str(root))


def test_promotes_next_version_atomically(tmp_path):
    repo = tmp_path / "repo"
    (repo / "little" / "1").mkdir(parents=True)
    model = _model(tmp_path / "model")
    folder = promote.python_func(model=model, repository=str(repo), model_name="little", version=0,
                                 variant="fp32", round_number=4)
    assert folder == str(repo / "little" / "2")
    assert (repo / "little" / "2" / "model.tflite").read_bytes() == b"new-model"
    assert (repo / "little" / "2" / "READY").is_file() and not (repo / "little" / "2.tmp").exists()
    assert json.loads((repo / "little" / "2" / "promotion.json").read_text())["round"] == 4
    # a rerun of the same task (same version) is a no-op, not a second copy
    again = promote.python_func(model=model, repository=str(repo), model_name="little", version=2, variant="fp32")
    assert again == folder and sorted(p.name for p in (repo / "little").iterdir()) == ["1", "2"]


def test_missing_variant_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="model.tflite is missing"):
        promote.python_func(model=_model(tmp_path / "m"), repository=str(tmp_path / "r"), variant="int8")
