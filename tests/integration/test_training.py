"""Training on the test profile: checkpoints, resume after a crash, init from a previous model, TFLite export."""

import dataclasses
import json

import keras
import numpy as np
import pytest

from mlkit.data.layout import load_split
from mlkit.data.synthetic.generate import SyntheticSpec, generate_dataset
from mlkit.models.train import TrainConfig, train_detector
from mlkit.profiles import get_profile

pytestmark = pytest.mark.slow
P = get_profile("test")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    generate_dataset(root, SyntheticSpec(train=32, val=8, test=8, seed=5), workers=1, show_progress=False)
    return root


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("little")
    meta = train_detector(P.little, load_split(data, "train"), load_split(data, "val"), out,
                          TrainConfig(epochs=2, batch_size=8, seed=1), show_progress=False)
    return out, meta


def test_training_writes_a_model_folder(trained):
    out, meta = trained
    for name in ("config.json", "model.weights.h5", "history.json", "train_meta.json",
                 "checkpoints/last.weights.h5", "checkpoints/best.weights.h5"):
        assert (out / name).is_file(), name
    history = json.loads((out / "history.json").read_text())
    assert len(history["loss"]) == 2 and len(history["val_loss"]) == 2
    assert meta["epochs_run"] == 2 and meta["params"] > 0


class Crash(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("simulated crash")


def test_resume_continues_after_a_crash(data, tmp_path):
    tc = TrainConfig(epochs=3, batch_size=8, seed=1)
    train, val = load_split(data, "train"), load_split(data, "val")
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_detector(P.little, train, val, tmp_path, tc, show_progress=False, callbacks=(Crash(),))
    assert not (tmp_path / "model.weights.h5").exists()  # no half-trained model is published
    meta = train_detector(P.little, train, val, tmp_path, tc, show_progress=False)
    assert meta["resumed_from_epoch"] == 2
    assert meta["epochs_run"] == 1  # only the epoch that was still owed


def test_init_from_a_previous_model_starts_better(data, trained, tmp_path):
    """Fine-tuning from the trained model must start at a lower loss than training from scratch."""
    prev, _ = trained
    tc = TrainConfig(epochs=1, batch_size=8, seed=2, learning_rate=1e-4, warmup_epochs=0)
    train, val = load_split(data, "train"), load_split(data, "val")
    scratch = train_detector(P.little, train, val, tmp_path / "s", tc, show_progress=False)
    tuned = train_detector(P.little, train, val, tmp_path / "t", tc, init_from=prev, show_progress=False)
    h_s = json.loads((tmp_path / "s" / "history.json").read_text())
    h_t = json.loads((tmp_path / "t" / "history.json").read_text())
    assert tuned["init_from"] == str(prev) and scratch["init_from"] is None
    assert h_t["val_loss"][0] < h_s["val_loss"][0]


def test_init_from_a_different_architecture_is_refused(trained, data, tmp_path):
    from mlkit.errors import MlkitError

    prev, _ = trained
    other = dataclasses.replace(P.little, neck_channels=32)
    with pytest.raises(MlkitError, match="architecture differs"):
        train_detector(other, load_split(data, "train"), None, tmp_path, TrainConfig(epochs=1), init_from=prev,
                       show_progress=False)


def test_tflite_variants_match_keras(trained, data, tmp_path):
    from mlkit.models.export import VARIANTS, export_tflite
    from mlkit.models.predict import KerasDetector, TFLiteDetector

    out, _ = trained
    paths = export_tflite(out, tmp_path, VARIANTS, calibration=load_split(data, "train"), calibration_count=8)
    assert set(paths) == set(VARIANTS)
    test = load_split(data, "test")
    images = [test.load_image(i) for i in range(4)]
    keras_det = KerasDetector(out)
    k_reg, k_scores = keras_det.raw(keras_det.prepare(images)[0])
    for v, p in paths.items():
        assert (p.parent / "metadata.json").is_file()
        det = TFLiteDetector(p)
        reg, scores = det.raw(det.prepare(images)[0])
        assert reg.shape == k_reg.shape and scores.shape == k_scores.shape
        tol = {"fp32": 1e-3, "fp16": 0.05, "dynamic": 0.15, "int8": 0.25}[v]
        assert np.abs(scores - k_scores).mean() < tol, v
    int8 = TFLiteDetector(paths["int8"])
    assert int8._in["dtype"] == np.uint8
    assert paths["int8"].stat().st_size < paths["fp32"].stat().st_size
