"""--backbone-weights: a detector's MobileNetV2 backbone starts from the weights file it is given."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from mlkit.errors import MlkitError
from mlkit.models.backbone import imagenet_file_name, resolve_backbone_weights
from mlkit.models.config import LITTLE
from mlkit.models.detector import build_detector
from mlkit.models.train import TrainConfig


def mobilenet(alpha: float, seed: int):
    """A MobileNetV2 without its top, random weights (its own input size: weights do not depend on it)."""
    import keras

    keras.utils.set_random_seed(seed)
    return keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=alpha, include_top=False, weights=None)


def backbone_matches(detector, source) -> int:
    """Assert every weight of the detector's backbone equals the source model's layer of that name; the count."""
    backbone = detector.get_layer("backbone")
    checked = 0
    for layer in backbone.layers:
        if not layer.weights:
            continue
        for mine, theirs in zip(layer.get_weights(), source.get_layer(layer.name).get_weights(), strict=True):
            np.testing.assert_array_equal(mine, theirs)
            checked += 1
    return checked


@pytest.fixture(scope="module")
def source():
    return mobilenet(LITTLE.alpha, seed=5)


def test_a_legacy_h5_file_like_keras_imagenet_ones_is_loaded(source, tmp_path):
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    path = tmp_path / imagenet_file_name(LITTLE.alpha)
    with h5py.File(path, "w") as f:  # the layout of Keras's downloadable ImageNet weights
        legacy_h5_format.save_weights_to_hdf5_group(f, source)
    detector = build_detector(LITTLE, seed=0, backbone_weights=str(path))
    assert backbone_matches(detector, source) > 200
    fresh = build_detector(LITTLE, seed=0)  # without the file: not those values
    with pytest.raises(AssertionError):
        backbone_matches(fresh, source)


def test_a_keras3_weights_file_is_loaded(source, tmp_path):
    path = tmp_path / "backbone.weights.h5"
    source.save_weights(path)
    assert backbone_matches(build_detector(LITTLE, seed=0, backbone_weights=str(path)), source) > 200


def test_a_file_for_another_width_or_no_file_is_one_clear_error(tmp_path):
    other = tmp_path / "wide.weights.h5"
    mobilenet(1.0, seed=1).save_weights(other)
    with pytest.raises(MlkitError, match="could not load backbone weights from .*wide.weights.h5.*width-0.35"):
        build_detector(LITTLE, backbone_weights=str(other))
    with pytest.raises(MlkitError, match="missing.h5 does not exist"):
        build_detector(LITTLE, backbone_weights=str(tmp_path / "missing.h5"))
    with pytest.raises(MlkitError, match="backbone weights must be"):
        TrainConfig(backbone_weights=" ")


def test_imagenet_is_the_cached_keras_file_or_one_line_naming_it(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    name = imagenet_file_name(LITTLE.alpha)
    assert name == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
    try:
        path = resolve_backbone_weights("imagenet", LITTLE.alpha)
    except MlkitError as exc:  # offline (as on the machines mlkit is built on)
        message = str(exc)
        assert "\n" not in message and name in message and str(tmp_path / "keras" / "models") in message
    else:  # a machine with the network downloaded it to Keras's cache
        assert path == tmp_path / "keras" / "models" / name and path.is_file()
    # A file placed where the message says is used without any download.
    cache = tmp_path / "keras" / "models"
    cache.mkdir(parents=True, exist_ok=True)
    placed = mobilenet(LITTLE.alpha, seed=9)
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(cache / name, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, placed)
    assert resolve_backbone_weights("imagenet", LITTLE.alpha) == cache / name
    assert backbone_matches(build_detector(LITTLE, seed=0, backbone_weights="imagenet"), placed) > 200


def test_train_cli_stops_on_missing_weights_before_reading_data(tmp_path):
    from mlkit.cli import main

    result = CliRunner().invoke(main, ["train", "--data", str(tmp_path), "--model", "little", "--out",
                                       str(tmp_path / "out"), "--backbone-weights", str(tmp_path / "nope.h5")])
    assert result.exit_code != 0 and "nope.h5 does not exist" in result.output
    assert "Traceback" not in result.output
