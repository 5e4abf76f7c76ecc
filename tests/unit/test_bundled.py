"""The committed models ship inside mlkit (mlkit.pretrained) and are found without a repository around."""

import json

import pytest

from mlkit.errors import MlkitError
from mlkit.models.bundled import bundled_model, bundled_root, init_folder


def test_the_committed_models_are_package_data():
    root = bundled_root()
    assert (root / "__init__.py").is_file()
    for name in ("little", "big"):
        keras = bundled_model(name)
        assert json.loads((keras / "config.json").read_text())["name"] == name
        assert (bundled_model(name, "int8") / "metadata.json").is_file()
        assert init_folder("bundled", name) == keras
    assert init_folder("", "big") is None


def test_unknown_names_and_variants_say_what_exists():
    with pytest.raises(MlkitError, match="no committed model 'huge'; choose one of little, big"):
        bundled_model("huge")
    with pytest.raises(MlkitError, match="big/fp64 is not installed"):
        bundled_model("big", "fp64")
