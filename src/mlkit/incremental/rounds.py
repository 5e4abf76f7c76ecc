"""One round's work, as library functions: round data, train from the deployed model, evaluate, decide.

The KFP components (``components/incremental_train``, ``components/compare_models``,
``components/promote``) and the controller's in-process runner call these same functions.

A model folder is a trained detector folder (``config.json`` + ``model.weights.h5``) with its TFLite
export under ``tflite/<variant>/`` (``model.tflite`` + ``metadata.json``), like ``models/little``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np

from mlkit.data.atomic import atomic_write_text
from mlkit.errors import MlkitError
from mlkit.incremental.index import DatasetIndex

log = logging.getLogger(__name__)


def tflite_dir(model_dir: str | Path, variant: str) -> Path:
    return Path(model_dir) / "tflite" / variant


def ensure_tflite(model_dir: str | Path, variant: str, calibration=None) -> Path:
    """The model's ``tflite/<variant>`` folder, exporting it first when missing (int8 needs ``calibration``)."""
    from mlkit.models.export import export_tflite

    out = tflite_dir(model_dir, variant)
    if not (out / "model.tflite").is_file():
        export_tflite(model_dir, Path(model_dir) / "tflite", [variant], calibration=calibration,
                      calibration_count=min(200, len(calibration) if calibration is not None else 0))
    return out


def prepare_round_data(index_root: str | Path, cut_from: int, cut_to: int, out_dir: str | Path,
                       replay_ratio: float = 1.0, seed: int = 0) -> dict:
    """Write the round's dataset folder: ``train`` = new train samples (seq in (cut_from, cut_to]) plus
    ``replay_ratio`` x as many older train samples drawn at random (against forgetting); ``eval`` = every
    eval sample up to ``cut_to`` (new and deployed models are compared on it). Returns the counts."""
    from mlkit.data.layout import write_dataset_dir

    index = DatasetIndex(index_root)
    entries = [e for e in index.entries() if e["seq"] <= cut_to]
    new = [e for e in entries if e["split"] == "train" and e["seq"] > cut_from and e.get("source") != "initial"]
    old = [e for e in entries if e["split"] == "train" and e not in new]
    evals = [e for e in entries if e["split"] == "eval"]
    if not new:
        raise MlkitError(f"round data: no new train samples in {index.path} after seq {cut_from}")
    if not evals:
        raise MlkitError(f"round data: the index {index.path} has no eval samples; new and deployed models "
                         "need a common eval set (raise the share of eval with a lower trainProb)")
    rng = np.random.default_rng(seed)
    k = min(len(old), int(round(replay_ratio * len(new))))
    replay = [old[i] for i in sorted(rng.choice(len(old), k, replace=False))] if k else []
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)  # a rerun of an interrupted round starts clean
    splits = {"train": index.to_dataset(new + replay, "train"), "eval": index.to_dataset(evals, "eval")}
    counts = {"new": len(new), "replay": len(replay), "eval": len(evals), "cut_from": cut_from, "cut_to": cut_to}
    write_dataset_dir(out_dir, splits, fmt="coco", extra={"incremental": counts})
    return counts


@dataclasses.dataclass(frozen=True)
class RoundParams:
    epochs: int = 3
    batch_size: int = 16
    learning_rate: float = 5e-4
    seed: int = 0
    variant: str = "int8"
    score_threshold: float = 0.3
    iou_threshold: float = 0.5

    @classmethod
    def from_job(cls, job) -> RoundParams:
        t, e = job.train_parameters(), job.eval_parameters()
        return cls(t["epochs"], t["batch_size"], t["learning_rate"], t["seed"], t["tflite_variant"],
                   e["obj_threshold"], e["nms_threshold"])


def train_candidate(data_dir: str | Path, deployed_model: str | Path, out_dir: str | Path, params: RoundParams,
                    show_progress: bool = False) -> dict:
    """Fine-tune the deployed model on the round's train split and export its TFLite variant."""
    from mlkit.data.layout import load_split
    from mlkit.models.config import DetectorConfig
    from mlkit.models.train import TrainConfig, train_detector

    out_dir = Path(out_dir)
    cfg = DetectorConfig.load(Path(deployed_model) / "config.json")
    train = load_split(data_dir, "train")
    tc = TrainConfig(epochs=params.epochs, batch_size=params.batch_size, learning_rate=params.learning_rate,
                     seed=params.seed, warmup_epochs=0.2, patience=params.epochs)
    meta = train_detector(cfg, train, None, out_dir, tc, init_from=deployed_model, resume=True,
                          show_progress=show_progress)
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)  # the weights are saved; keep folders small
    ensure_tflite(out_dir, params.variant, calibration=train)
    return meta


def evaluate_model(model_dir: str | Path, data_dir: str | Path, split: str, params: RoundParams,
                   num_threads: int = 2) -> dict:
    """``EvaluationResult.to_dict()`` of the model's TFLite variant on a split."""
    from mlkit.data.layout import load_split
    from mlkit.evaluation import evaluate
    from mlkit.models.predict import TFLiteDetector

    det = TFLiteDetector(tflite_dir(model_dir, params.variant) / "model.tflite", num_threads=num_threads)
    ds = load_split(data_dir, split)
    result = evaluate(ds, lambda ims: det.predict(ims, score_threshold=0.05, iou_threshold=params.iou_threshold),
                      batch_size=1, show_progress=False, score_threshold=params.score_threshold)
    return result.to_dict()


def decide(new: dict, old: dict, condition, class_names) -> dict:
    """Deltas (new - deployed, per class) and whether the deploy condition holds."""
    from mlkit.incremental.triggers import deploy_metrics, evaluate_condition

    deltas = deploy_metrics(new, old, class_names)
    try:
        holds, value = evaluate_condition(condition, deltas, class_names)
        reason = f"{condition.describe()} {'holds' if holds else 'does not hold'} ({condition.metric} = {value:+.4f})"
    except MlkitError as exc:  # e.g. an indexed class with no ground truth: no evidence, do not deploy
        holds, value, reason = False, None, f"not deployed: {exc}"
    map_delta = _finite_delta(new.get("map50"), old.get("map50"))
    return {"deploy": bool(holds), "value": value, "reason": reason, "deltas": deltas,
            "map50_delta": map_delta, "new": new, "old": old}


def _finite_delta(a, b):
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
        return None
    return float(a) - float(b)


def write_report(path: str | Path, report: dict) -> None:
    atomic_write_text(Path(path), json.dumps(report, indent=2))
