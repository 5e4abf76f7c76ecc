"""TFLite export in four variants, with a fidelity report against the Keras model.

Variants: ``fp32``; ``fp16`` (float16 weights); ``dynamic`` (int8 weights, float
activations); ``int8`` (full integer with a representative dataset, uint8 input).
Each lands in ``<out>/<variant>/model.tflite`` next to a ``metadata.json`` that tells
a runtime how to pre- and post-process, so the folder can be served as it is.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlkit.data.atomic import atomic_path, atomic_write_text
from mlkit.data.dataset import Dataset
from mlkit.errors import MlkitError

log = logging.getLogger(__name__)

VARIANTS = ("fp32", "fp16", "dynamic", "int8")


def _saved_model(model, cfg, work: Path) -> Path:
    """A SavedModel whose signature names its outputs ``reg`` and ``scores`` (TFLite keeps the names)."""
    import keras
    import tensorflow as tf

    from mlkit.models.detector import inference_model

    inf = inference_model(model, cfg)
    archive = keras.export.ExportArchive()
    archive.track(inf)

    def serve(image):
        out = inf(image, training=False)
        return {"reg": out["reg"], "scores": out["scores"]}

    archive.add_endpoint("serving_default", serve, input_signature=[
        tf.TensorSpec([None, cfg.input_height, cfg.input_width, 3], tf.float32, name="image")])
    path = work / "saved_model"
    archive.write_out(str(path), verbose=False)
    return path


def convert_variant(saved_model: Path, variant: str, calibration: Sequence[np.ndarray] = ()) -> bytes:
    import tensorflow as tf

    if variant not in VARIANTS:
        raise MlkitError(f"unknown TFLite variant {variant!r}; choose from {list(VARIANTS)}")
    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    if variant == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif variant == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant == "int8":
        if not len(calibration):
            raise MlkitError("full-int8 conversion needs calibration images (a representative dataset)")

        def representative():
            for img in calibration:
                yield {"image": img[None].astype(np.float32)}

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.uint8
    return conv.convert()


def calibration_images(ds: Dataset, cfg, count: int, seed: int = 0) -> list[np.ndarray]:
    """Letterboxed images drawn from ``ds`` (a training or validation split, never the test split)."""
    from mlkit.models.postprocess import letterbox

    if len(ds) == 0:
        raise MlkitError("the calibration split is empty")
    idx = np.random.default_rng(seed).permutation(len(ds))[:count]
    return [letterbox(ds.load_image(int(i)), cfg.input_width, cfg.input_height)[0] for i in idx]


def export_tflite(model_dir: str | Path, out_dir: str | Path, variants: Sequence[str] = VARIANTS,
                  calibration: Dataset | None = None, calibration_count: int = 200) -> dict[str, Path]:
    """Convert a trained Keras detector folder; returns {variant: path to model.tflite}."""
    import tempfile

    from mlkit.models.predict import DetectorMeta
    from mlkit.models.train import load_detector

    model, cfg = load_detector(model_dir)
    out_dir = Path(out_dir)
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise MlkitError(f"unknown TFLite variants {sorted(unknown)}; choose from {list(VARIANTS)}")
    calib: list[np.ndarray] = []
    if "int8" in variants:
        if calibration is None:
            raise MlkitError("the int8 variant needs a calibration dataset (use the train or val split)")
        calib = calibration_images(calibration, cfg, calibration_count)
    meta = DetectorMeta.from_config(cfg)
    paths = {}
    with tempfile.TemporaryDirectory() as work:
        saved = _saved_model(model, cfg, Path(work))
        for v in variants:
            log.info("converting %s", v)
            blob = convert_variant(saved, v, calib)
            dest = out_dir / v / "model.tflite"
            dest.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(dest) as tmp:
                tmp.write_bytes(blob)
            atomic_write_text(dest.parent / "metadata.json",
                              json.dumps({**meta.to_dict(), "variant": v}, indent=2))
            paths[v] = dest
    return paths


@dataclasses.dataclass
class FidelityRow:
    variant: str
    map50: float
    map: float
    delta_map50: float  # variant minus Keras, in mAP points x 100
    size_mb: float
    ms_per_image: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def fidelity_report(model_dir: str | Path, tflite: dict[str, Path], test: Dataset, num_threads: int = 2,
                    show_progress: bool = True) -> list[FidelityRow]:
    """mAP of each variant against the Keras model on the same images, file size and speed."""
    from mlkit.evaluation import evaluate
    from mlkit.models.predict import KerasDetector, TFLiteDetector

    keras_det = KerasDetector(model_dir)
    ref = evaluate(test, lambda ims: keras_det.predict(ims, score_threshold=0.05), batch_size=8,
                   show_progress=show_progress)
    rows = [FidelityRow("keras", ref.map50, ref.map, 0.0, float("nan"), 1000.0 / ref.images_per_second)]
    for v, path in tflite.items():
        det = TFLiteDetector(path, num_threads=num_threads)
        res = evaluate(test, lambda ims, d=det: d.predict(ims, score_threshold=0.05), batch_size=1,
                       show_progress=show_progress)
        rows.append(FidelityRow(v, res.map50, res.map, 100.0 * (res.map50 - ref.map50),
                                Path(path).stat().st_size / 1e6, 1000.0 / res.images_per_second))
    return rows


def fidelity_table(rows: Sequence[FidelityRow]) -> str:
    lines = [f"{'variant':<8} {'mAP@.5':>7} {'mAP':>7} {'delta(pts)':>10} {'size MB':>8} {'ms/img':>7}",
             "-" * 52]
    for r in rows:
        size = "-" if np.isnan(r.size_mb) else f"{r.size_mb:.2f}"
        lines.append(f"{r.variant:<8} {r.map50:7.3f} {r.map:7.3f} {r.delta_map50:+10.2f} {size:>8} "
                     f"{r.ms_per_image:7.2f}")
    return "\n".join(lines)
