"""generate_dataset component: python_func with artifacts in tmp_path (no KFP runtime)."""

import json

import pytest
from kfp import dsl

from mlkit.components.common import MLKIT_IMAGE
from mlkit.components.generate_dataset.component import generate_dataset, make_component
from mlkit.data.layout import load_split
from mlkit.profiles import PROFILES


def test_writes_the_profile_splits(tmp_path):
    out = dsl.Dataset(uri=str(tmp_path / "dataset"))
    assert out.path == str(tmp_path / "dataset")  # a plain local URI is its own path
    uri = generate_dataset.python_func(dataset=out, profile="test")

    assert uri == out.uri
    spec = PROFILES["test"].data
    manifest = json.loads((tmp_path / "dataset" / "dataset.json").read_text())
    assert manifest["counts"] == {"train": spec.train, "val": spec.val, "test": spec.test}
    test = load_split(out.path, "test")
    assert len(test) == spec.test and test.num_boxes > 0
    assert all(r.path.is_file() for r in test)
    assert out.metadata["source"] == "synthetic" and out.metadata["profile"] == "test"


def test_unknown_profile_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        generate_dataset.python_func(dataset=dsl.Dataset(uri=str(tmp_path / "d")), profile="huge")


def test_base_image_is_a_parameter():
    assert generate_dataset.component_spec.implementation.container.image == MLKIT_IMAGE
    other = make_component("registry.example/mlkit:dev")
    assert other.component_spec.implementation.container.image == "registry.example/mlkit:dev"
    assert other.name == generate_dataset.name
