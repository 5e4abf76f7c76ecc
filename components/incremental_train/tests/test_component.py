"""incremental_train component: python_func fine-tunes a tiny model one epoch from the deployed one."""

import dataclasses
import json

import pytest
from kfp import dsl

from mlkit.components.incremental_train.component import incremental_train


@pytest.mark.slow
def test_trains_from_the_deployed_model_and_exports(tmp_path):
    from mlkit.data.synthetic.generate import SyntheticSpec, generate_dataset
    from mlkit.models.config import LITTLE
    from mlkit.models.detector import build_detector
    from mlkit.models.train import save_detector

    cfg = dataclasses.replace(LITTLE, input_width=128, input_height=96, neck_channels=16, head_convs=1)
    save_detector(build_detector(cfg, seed=0), cfg, tmp_path / "deployed")
    data = generate_dataset(tmp_path / "data", SyntheticSpec(train=6, val=0, test=0, seed=5), show_progress=False)
    model, metrics = dsl.Model(uri=str(tmp_path / "new")), dsl.Metrics(uri=str(tmp_path / "metrics"))
    incremental_train.python_func(data=dsl.Dataset(uri=str(data)), deployed=dsl.Model(uri=str(tmp_path / "deployed")),
                                  model=model, metrics=metrics, epochs=1, batch_size=4, variant="fp32")
    meta = json.loads((tmp_path / "new" / "train_meta.json").read_text())
    assert meta["init_from"] == str(tmp_path / "deployed") and meta["train_images"] == 6
    assert (tmp_path / "new" / "tflite" / "fp32" / "model.tflite").is_file()
    assert metrics.metadata["epochs_run"] == 1.0 and model.metadata["variant"] == "fp32"
