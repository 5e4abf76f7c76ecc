"""The detector network and its loss (Keras 3 on TensorFlow).

Architecture: MobileNetV2 (from scratch) -> FPN-lite merge of strides 8/16/32 ->
one stride-8 head. Per cell the head predicts class logits, an IoU-quality logit and
a box as (centre offset, log size) in strides. The Keras model outputs the raw head
``[B, HW, 5 + C]``; ``inference_model`` turns it into ``reg [B, HW, 4]`` and
``scores [B, HW, C] = sqrt(sigmoid(cls) * sigmoid(iou))``, which is what TFLite exports.
Decoding and NMS happen outside the graph (``mlkit.models.postprocess``) so that a
full-int8 model quantises small-range offsets rather than pixel coordinates.
"""

from __future__ import annotations

import math

from mlkit.models.backbone import load_backbone_weights, resolve_backbone_weights
from mlkit.models.config import DetectorConfig

BACKBONE_TAPS = ("block_6_expand_relu", "block_13_expand_relu", "block_16_project_BN")
PRIOR_PROB = 0.01
MAX_BOXES = 48
BN_MOMENTUM = 0.95  # ground-truth boxes per image kept for training


def _sep_conv(x, channels: int, name: str):
    from keras import layers

    x = layers.SeparableConv2D(channels, 3, padding="same", use_bias=False, name=f"{name}_sep")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_relu")(x)


def build_detector(cfg: DetectorConfig, seed: int | None = None, backbone_weights: str = "none"):
    """The training model: image [B,H,W,3] float 0..255 -> raw head [B, HW, 5 + C].

    ``backbone_weights``: where the MobileNetV2 backbone starts (``mlkit.models.backbone``: none, imagenet or a
    weights file)."""
    import keras
    from keras import layers

    if seed is not None:
        keras.utils.set_random_seed(seed)
    h, w = cfg.input_height, cfg.input_width
    image = keras.Input((h, w, 3), name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="normalize")(image)
    backbone = keras.applications.MobileNetV2(
        input_shape=(h, w, 3), alpha=cfg.alpha, include_top=False, weights=None
    )
    weights = resolve_backbone_weights(backbone_weights, cfg.alpha)
    if weights is not None:
        load_backbone_weights(backbone, weights, cfg.alpha)
    # Keras ships MobileNetV2 with BN momentum 0.999, tuned for long ImageNet runs; from scratch in a
    # few thousand steps the moving statistics would lag far behind the weights.
    for layer in backbone.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = BN_MOMENTUM
    taps = keras.Model(backbone.input, [backbone.get_layer(n).output for n in BACKBONE_TAPS], name="backbone")
    c3, c4, c5 = taps(x)
    f = cfg.neck_channels
    p5 = layers.Conv2D(f, 1, name="lat5")(c5)
    p4 = layers.Add(name="merge4")([layers.Conv2D(f, 1, name="lat4")(c4), layers.UpSampling2D(name="up5")(p5)])
    p4 = _sep_conv(p4, f, "smooth4")
    p3 = layers.Add(name="merge3")([layers.Conv2D(f, 1, name="lat3")(c3), layers.UpSampling2D(name="up4")(p4)])
    p3 = _sep_conv(p3, f, "smooth3")

    cls_branch, reg_branch = p3, p3
    for i in range(cfg.head_convs):
        cls_branch = _sep_conv(cls_branch, f, f"cls{i}")
        reg_branch = _sep_conv(reg_branch, f, f"reg{i}")
    bias = -math.log((1 - PRIOR_PROB) / PRIOR_PROB)
    cls = layers.Conv2D(cfg.num_classes, 1, name="cls_out",
                        bias_initializer=keras.initializers.Constant(bias))(cls_branch)
    reg = layers.Conv2D(5, 1, name="reg_out", kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
                        bias_initializer=keras.initializers.Constant([0.0, 0.0, 1.0, 1.0, 0.0]))(reg_branch)
    gh, gw = cfg.grid
    raw = layers.Concatenate(name="head")([reg, cls])
    raw = layers.Reshape((gh * gw, 5 + cfg.num_classes), name="raw")(raw)
    return keras.Model(image, raw, name=f"detector_{cfg.name}")


def inference_model(model, cfg: DetectorConfig):
    """Wrap the training model: image -> (reg [B,HW,4], scores [B,HW,C]) for export and Keras inference."""
    import keras
    from keras import layers, ops

    class Split(layers.Layer):
        def call(self, raw):
            reg = raw[..., :4]
            quality = ops.sigmoid(raw[..., 4:5])
            scores = ops.sqrt(ops.sigmoid(raw[..., 5:]) * quality + 1e-9)
            return reg, scores

    image = keras.Input((cfg.input_height, cfg.input_width, 3), name="image")
    reg, scores = Split(name="decode")(model(image))
    return keras.Model(image, {"reg": reg, "scores": scores}, name=f"{cfg.name}_inference")


def make_loss(cfg: DetectorConfig):
    """Loss over padded targets ``y_true [B, M, 5] = (class, x0, y0, x1, y1)``; class -1 pads.

    Assignment: a cell is positive for a box when its centre lies inside the box and
    within 1.5 strides of the box centre, or when it is the cell holding the box centre
    (so a 7 px head still gets a positive). A cell claimed by several boxes takes the
    smallest. Losses: sigmoid focal (classes), GIoU (boxes), BCE toward the detached IoU
    (quality branch), each normalised by the number of positives.
    """
    import numpy as np
    import tensorflow as tf

    from mlkit.models.postprocess import grid_centers

    gh, gw = cfg.grid
    s = float(cfg.stride)
    centers = tf.constant(grid_centers(gh, gw, cfg.stride))  # [HW, 2]
    ncls = cfg.num_classes
    radius = 1.5 * s

    def loss(y_true, y_pred):
        y_true = tf.cast(y_true, tf.float32)
        cls_t = y_true[..., 0]
        gt = y_true[..., 1:5]
        valid = cls_t >= 0  # [B, M]
        cx = centers[None, :, None, 0]
        cy = centers[None, :, None, 1]
        x0, y0, x1, y1 = (gt[:, None, :, k] for k in range(4))
        gcx, gcy = (x0 + x1) / 2, (y0 + y1) / 2
        inside = (cx > x0) & (cx < x1) & (cy > y0) & (cy < y1)
        near = (tf.abs(cx - gcx) < radius) & (tf.abs(cy - gcy) < radius)
        own_cell = (tf.abs(cx - gcx) <= s / 2) & (tf.abs(cy - gcy) <= s / 2)
        cand = ((inside & near) | own_cell) & valid[:, None, :]  # [B, HW, M]
        area = (gt[..., 2] - gt[..., 0]) * (gt[..., 3] - gt[..., 1])
        area_m = tf.where(cand, area[:, None, :], tf.fill(tf.shape(cand), np.float32(1e12)))
        best = tf.argmin(area_m, axis=-1, output_type=tf.int32)  # [B, HW]
        pos = tf.cast(tf.reduce_any(cand, axis=-1), tf.float32)
        tbox = tf.gather(gt, best, batch_dims=1)
        tcls = tf.cast(tf.gather(cls_t, best, batch_dims=1), tf.int32)
        num_pos = tf.maximum(tf.reduce_sum(pos), 1.0)

        reg = tf.cast(y_pred[..., :4], tf.float32)
        q_logit = tf.cast(y_pred[..., 4], tf.float32)
        c_logit = tf.cast(y_pred[..., 5:], tf.float32)
        pcxy = centers[None] + reg[..., :2] * s
        pwh = tf.exp(tf.clip_by_value(reg[..., 2:4], -4.0, 6.0)) * s
        pbox = tf.concat([pcxy - pwh / 2, pcxy + pwh / 2], axis=-1)

        iou, giou = _iou_giou(pbox, tbox)
        box_loss = tf.reduce_sum((1.0 - giou) * pos) / num_pos

        onehot = tf.one_hot(tf.maximum(tcls, 0), ncls) * pos[..., None]
        p = tf.sigmoid(c_logit)
        ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=onehot, logits=c_logit)
        p_t = onehot * p + (1 - onehot) * (1 - p)
        alpha_t = onehot * 0.25 + (1 - onehot) * 0.75
        cls_loss = tf.reduce_sum(alpha_t * tf.pow(1 - p_t, 2.0) * ce) / num_pos

        q_target = tf.stop_gradient(tf.clip_by_value(iou, 0.0, 1.0))
        q_ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=q_target, logits=q_logit)
        q_loss = tf.reduce_sum(q_ce * pos) / num_pos
        return cls_loss + 2.0 * box_loss + q_loss

    return loss


def _iou_giou(a, b):
    import tensorflow as tf

    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = tf.maximum(b[..., 2] - b[..., 0], 0.0) * tf.maximum(b[..., 3] - b[..., 1], 0.0)
    iw = tf.maximum(tf.minimum(a[..., 2], b[..., 2]) - tf.maximum(a[..., 0], b[..., 0]), 0.0)
    ih = tf.maximum(tf.minimum(a[..., 3], b[..., 3]) - tf.maximum(a[..., 1], b[..., 1]), 0.0)
    inter = iw * ih
    union = area_a + area_b - inter + 1e-6
    iou = inter / union
    cw = tf.maximum(a[..., 2], b[..., 2]) - tf.minimum(a[..., 0], b[..., 0])
    ch = tf.maximum(a[..., 3], b[..., 3]) - tf.minimum(a[..., 1], b[..., 1])
    enclose = cw * ch + 1e-6
    return iou, iou - (enclose - union) / enclose


def count_flops(model) -> int:
    """Multiply-accumulates x2 of one forward pass, from TensorFlow's profiler on a concrete function."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    spec = tf.TensorSpec([1, *model.input_shape[1:]], tf.float32)
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    frozen = convert_variables_to_constants_v2(concrete)
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    info = tf.compat.v1.profiler.profile(graph=frozen.graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op",
                                         options=opts)
    return int(info.total_float_ops)
