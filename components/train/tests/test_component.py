"""train component: python_func on the test profile (trains the little detector for one short epoch)."""

import json

import pytest
from kfp import dsl

from mlkit.components.train.component import train
from mlkit.data.synthetic.generate import generate_dataset
from mlkit.profiles import PROFILES


@pytest.mark.slow
def test_trains_and_writes_model_and_metrics(tmp_path):
    data = generate_dataset(tmp_path / "data", PROFILES["test"].data, show_progress=False)
    model = dsl.Model(uri=str(tmp_path / "first" / "little"))
    metrics = dsl.Metrics(uri=str(tmp_path / "metrics"))
    train.python_func(dataset=dsl.Dataset(uri=str(data)), model=model, metrics=metrics, profile="test",
                      model_name="little")

    folder = tmp_path / "first" / "little"
    assert (folder / "model.weights.h5").is_file()
    config = json.loads((folder / "config.json").read_text())
    assert config["input_width"] == PROFILES["test"].little.input_width
    assert (folder / "model_card.json").is_file()
    m = metrics.metadata
    assert 0.0 <= m["map50"] <= 1.0 and 0.0 <= m["map"] <= m["map50"] + 1e-9
    assert m["params"] > 1000 and m["train_seconds"] > 0 and m["epochs_run"] == 1
    assert any(k.startswith("ap50_") for k in m)
    assert model.metadata["name"] == "little" and model.metadata["framework"] == "keras"
    assert model.metadata["init_from"] == ""
    assert json.loads((folder / "train_meta.json").read_text())["init_from"] is None

    # A second round starts from the first: init_from names a folder holding little/ (and big/).
    again = dsl.Model(uri=str(tmp_path / "again"))
    train.python_func(dataset=dsl.Dataset(uri=str(data)), model=again, metrics=dsl.Metrics(uri=str(tmp_path / "m2")),
                      profile="test", model_name="little", init_from=str(tmp_path / "first"))
    assert json.loads((tmp_path / "again" / "train_meta.json").read_text())["init_from"] == str(folder)
    assert again.metadata["init_from"] == str(tmp_path / "first")


def test_init_from_a_folder_without_the_model_names_what_to_give(tmp_path):
    from mlkit.errors import MlkitError

    (tmp_path / "models" / "big").mkdir(parents=True)  # no little/
    with pytest.raises(MlkitError, match=r"no trained model at .*little .*'bundled' for the committed models"):
        train.python_func(dataset=dsl.Dataset(uri=str(tmp_path / "nope")), model=dsl.Model(uri=str(tmp_path / "m")),
                          metrics=dsl.Metrics(uri=str(tmp_path / "x")), model_name="little",
                          init_from=str(tmp_path / "models"))


def test_bad_model_name_fails_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="'little' or 'big'"):
        train.python_func(dataset=dsl.Dataset(uri=str(tmp_path / "nope")),
                          model=dsl.Model(uri=str(tmp_path / "m")),
                          metrics=dsl.Metrics(uri=str(tmp_path / "x")), model_name="huge")
