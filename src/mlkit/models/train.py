"""Train a detector from scratch (or from a previous model) with Keras 3.

A model folder holds ``config.json`` (the ``DetectorConfig``), ``model.weights.h5``,
``history.json`` and ``train_meta.json``. Training shows a progress bar, writes
checkpoints every epoch, resumes an interrupted run from ``checkpoints/backup``,
stops early on the validation loss and is seeded.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from mlkit.data.dataset import Dataset
from mlkit.errors import MlkitError
from mlkit.models.config import DetectorConfig
from mlkit.models.detector import MAX_BOXES

log = logging.getLogger(__name__)

WEIGHTS = "model.weights.h5"
CONFIG = "config.json"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 16
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.5
    patience: int = 4  # early stopping on val_loss
    seed: int = 0
    flip: bool = True
    color_jitter: float = 0.15
    zoom: float = 0.0  # zoom half the images in by up to 1 + zoom (real footage has people at every scale)
    backbone_weights: str = "none"  # none, imagenet or a weights file (mlkit.models.backbone); unused with init_from

    def __post_init__(self) -> None:
        from mlkit.models.backbone import check_backbone_weights

        check_optimizer_settings(self.epochs, self.batch_size, self.learning_rate)
        if not 0 <= self.zoom <= 3:
            raise MlkitError(f"zoom must be in [0, 3] (0 = off, 1 = up to 2x), got {self.zoom}")
        object.__setattr__(self, "backbone_weights", check_backbone_weights(self.backbone_weights))


def check_optimizer_settings(epochs: int, batch_size: int, learning_rate: float) -> None:
    """The checks every training config shares; raises ``MlkitError`` naming the bad value."""
    if epochs < 1:
        raise MlkitError(f"epochs must be >= 1, got {epochs}")
    if batch_size < 1:
        raise MlkitError(f"batch_size must be >= 1, got {batch_size}")
    if not 0 < learning_rate < 1:
        raise MlkitError(f"learning_rate must be in (0, 1), got {learning_rate}")


def prepare_arrays(ds: Dataset, cfg: DetectorConfig, show_progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Letterbox every image to the model input; targets ``[N, MAX_BOXES, 5]`` in input pixels, class -1 pads."""
    from tqdm.auto import tqdm

    from mlkit.models.postprocess import letterbox

    n = len(ds)
    images = np.empty((n, cfg.input_height, cfg.input_width, 3), np.uint8)
    targets = np.full((n, MAX_BOXES, 5), -1.0, np.float32)
    for i in tqdm(range(n), desc=f"load {ds.name}", unit="img", disable=not show_progress):
        img, lb = letterbox(ds.load_image(i), cfg.input_width, cfg.input_height)
        images[i] = img
        rec = ds[i]
        k = min(len(rec.labels), MAX_BOXES)
        if len(rec.labels) > MAX_BOXES:
            log.warning("%s has %d boxes; training uses the first %d", rec.path, len(rec.labels), MAX_BOXES)
        targets[i, :k, 0] = rec.labels[:k]
        targets[i, :k, 1:] = rec.boxes[:k] * lb.scale
    return images, targets


def zoom_in(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, zoom: float, share: float = 0.5,
            min_visible: float = 0.4) -> None:
    """Zoom a random ``share`` of the batch ``x`` in place by ``U(1, 1 + zoom)`` about a random point; boxes
    follow, and a box less than ``min_visible`` inside the crop is dropped (class -1)."""
    import cv2

    n, h, w = x.shape[:3]
    for i in np.flatnonzero(rng.random(n) < share):
        s = rng.uniform(1.0, 1.0 + zoom)
        cw, ch = w / s, h / s
        x0, y0 = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
        crop = x[i, int(y0):int(np.ceil(y0 + ch)), int(x0):int(np.ceil(x0 + cw))]
        x[i] = cv2.resize(crop, (w, h), interpolation=cv2.INTER_LINEAR)
        valid = y[i, :, 0] >= 0
        b = (y[i, :, 1:] - [x0, y0, x0, y0]) * s
        area = np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)
        b = np.clip(b, 0, [w, h, w, h])
        inside = np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)
        keep = valid & (inside >= min_visible * np.maximum(area, 1e-6)) & (inside > 0)
        y[i, :, 1:] = np.where(keep[:, None], b, y[i, :, 1:])
        y[i, ~keep & valid, 0] = -1


def _batches(images: np.ndarray, targets: np.ndarray, tc: TrainConfig, width: int, shuffle: bool):
    import keras

    class Batches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.rng = np.random.default_rng(tc.seed)
            self.order = np.arange(len(images))
            self.on_epoch_end()

        def __len__(self) -> int:
            return int(np.ceil(len(images) / tc.batch_size))

        def on_epoch_end(self) -> None:
            if shuffle:
                self.rng.shuffle(self.order)

        def __getitem__(self, idx: int):
            sel = self.order[idx * tc.batch_size:(idx + 1) * tc.batch_size]
            x = images[sel].astype(np.float32)
            y = targets[sel].copy()
            if shuffle:
                rng = np.random.default_rng([tc.seed, idx, int(self.rng.integers(1 << 30))])
                if tc.flip:
                    flip = rng.random(len(sel)) < 0.5
                    x[flip] = x[flip, :, ::-1]
                    valid = y[..., 0] >= 0
                    fx = flip[:, None] & valid
                    x0 = y[..., 1].copy()
                    y[..., 1] = np.where(fx, width - y[..., 3], y[..., 1])
                    y[..., 3] = np.where(fx, width - x0, y[..., 3])
                if tc.zoom > 0:
                    zoom_in(x, y, rng, tc.zoom)
                if tc.color_jitter > 0:
                    j = tc.color_jitter
                    gain = rng.uniform(1 - j, 1 + j, (len(sel), 1, 1, 3)).astype(np.float32)
                    bias = rng.uniform(-j * 60, j * 60, (len(sel), 1, 1, 1)).astype(np.float32)
                    x = np.clip(x * gain + bias, 0, 255)
            return x, y

    return Batches()


class _Progress:
    """A tqdm bar per run (epochs x steps) with the running loss; works in notebooks and logs."""

    @staticmethod
    def callback(total_steps: int, initial_epoch: int, steps_per_epoch: int, enabled: bool):
        import keras
        from tqdm.auto import tqdm

        class Cb(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.bar = tqdm(total=total_steps, initial=initial_epoch * steps_per_epoch, unit="step",
                                desc="train", disable=not enabled)

            def on_train_batch_end(self, batch, logs=None):
                self.bar.update(1)
                if logs and "loss" in logs:
                    self.bar.set_postfix(loss=f"{float(logs['loss']):.3f}", refresh=False)

            def on_epoch_end(self, epoch, logs=None):
                logs = logs or {}
                msg = " ".join(f"{k}={float(v):.4f}" for k, v in logs.items() if k in ("loss", "val_loss"))
                self.bar.write(f"epoch {epoch + 1}: {msg}")

            def on_train_end(self, logs=None):
                self.bar.close()

        return Cb()


def save_detector(model, cfg: DetectorConfig, out_dir: Path) -> None:
    """Write weights and config atomically (temp name + ``os.replace``).

    Only the layers' weights: a compiled model would also save its optimizer's moments (twice the weights' size),
    which nothing reads back (fine-tuning starts a new optimizer; an interrupted run resumes from its checkpoint).
    """
    from mlkit.models.detector import build_detector

    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".tmp-{os.getpid()}.weights.h5"
    if getattr(model, "optimizer", None) is not None:
        bare = build_detector(cfg)
        bare.set_weights(model.get_weights())
        model = bare
    model.save_weights(tmp)
    os.replace(tmp, out_dir / WEIGHTS)
    cfg.save(out_dir / CONFIG)


def load_detector(model_dir: str | Path):
    """Rebuild a trained detector from its folder: returns (keras model, DetectorConfig)."""
    from mlkit.models.detector import build_detector

    model_dir = Path(model_dir)
    if not (model_dir / CONFIG).is_file() or not (model_dir / WEIGHTS).is_file():
        raise MlkitError(f"{model_dir} is not a trained detector folder: it needs {CONFIG} and {WEIGHTS}")
    cfg = DetectorConfig.load(model_dir / CONFIG)
    model = build_detector(cfg)
    model.load_weights(model_dir / WEIGHTS)
    return model, cfg


def train_detector(
    cfg: DetectorConfig,
    train: Dataset,
    val: Dataset | None,
    out_dir: str | Path,
    tc: TrainConfig = TrainConfig(),
    init_from: str | Path | None = None,
    resume: bool = True,
    show_progress: bool = True,
    callbacks: tuple = (),
) -> dict:
    """Train and save to ``out_dir``; returns the training summary (also written to train_meta.json).

    ``init_from`` starts from a previous model's weights (incremental learning). With
    ``resume`` an interrupted run continues from its last completed epoch.
    """
    import keras

    from mlkit.models.detector import build_detector, make_loss

    out_dir = Path(out_dir)
    if len(train) == 0:
        raise MlkitError("the training split is empty")
    if tuple(train.class_names) != tuple(cfg.class_names):
        raise MlkitError(f"dataset classes {list(train.class_names)} differ from the model's {list(cfg.class_names)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(tc.seed)
    model = build_detector(cfg, seed=tc.seed, backbone_weights="none" if init_from is not None else tc.backbone_weights)
    if init_from is not None:
        prev, prev_cfg = load_detector(init_from)
        if (prev_cfg.alpha, prev_cfg.neck_channels, prev_cfg.head_convs, prev_cfg.class_names) != (
                cfg.alpha, cfg.neck_channels, cfg.head_convs, cfg.class_names):
            raise MlkitError(f"cannot start from {init_from}: its architecture differs from {cfg.name}")
        model.set_weights(prev.get_weights())
        log.info("initialised from %s", init_from)

    t0 = time.time()
    x_tr, y_tr = prepare_arrays(train, cfg, show_progress)
    train_data = _batches(x_tr, y_tr, tc, cfg.input_width, shuffle=True)
    val_data = None
    if val is not None and len(val):
        x_va, y_va = prepare_arrays(val, cfg, show_progress)
        val_data = _batches(x_va, y_va, tc, cfg.input_width, shuffle=False)
    steps = len(train_data)
    total = steps * tc.epochs
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=tc.learning_rate * 0.1, decay_steps=max(1, total - int(tc.warmup_epochs * steps)),
        alpha=0.02, warmup_target=tc.learning_rate, warmup_steps=int(tc.warmup_epochs * steps))
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=tc.weight_decay, clipnorm=10.0),
                  loss=make_loss(cfg))

    ckpt = out_dir / "checkpoints"
    ckpt.mkdir(exist_ok=True)
    backup_dir = ckpt / "backup"
    resumed_from = _backup_epoch(backup_dir) if resume else None
    monitor = "val_loss" if val_data is not None else "loss"
    callbacks = [
        keras.callbacks.BackupAndRestore(str(backup_dir), delete_checkpoint=True),
        keras.callbacks.ModelCheckpoint(str(ckpt / "last.weights.h5"), save_weights_only=True),
        keras.callbacks.ModelCheckpoint(str(ckpt / "best.weights.h5"), save_weights_only=True,
                                        monitor=monitor, save_best_only=True),
        keras.callbacks.EarlyStopping(monitor=monitor, patience=tc.patience, restore_best_weights=True),
        _Progress.callback(total, resumed_from or 0, steps, show_progress),
        *callbacks,
    ]
    if not resume and backup_dir.exists():
        import shutil

        shutil.rmtree(backup_dir)
    hist = model.fit(train_data, validation_data=val_data, epochs=tc.epochs, callbacks=callbacks, verbose=0)
    seconds = time.time() - t0
    save_detector(model, cfg, out_dir)
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    from mlkit.data.atomic import atomic_write_text

    atomic_write_text(out_dir / "history.json", json.dumps(history, indent=2))
    meta = {
        "detector": cfg.to_dict(),
        "train_config": dataclasses.asdict(tc),
        "train_images": len(train),
        "val_images": len(val) if val is not None else 0,
        "epochs_run": len(history.get("loss", [])),
        "resumed_from_epoch": resumed_from,
        "init_from": str(init_from) if init_from else None,
        "backbone_weights": None if init_from else tc.backbone_weights,
        "train_seconds": round(seconds, 1),
        "images_per_second": round(len(train) * len(history.get("loss", [])) / max(seconds, 1e-9), 2),
        "params": int(model.count_params()),
    }
    atomic_write_text(out_dir / "train_meta.json", json.dumps(meta, indent=2))
    return meta


def _backup_epoch(backup_dir: Path) -> int | None:
    info = backup_dir / "training_metadata.json"
    if info.is_file():
        try:
            return int(json.loads(info.read_text())["epoch"])  # epochs completed = first epoch to run
        except (KeyError, ValueError, json.JSONDecodeError):
            return None
    return None
