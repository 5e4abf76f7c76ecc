"""Letterbox, decode and NMS in numpy + OpenCV: shared by Keras, TFLite, the server and the edge.

No TensorFlow here, so the edge install can use it. The network predicts, per cell of
the stride-s grid, a centre offset and log-size in units of s (``reg``) and per-class
scores; boxes are decoded with vectorised numpy and suppressed with OpenCV's batched
(class-aware) NMS.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mlkit.detections import Detections

PAD_VALUE = 114


@dataclasses.dataclass(frozen=True)
class Letterbox:
    """How an image was fitted into the model input: scaled by ``scale``, padded right/bottom."""

    scale: float
    width: int  # original image size
    height: int


def letterbox(image: np.ndarray, out_w: int, out_h: int) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping aspect ratio and pad to ``out_w x out_h`` (top-left aligned)."""
    import cv2

    h, w = image.shape[:2]
    scale, nw, nh = fit_size(w, h, out_w, out_h)
    canvas = np.full((out_h, out_w, 3), PAD_VALUE, np.uint8)
    if (nw, nh) == (w, h):
        canvas[:nh, :nw] = image
    elif scale < 1:
        canvas[:nh, :nw] = shrink(image, nw, nh)
    else:
        canvas[:nh, :nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return canvas, Letterbox(scale, w, h)


def fit_size(w: int, h: int, out_w: int, out_h: int) -> tuple[float, int, int]:
    """(scale, width, height) of a ``w x h`` image resized to fit ``out_w x out_h`` with its aspect kept."""
    scale = min(out_w / w, out_h / h)
    return scale, max(1, round(w * scale)), max(1, round(h * scale))


def shrink(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Downscale to ``width x height``: an integer-factor box filter (INTER_AREA), then bilinear for the rest.

    OpenCV's INTER_AREA at a non-integer ratio costs 1.4-2.9 ms on a 640x480 frame here, more than the little
    model's whole invoke; this costs about 0.25 ms and differs from it by about one grey level on average.
    """
    import cv2

    h, w = image.shape[:2]
    k = int(min(w / width, h / height))
    if k >= 2:
        image = cv2.resize(image, (w // k, h // k), interpolation=cv2.INTER_AREA)
    if image.shape[:2] == (height, width):
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


def grid_centers(grid_h: int, grid_w: int, stride: int) -> np.ndarray:
    ys, xs = np.meshgrid(np.arange(grid_h), np.arange(grid_w), indexing="ij")
    return np.stack([(xs.ravel() + 0.5) * stride, (ys.ravel() + 0.5) * stride], axis=1).astype(np.float32)


def decode_boxes(reg: np.ndarray, centers: np.ndarray, stride: int) -> np.ndarray:
    """``reg`` [..., HW, 4] = (dx, dy, log w, log h) in strides -> boxes [..., HW, 4] xyxy pixels."""
    cxy = centers + reg[..., :2] * stride
    wh = np.exp(np.clip(reg[..., 2:4], -4.0, 6.0)) * stride
    return np.concatenate([cxy - wh / 2, cxy + wh / 2], axis=-1)


def nms(boxes: np.ndarray, scores: np.ndarray, score_threshold: float, iou_threshold: float,
        max_detections: int = 100) -> Detections:
    """Class-aware NMS over ``boxes`` [HW,4] and per-class ``scores`` [HW,C] (OpenCV)."""
    import cv2

    labels = scores.argmax(axis=1)
    best = scores[np.arange(len(scores)), labels]
    keep = best >= score_threshold
    if not keep.any():
        return Detections()
    b, s, c = boxes[keep], best[keep], labels[keep]
    xywh = np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)
    idx = cv2.dnn.NMSBoxesBatched(xywh.tolist(), s.tolist(), c.tolist(), float(score_threshold),
                                  float(iou_threshold), top_k=int(max_detections))
    idx = np.asarray(idx, np.int64).reshape(-1)
    idx = idx[np.argsort(-s[idx], kind="stable")][:max_detections]
    return Detections(b[idx], s[idx], c[idx])


def postprocess(reg: np.ndarray, scores: np.ndarray, centers: np.ndarray, stride: int, lb: Letterbox,
                score_threshold: float = 0.3, iou_threshold: float = 0.5, max_detections: int = 100) -> Detections:
    """One image's raw outputs -> detections in original-image pixels."""
    boxes = decode_boxes(reg, centers, stride)
    det = nms(boxes, scores, score_threshold, iou_threshold, max_detections)
    if len(det):
        det.boxes /= lb.scale
        np.clip(det.boxes[:, 0::2], 0, lb.width, out=det.boxes[:, 0::2])
        np.clip(det.boxes[:, 1::2], 0, lb.height, out=det.boxes[:, 1::2])
    return det


# --- imported detectors (``mlkit models import``): other resize rules and output formats ---------------------------


@dataclasses.dataclass(frozen=True)
class Stretch:
    """How an image was resized to the model input without keeping its aspect (TF OD API, Model Maker)."""

    scale_x: float
    scale_y: float
    width: int  # original image size
    height: int


def stretch(image: np.ndarray, out_w: int, out_h: int) -> tuple[np.ndarray, Stretch]:
    """Resize to exactly ``out_w x out_h`` (bilinear), as TF Object Detection API models were trained."""
    import cv2

    h, w = image.shape[:2]
    out = image if (w, h) == (out_w, out_h) else cv2.resize(image, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(out), Stretch(out_w / w, out_h / h, w, h)


def stretch_tf1(image: np.ndarray, out_w: int, out_h: int) -> tuple[np.ndarray, Stretch]:
    """Resize as TF1's ``tf.image.resize_bilinear`` (no half-pixel centres: output pixel x samples input x * w / out_w),
    which TF1 Object Detection API frozen graphs apply inside the graph."""
    import cv2

    h, w = image.shape[:2]
    if (w, h) == (out_w, out_h):
        return np.ascontiguousarray(image), Stretch(1.0, 1.0, w, h)
    m = np.array([[w / out_w, 0, 0], [0, h / out_h, 0]], np.float64)
    out = cv2.warpAffine(image, m, (out_w, out_h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_REPLICATE)
    return out, Stretch(out_w / w, out_h / h, w, h)


def to_image(det: Detections, fit: Letterbox | Stretch) -> Detections:
    """Boxes in model-input pixels -> original-image pixels, clipped to the image (in place)."""
    if len(det):
        sx, sy = (fit.scale, fit.scale) if isinstance(fit, Letterbox) else (fit.scale_x, fit.scale_y)
        det.boxes[:, 0::2] /= sx
        det.boxes[:, 1::2] /= sy
        np.clip(det.boxes[:, 0::2], 0, fit.width, out=det.boxes[:, 0::2])
        np.clip(det.boxes[:, 1::2], 0, fit.height, out=det.boxes[:, 1::2])
    return det


def postprocess_yolo(boxes: np.ndarray, scores: np.ndarray, fit: Letterbox | Stretch, score_threshold: float = 0.3,
                     iou_threshold: float = 0.5, max_detections: int = 100) -> Detections:
    """One image of a YOLO head: ``boxes`` [N, 4] cx, cy, w, h in input pixels, ``scores`` [N, C] -> detections."""
    xyxy = np.concatenate([boxes[:, :2] - boxes[:, 2:4] / 2, boxes[:, :2] + boxes[:, 2:4] / 2], axis=1)
    return to_image(nms(xyxy.astype(np.float32), scores, score_threshold, iou_threshold, max_detections), fit)


def postprocess_ssd(boxes: np.ndarray, classes: np.ndarray, scores: np.ndarray, input_w: int, input_h: int,
                    fit: Letterbox | Stretch, score_threshold: float = 0.3) -> Detections:
    """One image of ``TFLite_Detection_PostProcess``: ``boxes`` [K, 4] ymin, xmin, ymax, xmax normalised to the
    input, ``classes`` and ``scores`` [K] (already suppressed by the model; only the first num_detections kept)."""
    keep = scores >= score_threshold
    if not keep.any():
        return Detections()
    b = boxes[keep]
    xyxy = np.stack([b[:, 1] * input_w, b[:, 0] * input_h, b[:, 3] * input_w, b[:, 2] * input_h], axis=1)
    order = np.argsort(-scores[keep], kind="stable")
    det = Detections(xyxy[order].astype(np.float32), scores[keep][order].astype(np.float32),
                     np.round(classes[keep][order]).astype(np.int64))
    return to_image(det, fit)
