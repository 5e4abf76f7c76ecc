"""``mlkit models backbone``: a MobileNetV2 in TF-slim names (as the TF1 Object Detection API freezes it) becomes a
Keras backbone weights file whose every value is the graph's. The real SSDLite graph is in test_ssdlite_import.py."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from mlkit.cli.app import main


def _slim_graph(path, alpha: float, drop: str | None = None) -> dict[str, np.ndarray]:
    """A GraphDef holding a random MobileNetV2's weights as constants under TF-slim names; returns them."""
    import tensorflow as tf

    from mlkit.models.backbone_extract import SCOPE, layer_map

    rng = np.random.default_rng(0)
    keras_model = pytest.importorskip("keras").applications.MobileNetV2(
        input_shape=(96, 96, 3), alpha=alpha, include_top=False, weights=None)
    values = {}
    for slim, conv, _bn in layer_map():
        kind = "depthwise_weights" if slim.endswith("depthwise") else "weights"
        (kernel,) = keras_model.get_layer(conv).get_weights()
        values[f"{slim}/{kind}"] = rng.normal(size=kernel.shape).astype(np.float32)
        for part in ("gamma", "beta", "moving_mean", "moving_variance"):
            values[f"{slim}/BatchNorm/{part}"] = rng.uniform(0.5, 1.5, size=kernel.shape[-2 if "depthwise" in slim
                                                                                         else -1]).astype(np.float32)
    graph = tf.Graph()
    with graph.as_default():
        for name, value in values.items():
            if name != drop:
                tf.constant(value, name=SCOPE + name)
    path.write_bytes(graph.as_graph_def().SerializeToString())
    return values


def test_every_backbone_value_is_the_graphs(tmp_path):
    import keras

    values = _slim_graph(tmp_path / "frozen.pb", alpha=0.5)
    out = tmp_path / "backbone.weights.h5"
    res = CliRunner().invoke(main, ["models", "backbone", str(tmp_path / "frozen.pb"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "width 0.5" in res.output
    model = keras.applications.MobileNetV2(input_shape=(64, 96, 3), alpha=0.5, include_top=False, weights=None)
    model.load_weights(str(out))
    np.testing.assert_array_equal(model.get_layer("Conv1").get_weights()[0], values["Conv/weights"])
    np.testing.assert_array_equal(model.get_layer("block_7_depthwise").get_weights()[0],
                                  values["expanded_conv_7/depthwise/depthwise_weights"])
    np.testing.assert_array_equal(model.get_layer("Conv_1_bn").get_weights()[3],
                                  values["Conv_1/BatchNorm/moving_variance"])


def test_the_extracted_backbone_trains_a_detector(tmp_path):
    """The file is what ``--backbone-weights`` takes: a width-0.35 detector starts from it."""
    import dataclasses

    from mlkit.models.config import LITTLE
    from mlkit.models.detector import build_detector

    values = _slim_graph(tmp_path / "frozen.pb", alpha=0.35)
    out = tmp_path / "b.weights.h5"
    res = CliRunner().invoke(main, ["models", "backbone", str(tmp_path / "frozen.pb"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    cfg = dataclasses.replace(LITTLE, input_width=96, input_height=64, neck_channels=16, head_convs=1)
    model = build_detector(cfg, seed=0, backbone_weights=str(out))
    backbone = model.get_layer("backbone")
    np.testing.assert_array_equal(backbone.get_layer("block_16_project").get_weights()[0],
                                  values["expanded_conv_16/project/weights"])


@pytest.mark.parametrize(("drop", "message"), [
    ("expanded_conv_3/expand/BatchNorm/beta", "expanded_conv_3/expand lacks its weights or batch norm"),
    ("expanded_conv_16/project/weights", "no expanded_conv_16/project/weights"),
])
def test_an_incomplete_graph_is_refused_in_one_line(tmp_path, drop, message):
    _slim_graph(tmp_path / "frozen.pb", alpha=0.35, drop=drop)
    res = CliRunner().invoke(main, ["models", "backbone", str(tmp_path / "frozen.pb"), "--out",
                                    str(tmp_path / "b.weights.h5")])
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output
    assert not (tmp_path / "b.weights.h5").exists()


def test_a_file_that_is_no_graph_is_refused(tmp_path):
    (tmp_path / "x.pb").write_bytes(b"\x00\x01 not a graph")
    res = CliRunner().invoke(main, ["models", "backbone", str(tmp_path / "x.pb"), "--out",
                                    str(tmp_path / "b.weights.h5")])
    assert res.exit_code == 2 and ("not a TensorFlow GraphDef" in res.output or "holds no" in res.output)
