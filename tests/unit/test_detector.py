"""Detector presets: size limits from the issue, FLOPs ratio, shapes, and a loss that can learn."""

import dataclasses

import numpy as np
import pytest

from mlkit.errors import MlkitError
from mlkit.models.config import BIG, LITTLE, DetectorConfig, preset


@pytest.fixture(scope="module")
def built():
    from mlkit.models.detector import build_detector, count_flops

    little, big = build_detector(LITTLE, seed=0), build_detector(BIG, seed=0)
    return {"little": (little, count_flops(little)), "big": (big, count_flops(big))}


def test_little_fits_the_edge_budget(built):
    model, _ = built["little"]
    assert model.count_params() <= 1_500_000
    assert max(LITTLE.input_width, LITTLE.input_height) <= 320


def test_big_is_at_least_4x_the_flops_with_a_larger_input(built):
    (_, f_little), (_, f_big) = built["little"], built["big"]
    assert f_big >= 4 * f_little
    assert BIG.input_width * BIG.input_height > LITTLE.input_width * LITTLE.input_height


def test_output_shape(built):
    model, _ = built["little"]
    gh, gw = LITTLE.grid
    out = model(np.zeros((2, LITTLE.input_height, LITTLE.input_width, 3), np.float32))
    assert tuple(out.shape) == (2, gh * gw, 5 + LITTLE.num_classes)


def test_config_validation_and_roundtrip(tmp_path):
    with pytest.raises(MlkitError, match="multiple of 32"):
        dataclasses.replace(LITTLE, input_width=300)
    with pytest.raises(MlkitError, match="alpha"):
        dataclasses.replace(LITTLE, alpha=0.6)
    with pytest.raises(MlkitError, match="unknown detector"):
        preset("medium")
    LITTLE.save(tmp_path / "c.json")
    assert DetectorConfig.load(tmp_path / "c.json") == LITTLE
    with pytest.raises(MlkitError, match="unknown detector config fields"):
        DetectorConfig.from_dict({**LITTLE.to_dict(), "depth": 3})


def test_loss_is_lower_for_the_right_answer():
    """A prediction that encodes the ground truth must cost less than one that does not."""
    import tensorflow as tf

    from mlkit.models.detector import make_loss
    from mlkit.models.postprocess import grid_centers

    cfg = dataclasses.replace(LITTLE, input_width=64, input_height=64)
    loss = make_loss(cfg)
    gh, gw = cfg.grid
    y_true = np.full((1, 48, 5), -1, np.float32)
    y_true[0, 0] = [2, 16, 16, 40, 48]  # helmet-on box, centre (28, 32)
    centers = grid_centers(gh, gw, 8)
    good = np.zeros((1, gh * gw, 9), np.float32)
    good[..., 5:] = -8.0
    good[..., 4] = 4.0
    for k, (cx, cy) in enumerate(centers):
        good[0, k, :4] = [(28 - cx) / 8, (32 - cy) / 8, np.log(24 / 8), np.log(32 / 8)]
        if abs(cx - 28) < 12 and abs(cy - 32) < 12 and 16 < cx < 40 and 16 < cy < 48:
            good[0, k, 5 + 2] = 8.0
    bad = good.copy()
    bad[..., 5 + 2] = -8.0
    bad[..., 5 + 3] = 8.0  # confident wrong class everywhere
    good_loss = float(loss(tf.constant(y_true), tf.constant(good)))
    assert good_loss < 0.5 * float(loss(tf.constant(y_true), tf.constant(bad)))


def test_a_trained_model_is_saved_without_its_optimizer_state(tmp_path):
    """The weights file holds the layers only; the optimizer's moments would triple its size and are never read."""
    import h5py
    import keras

    from mlkit.models.detector import build_detector, make_loss
    from mlkit.models.train import load_detector, save_detector

    cfg = dataclasses.replace(LITTLE, input_width=64, input_height=64, neck_channels=8, head_convs=1)
    model = build_detector(cfg, seed=0)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss=make_loss(cfg))
    y = np.full((2, 4, 5), -1.0, np.float32)
    y[:, 0] = [0, 8, 8, 40, 40]
    model.train_on_batch(np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32), y)
    assert model.optimizer.variables  # the moments exist
    save_detector(model, cfg, tmp_path)
    with h5py.File(tmp_path / "model.weights.h5") as f:
        assert "optimizer" not in f
    loaded, _ = load_detector(tmp_path)
    for a, b in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
