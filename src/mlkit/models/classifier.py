"""Helmet crop classifiers for the model-ensemble scenario: crops, two architectures, training, TFLite export.

Crops come from the detection dataset: every labelled head (helmet-on, helmet-off) cut out as a square
with some context around it, plus "background" squares that hold no head. Two architectures of
different families are trained from scratch on the same crops, like the googlenet + resnet pair of
OpenVINO's ensemble example: ``small_cnn`` (plain 3x3 conv blocks) and ``mobilenet_v2`` (MobileNetV2,
width 0.35). ``export_classifier`` writes a served version folder (``model.tflite`` + ``metadata.json``
with ``"task": "classification"``); ``export_argmax_sum`` writes the seed's "argmax" model (sum of the
members' probabilities, then argmax) as a TFLite tensor model.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlkit.data.atomic import atomic_write_text
from mlkit.data.dataset import Dataset
from mlkit.errors import MlkitError

log = logging.getLogger(__name__)

CLASSES: tuple[str, ...] = ("helmet-on", "helmet-off", "background")
HEAD_CLASSES = ("helmet-on", "helmet-off")
ARCHITECTURES = ("small_cnn", "mobilenet_v2")
CROP_PAD = 114  # the letterbox pad value, so a crop at the image border looks like a served one


@dataclasses.dataclass(frozen=True)
class CropSpec:
    """How crops are cut: ``size`` px squares; a head box grows by ``context`` of its side on each side."""

    size: int = 64
    context: float = 0.25
    background_per_image: int = 1
    max_overlap: float = 0.2  # a background square may hold at most this fraction of any head or helmet box
    seed: int = 0

    def __post_init__(self) -> None:
        if not 16 <= self.size <= 256:
            raise MlkitError(f"crop size must be 16..256 px, got {self.size}")
        if not 0 <= self.context <= 1:
            raise MlkitError(f"context must be in [0, 1], got {self.context}")
        if self.background_per_image < 0:
            raise MlkitError(f"background_per_image must be >= 0, got {self.background_per_image}")


def _square(img: np.ndarray, cx: float, cy: float, side: float, size: int) -> np.ndarray:
    """The ``side`` px square centred on (cx, cy), padded where it leaves the image, resized to ``size``."""
    import cv2

    h, w = img.shape[:2]
    s = max(2, int(round(side)))
    x0, y0 = int(round(cx - s / 2)), int(round(cy - s / 2))
    out = np.full((s, s, 3), CROP_PAD, np.uint8)
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(w, x0 + s), min(h, y0 + s)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = img[sy0:sy1, sx0:sx1]
    interp = cv2.INTER_AREA if s > size else cv2.INTER_LINEAR
    return cv2.resize(out, (size, size), interpolation=interp)


def head_square(box: Sequence[float], context: float) -> tuple[float, float, float]:
    """(cx, cy, side) of the square crop around a head box [x0, y0, x1, y1]."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(x1 - x0, y1 - y0) * (1 + 2 * context)
    return (x0 + x1) / 2, (y0 + y1) / 2, side


def extract_crops(ds: Dataset, spec: CropSpec = CropSpec(), max_images: int | None = None,
                  show_progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Crops ``[N, size, size, 3]`` uint8 and labels ``[N]`` (indices into ``CLASSES``) from a detection split.

    Deterministic for a given ``spec.seed``: image ``i`` draws its background squares from
    ``default_rng([seed, i])``.
    """
    from tqdm.auto import tqdm

    names = list(ds.class_names)
    missing = [c for c in HEAD_CLASSES if c not in names]
    if missing:
        raise MlkitError(f"dataset {ds.name!r} has no classes {missing} (it has {names}); crops need helmet-on "
                         "and helmet-off head boxes")
    head_ids = {names.index(c): CLASSES.index(c) for c in HEAD_CLASSES}
    # Background squares must not show a head; "helmet" boxes are heads seen from the helmet side.
    avoid_ids = set(head_ids) | ({names.index("helmet")} if "helmet" in names else set())
    n = len(ds) if max_images is None else min(len(ds), max_images)
    if n == 0:
        raise MlkitError(f"dataset {ds.name!r} is empty: no crops to cut")
    crops, labels = [], []
    for i in tqdm(range(n), desc=f"crops {ds.name}", unit="img", disable=not show_progress):
        rec = ds[i]
        img = ds.load_image(i)
        h, w = img.shape[:2]
        sides = []
        for box, lab in zip(rec.boxes, rec.labels, strict=True):
            if int(lab) in head_ids:
                cx, cy, side = head_square(box, spec.context)
                crops.append(_square(img, cx, cy, side, spec.size))
                labels.append(head_ids[int(lab)])
                sides.append(side)
        avoid = np.array([b for b, lab in zip(rec.boxes, rec.labels, strict=True) if int(lab) in avoid_ids],
                         np.float32).reshape(-1, 4)
        rng = np.random.default_rng([spec.seed, i])
        made, tries = 0, 0
        while made < spec.background_per_image and tries < 30:
            tries += 1
            side = float(rng.choice(sides)) if sides else float(rng.uniform(20, 60))
            side = min(side, w - 1, h - 1)
            x0, y0 = rng.uniform(0, w - side), rng.uniform(0, h - side)
            if len(avoid):
                iw = np.clip(np.minimum(avoid[:, 2], x0 + side) - np.maximum(avoid[:, 0], x0), 0, None)
                ih = np.clip(np.minimum(avoid[:, 3], y0 + side) - np.maximum(avoid[:, 1], y0), 0, None)
                area = np.maximum((avoid[:, 2] - avoid[:, 0]) * (avoid[:, 3] - avoid[:, 1]), 1e-6)
                if ((iw * ih) / area > spec.max_overlap).any():
                    continue
            crops.append(_square(img, x0 + side / 2, y0 + side / 2, side, spec.size))
            labels.append(CLASSES.index("background"))
            made += 1
    if not crops:
        raise MlkitError(f"no crops in the first {n} images of {ds.name!r}")
    return np.stack(crops), np.asarray(labels, np.int64)


# --------------------------------------------------------------------------- models
def build_classifier(arch: str, size: int = 64, num_classes: int = len(CLASSES), seed: int | None = None):
    """A Keras classifier: image [B, size, size, 3] float 0..255 -> softmax probabilities [B, num_classes]."""
    import keras
    from keras import layers

    if arch not in ARCHITECTURES:
        raise MlkitError(f"unknown classifier architecture {arch!r}; choose one of {list(ARCHITECTURES)}")
    if seed is not None:
        keras.utils.set_random_seed(seed)
    image = keras.Input((size, size, 3), name="image")
    if arch == "small_cnn":
        x = layers.Rescaling(1 / 255.0, name="normalize")(image)
        for i, ch in enumerate((24, 48, 96)):
            for j in range(2):
                x = layers.Conv2D(ch, 3, padding="same", use_bias=False, name=f"conv{i}_{j}")(x)
                x = layers.BatchNormalization(momentum=0.9, name=f"bn{i}_{j}")(x)
                x = layers.ReLU(name=f"relu{i}_{j}")(x)
            x = layers.MaxPooling2D(name=f"pool{i}")(x)
    else:
        x = layers.Rescaling(1 / 127.5, offset=-1.0, name="normalize")(image)
        backbone = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=0.35, include_top=False,
                                                  weights=None)
        # Keras' BN momentum (0.999) suits long ImageNet runs; a few epochs from scratch need faster statistics.
        for layer in backbone.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.momentum = 0.9
        x = backbone(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(0.2, name="dropout")(x)
    probs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(image, probs, name=arch)


@dataclasses.dataclass(frozen=True)
class ClassifierTrainConfig:
    epochs: int = 4
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0

    def __post_init__(self) -> None:
        from mlkit.models.train import check_optimizer_settings

        check_optimizer_settings(self.epochs, self.batch_size, self.learning_rate)


def _augmented(x: np.ndarray, y: np.ndarray, tc: ClassifierTrainConfig):
    import keras

    class Batches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.rng = np.random.default_rng(tc.seed)
            self.order = self.rng.permutation(len(x))

        def __len__(self) -> int:
            return int(np.ceil(len(x) / tc.batch_size))

        def on_epoch_end(self) -> None:
            self.order = self.rng.permutation(len(x))

        def __getitem__(self, idx: int):
            sel = self.order[idx * tc.batch_size:(idx + 1) * tc.batch_size]
            rng = np.random.default_rng([tc.seed, idx, int(self.rng.integers(1 << 30))])
            xb = x[sel].astype(np.float32)
            flip = rng.random(len(sel)) < 0.5
            xb[flip] = xb[flip, :, ::-1]
            gain = rng.uniform(0.8, 1.2, (len(sel), 1, 1, 3)).astype(np.float32)
            bias = rng.uniform(-20, 20, (len(sel), 1, 1, 1)).astype(np.float32)
            return np.clip(xb * gain + bias, 0, 255), y[sel]

    return Batches()


def train_classifier(arch: str, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray | None = None,
                     y_val: np.ndarray | None = None, tc: ClassifierTrainConfig = ClassifierTrainConfig(),
                     show_progress: bool = True):
    """Train ``arch`` from scratch on crops; returns (keras model, summary dict)."""
    import keras

    from mlkit.models.train import _Progress

    if len(x_train) == 0 or len(x_train) != len(y_train):
        raise MlkitError(f"need as many training crops as labels (got {len(x_train)} and {len(y_train)})")
    if x_train.ndim != 4 or x_train.shape[1] != x_train.shape[2]:
        raise MlkitError(f"training crops must be square [N, S, S, 3], got {list(x_train.shape)}")
    keras.utils.set_random_seed(tc.seed)
    model = build_classifier(arch, x_train.shape[1], len(CLASSES), seed=tc.seed)
    data = _augmented(x_train, y_train, tc)
    steps = len(data)
    schedule = keras.optimizers.schedules.CosineDecay(tc.learning_rate, decay_steps=steps * tc.epochs, alpha=0.05)
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=tc.weight_decay),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    val = (x_val.astype(np.float32), y_val) if x_val is not None and len(x_val) else None
    t0 = time.time()
    hist = model.fit(data, validation_data=val, epochs=tc.epochs, verbose=0,
                     callbacks=[_Progress.callback(steps * tc.epochs, 0, steps, show_progress)])
    summary = {"architecture": arch, "train_crops": int(len(x_train)), "epochs": tc.epochs,
               "train_seconds": round(time.time() - t0, 1), "params": int(model.count_params()),
               "history": {k: [round(float(v), 4) for v in vals] for k, vals in hist.history.items()}}
    return model, summary


# --------------------------------------------------------------------------- export
def _write_version(dest: Path, blob: bytes, metadata: dict) -> Path:
    """Write ``model.tflite`` + ``metadata.json`` into a temp folder next to ``dest``, then rename it in place.

    A model repository that watches the parent folder never sees a half-written version.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{dest.name}-", dir=dest.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; a served folder should read like any other
    try:
        (tmp / "model.tflite").write_bytes(blob)
        atomic_write_text(tmp / "metadata.json", json.dumps(metadata, indent=2))
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def export_classifier(model, dest: str | Path, *, name: str, labels: Sequence[str] = CLASSES,
                      input_name: str | None = None, output_name: str | None = None, extra: dict | None = None) -> Path:
    """Export a Keras classifier to a served version folder ``dest`` (fp32 TFLite + metadata.json).

    ``input_name`` / ``output_name`` rename the served tensors (default ``image`` / ``probabilities``),
    e.g. to mirror another model's tensor names in a pipeline config.
    """
    import keras
    import tensorflow as tf

    from mlkit.models.export import convert_variant

    size = int(model.input_shape[1])
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(image):
        return {"probabilities": model(image, training=False)}

    archive.add_endpoint("serving_default", serve,
                         input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="image")])
    with tempfile.TemporaryDirectory() as work:
        archive.write_out(str(Path(work) / "saved_model"), verbose=False)
        blob = convert_variant(Path(work) / "saved_model", "fp32")
    meta = {"task": "classification", "name": name, "input_width": size, "input_height": size,
            "labels": list(labels), "variant": "fp32", "preprocessing": "letterbox-topleft-pad114-rgb-0..255",
            **({"input_name": input_name} if input_name else {}),
            **({"output_name": output_name} if output_name else {}), **(extra or {})}
    return _write_version(Path(dest), blob, meta)


def export_argmax_sum(dest: str | Path, num_classes: int, *, name: str = "argmax",
                      input_names: Sequence[str] = ("input1", "input2"), output_name: str = "label") -> Path:
    """The seed's "argmax" model: sum of the inputs' [N, K] probabilities, then argmax -> INT32 [N].

    Written as a TFLite tensor model (metadata ``"task": "tensor"``) whose signature keys are
    ``in0, in1, ...`` and ``out``; metadata maps them to the public names, which may hold characters a
    signature key cannot (the seed's output is ``argmax/Squeeze``).
    """
    import tensorflow as tf

    from mlkit.models.export import convert_variant

    if num_classes < 1 or len(input_names) < 1 or len(set(input_names)) != len(input_names):
        raise MlkitError(f"argmax needs num_classes >= 1 and distinct input names, got {num_classes}, "
                         f"{list(input_names)}")
    keys = [f"in{i}" for i in range(len(input_names))]

    class ArgmaxSum(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, num_classes], tf.float32, name=k) for k in keys])
        def serve(self, *xs):
            return {"out": tf.argmax(tf.add_n(list(xs)), axis=-1, output_type=tf.int32)}

    module = ArgmaxSum()
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "saved_model"
        tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
        blob = convert_variant(path, "fp32")
    meta = {"task": "tensor", "name": name,
            "inputs": [{"name": n, "key": k, "datatype": "FP32", "shape": [-1, num_classes]}
                       for n, k in zip(input_names, keys, strict=True)],
            "outputs": [{"name": output_name, "key": "out", "datatype": "INT32", "shape": [-1]}]}
    return _write_version(Path(dest), blob, meta)


# --------------------------------------------------------------------------- evaluation
def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(probs).argmax(axis=1) == np.asarray(labels)).mean()) if len(labels) else float("nan")


def per_class_accuracy(pred: np.ndarray, labels: np.ndarray, names: Sequence[str] = CLASSES) -> dict[str, float]:
    out = {}
    for i, n in enumerate(names):
        sel = labels == i
        out[n] = round(float((pred[sel] == i).mean()), 4) if sel.any() else None
    return out
