"""Tiny TFLite detectors in the formats ``mlkit models import`` takes, built once per session.

Their answers are known: each anchor or cell scores class c by how much of colour channel c fills it, so a red
(class 0) or green (class 1) block on black is found exactly where it is drawn.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

SIZE = 32  # input side; SSD: 2x2 anchors (quadrants); YOLO: 4x4 cells of 8 px
NUM_CLASSES = 3  # SSD; YOLO has 2
_SSD_SIGNATURE = " ".join([
    'name: "TFLite_Detection_PostProcess"',
    'attr { key: "max_detections" value { i: 10 } }',
    'attr { key: "max_classes_per_detection" value { i: 1 } }',
    'attr { key: "use_regular_nms" value { b: false } }',
    'attr { key: "nms_score_threshold" value { f: 0.001 } }',
    'attr { key: "nms_iou_threshold" value { f: 0.6 } }',
    'attr { key: "y_scale" value { f: 10.0 } }', 'attr { key: "x_scale" value { f: 10.0 } }',
    'attr { key: "h_scale" value { f: 5.0 } }', 'attr { key: "w_scale" value { f: 5.0 } }',
    f'attr {{ key: "num_classes" value {{ i: {NUM_CLASSES} }} }}'])


def _convert(fn, module, custom_ops: bool = False) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], module)
    conv.allow_custom_ops = custom_ops
    return conv.convert()


def build_ssd(uint8: bool = False) -> bytes:
    """The TF Object Detection API's TFLite export in miniature: a graph ending in a function that
    ``experimental_implements`` TFLite_Detection_PostProcess, which the converter turns into the real custom op
    (box encodings all zero, so each box is its anchor; a background column first, as SSD heads have).
    ``uint8``: the model takes uint8 pixels and normalises them itself, as Model Maker's exports do."""
    import tensorflow as tf

    anchors = np.array([[0.25, 0.25, 0.5, 0.5], [0.25, 0.75, 0.5, 0.5], [0.75, 0.25, 0.5, 0.5],
                        [0.75, 0.75, 0.5, 0.5]], np.float32)  # ycenter, xcenter, h, w

    class Ssd(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, SIZE, SIZE, 3], tf.uint8 if uint8 else tf.float32,
                                                    name="input")])
        def detect(self, image):
            if uint8:
                image = (tf.cast(image, tf.float32) - 127.5) / 127.5

            @tf.function(experimental_implements=_SSD_SIGNATURE)
            def postprocess(box_encodings, class_predictions, anchors):  # replaced by the TFLite op
                zero = tf.constant(0.0)
                return zero, zero, zero, zero

            cells = tf.nn.avg_pool2d(image, SIZE // 2, SIZE // 2, "VALID")  # [1, 2, 2, 3], in [-1, 1]
            scores = tf.reshape((cells + 1.0) / 2.0, [1, 4, 3])
            scores = tf.concat([tf.zeros([1, 4, 1]), scores], axis=2)  # background, then the 3 classes
            encodings = tf.zeros([1, 4, 4]) + 0.0 * scores[:, :, :1]
            return postprocess(encodings, scores, tf.constant(anchors))[::-1]

    m = Ssd()
    return _convert(m.detect, m, custom_ops=True)


def build_yolo(layout: str, normalized: bool) -> bytes:
    """One raw YOLO tensor over a 4x4 grid: fixed cell boxes (cx, cy, w, h), class c = channel c's mean."""
    import tensorflow as tf

    g = 4
    ys, xs = np.meshgrid(np.arange(g), np.arange(g), indexing="ij")
    cell = SIZE / g
    boxes = np.stack([(xs.ravel() + 0.5) * cell, (ys.ravel() + 0.5) * cell, np.full(g * g, cell),
                      np.full(g * g, cell)], axis=1).astype(np.float32)
    if normalized:
        boxes /= SIZE

    class Yolo(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, SIZE, SIZE, 3], tf.float32, name="images")])
        def detect(self, image):
            scores = tf.reshape(tf.nn.avg_pool2d(image, SIZE // g, SIZE // g, "VALID"), [1, g * g, 3])[:, :, :2]
            if layout == "yolov8":
                return tf.transpose(tf.concat([boxes[None], scores], axis=2), [0, 2, 1])  # [1, 6, 16]
            return tf.concat([boxes[None], tf.ones([1, g * g, 1]), scores], axis=2)  # [1, 16, 7], objectness 1

    m = Yolo()
    return _convert(m.detect, m)


def build_two_outputs() -> bytes:
    """Neither format: outputs [1,10,4] and [1,10]."""
    import tensorflow as tf

    class Bad(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, SIZE, SIZE, 3], tf.float32)])
        def detect(self, image):
            m = tf.reduce_mean(image)
            return tf.zeros([1, 10, 4]) + m, tf.zeros([1, 10]) + m

    b = Bad()
    return _convert(b.detect, b)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """{"ssd", "ssd_uint8", "yolov8", "yolov5", "two_outputs"}: .tflite files (yolov8 boxes normalised, yolov5 in
    pixels)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    pytest.importorskip("tensorflow")
    root = tmp_path_factory.mktemp("tiny-models")
    blobs = {"ssd": build_ssd(), "ssd_uint8": build_ssd(uint8=True), "yolov8": build_yolo("yolov8", normalized=True),
             "yolov5": build_yolo("yolov5", normalized=False), "two_outputs": build_two_outputs()}
    paths = {}
    for name, blob in blobs.items():
        paths[name] = root / f"{name}.tflite"
        paths[name].write_bytes(blob)
    return paths


@pytest.fixture(scope="session")
def scene():
    """``scene(width, height, red, green)`` (tests/models is not a package: tests cannot import this module)."""
    return _scene


def _scene(width: int, height: int, red: tuple, green: tuple) -> np.ndarray:
    """Black RGB image with a red and a green block, each (x0, y0, x1, y1)."""
    img = np.zeros((height, width, 3), np.uint8)
    for (x0, y0, x1, y1), channel in ((red, 0), (green, 1)):
        img[y0:y1, x0:x1, channel] = 255
    return img


@pytest.fixture(scope="session")
def blocks_yolo(tiny_models, tmp_path_factory) -> Path:
    """The tiny YOLOv8 imported as a model-repository entry with classes red and green (scenes: blocks.PLACES)."""
    from mlkit.models.importing import import_model

    out = tmp_path_factory.mktemp("repo") / "blocks" / "1"
    import_model(tiny_models["yolov8"], out, labels="red,green")
    return out
