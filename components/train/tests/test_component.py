"""train component: python_func on the test profile (trains the little detector for one short epoch)."""

import json

import pytest
from kfp import dsl

from components.train.component import train
from mlkit.data.synthetic.generate import generate_dataset
from mlkit.profiles import PROFILES


@pytest.mark.slow
def test_trains_and_writes_model_and_metrics(tmp_path):
    data = generate_dataset(tmp_path / "data", PROFILES["test"].data, show_progress=False)
    model = dsl.Model(uri=str(tmp_path / "model"))
    metrics = dsl.Metrics(uri=str(tmp_path / "metrics"))
    train.python_func(dataset=dsl.Dataset(uri=str(data)), model=model, metrics=metrics, profile="test",
                      model_name="little")

    folder = tmp_path / "model"
    assert (folder / "model.weights.h5").is_file()
    config = json.loads((folder / "config.json").read_text())
    assert config["input_width"] == PROFILES["test"].little.input_width
    assert (folder / "model_card.json").is_file()
    m = metrics.metadata
    assert 0.0 <= m["map50"] <= 1.0 and 0.0 <= m["map"] <= m["map50"] + 1e-9
    assert m["params"] > 1000 and m["train_seconds"] > 0 and m["epochs_run"] == 1
    assert any(k.startswith("ap50_") for k in m)
    assert model.metadata["name"] == "little" and model.metadata["framework"] == "keras"


def test_bad_model_name_fails_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="'little' or 'big'"):
        train.python_func(dataset=dsl.Dataset(uri=str(tmp_path / "nope")),
                          model=dsl.Model(uri=str(tmp_path / "m")),
                          metrics=dsl.Metrics(uri=str(tmp_path / "x")), model_name="huge")
