"""A TF1 Object Detection API SSD frozen graph (``frozen_inference_graph.pb``) converted to a TFLite model with the
standard ``TFLite_Detection_PostProcess`` op, as ``export_tflite_ssd_graph.py`` + the converter would make it.

The graph is cut where the TF OD API's TFLite export cuts it: from the normalised image (``Preprocessor/sub``) to
the raw box encodings (``Squeeze``) and class logits (``concat_1``). The anchors (``Concatenate/concat``, constant
for the graph's fixed input size), the score conversion, the box coder's scales and the NMS settings are read from
the graph, so the TFLite op decodes and suppresses as the graph's own postprocessor does. Needs TensorFlow.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from mlkit.errors import MlkitError

IMAGE = "Preprocessor/sub:0"
BOX_ENCODINGS = "Squeeze:0"
CLASS_LOGITS = "concat_1:0"
ANCHORS = "Concatenate/concat:0"
_NMS = "Postprocessor/BatchMultiClassNonMaxSuppression/map/while/MultiClassNonMaxSuppression/"


@dataclasses.dataclass(frozen=True)
class Converted:
    tflite: bytes
    input_size: tuple[int, int]  # height, width
    num_classes: int  # without background
    input_mean: float  # the graph's own normalisation: (pixel - mean) / std
    input_std: float
    resize: str = "stretch-tf1"  # the graph resizes with TF1's resize_bilinear


def read_graph_def(path: str | Path):
    """A frozen graph's ``GraphDef``; ``MlkitError`` naming the file when it is missing or not one."""
    import tensorflow as tf

    path = Path(path)
    if not path.is_file():
        raise MlkitError(f"frozen graph not found: {path}")
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(path.read_bytes())
    except Exception as exc:  # noqa: BLE001 - protobuf raises its own DecodeError
        raise MlkitError(f"{path.name} is not a TensorFlow GraphDef ({type(exc).__name__})") from None
    return graph_def


def constants(graph_def) -> dict[str, np.ndarray]:
    """Every ``Const`` node of a graph, by name."""
    from tensorflow.python.framework import tensor_util

    return {n.name: tensor_util.MakeNdarray(n.attr["value"].tensor) for n in graph_def.node if n.op == "Const"}


def _scalar(consts: dict, name: str, default: float) -> float:
    v = consts.get(name)
    return float(np.asarray(v).reshape(-1)[0]) if v is not None and np.asarray(v).size == 1 else default


def convert_ssd_frozen_graph(path: str | Path, max_detections: int = 100) -> Converted:
    """The TFLite form of a TF OD API SSD frozen graph; ``MlkitError`` if ``path`` is not one."""
    import tensorflow as tf

    path = Path(path)
    graph_def = read_graph_def(path)
    names = {n.name for n in graph_def.node}
    missing = [t for t in (IMAGE, BOX_ENCODINGS, CLASS_LOGITS, ANCHORS) if t.split(":")[0] not in names]
    if missing:
        raise MlkitError(f"{path.name} is not a TF Object Detection API SSD frozen graph: it has no {missing}; "
                         "see docs/models.md")
    consts = constants(graph_def)
    size = consts.get("Preprocessor/map/while/ResizeImage/stack")
    if size is None or np.asarray(size).shape != (2,):
        raise MlkitError(f"{path.name}: no fixed resize (Preprocessor/.../ResizeImage/stack): only SSDs with a "
                         "fixed_shape_resizer convert to TFLite")
    height, width = (int(v) for v in size)
    scale, shift = _scalar(consts, "Preprocessor/mul/x", 2 / 255), _scalar(consts, "Preprocessor/sub/y", 1.0)
    logit_scale = _scalar(consts, "Postprocessor/scale_logits/y", 1.0)
    coder = [_scalar(consts, f"Postprocessor/Decode/truediv{s}/y", d) for s, d in
             (("", 10.0), ("_1", 10.0), ("_2", 5.0), ("_3", 5.0))]  # y, x, h, w
    iou = _scalar(consts, _NMS + "non_max_suppression/iou_threshold", 0.6)
    per_class = int(_scalar(consts, _NMS + "Minimum/x", 100))
    sigmoid = any(n.name == "Postprocessor/convert_scores" and n.op == "Sigmoid" for n in graph_def.node)

    wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
    g = wrapped.graph
    corners = wrapped.prune([], [g.get_tensor_by_name(ANCHORS)])()[0].numpy()  # ymin, xmin, ymax, xmax
    anchors = np.stack([(corners[:, 0] + corners[:, 2]) / 2, (corners[:, 1] + corners[:, 3]) / 2,
                        corners[:, 2] - corners[:, 0], corners[:, 3] - corners[:, 1]], axis=1).astype(np.float32)
    head = wrapped.prune([g.get_tensor_by_name(IMAGE)],
                         [g.get_tensor_by_name(BOX_ENCODINGS), g.get_tensor_by_name(CLASS_LOGITS)])
    num_classes = int(head.structured_outputs[1].shape[-1]) - 1  # the first column is the background
    signature = " ".join([
        'name: "TFLite_Detection_PostProcess"',
        f'attr {{ key: "max_detections" value {{ i: {max_detections} }} }}',
        'attr { key: "max_classes_per_detection" value { i: 1 } }',
        f'attr {{ key: "detections_per_class" value {{ i: {per_class} }} }}',
        'attr { key: "use_regular_nms" value { b: true } }',  # per-class NMS, as the graph's postprocessor
        'attr { key: "nms_score_threshold" value { f: 0.00000001 } }',
        f'attr {{ key: "nms_iou_threshold" value {{ f: {iou} }} }}',
        *(f'attr {{ key: "{k}" value {{ f: {v} }} }}' for k, v in zip(("y_scale", "x_scale", "h_scale", "w_scale"),
                                                                     coder, strict=True)),
        f'attr {{ key: "num_classes" value {{ i: {num_classes} }} }}'])

    class Ssd(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, height, width, 3], tf.float32, name="normalized_image")])
        def detect(self, image):
            @tf.function(experimental_implements=signature)
            def postprocess(box_encodings, class_predictions, anchors):  # replaced by the TFLite op
                zero = tf.constant(0.0)
                return zero, zero, zero, zero

            encodings, logits = head(image)
            scores = tf.sigmoid(logits / logit_scale) if sigmoid else tf.nn.softmax(logits / logit_scale)
            return postprocess(encodings, scores, tf.constant(anchors))[::-1]

    module = Ssd()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([module.detect.get_concrete_function()], module)
    conv.allow_custom_ops = True
    try:
        blob = conv.convert()
    except Exception as exc:  # noqa: BLE001 - the converter's errors are many and long
        raise MlkitError(f"{path.name}: TFLite conversion failed: {str(exc).splitlines()[0]}") from None
    return Converted(blob, (height, width), num_classes, input_mean=shift / scale, input_std=1 / scale)
