"""Train one detector on a dataset folder, evaluate it on the test split and write its model card."""

from __future__ import annotations

import dataclasses
import logging
import shlex
import sys
from pathlib import Path

from mlkit.data.layout import load_split, read_manifest
from mlkit.models.card import write_card
from mlkit.models.config import DetectorConfig
from mlkit.models.train import TrainConfig, train_detector

log = logging.getLogger(__name__)


def evaluate_keras(model_dir: Path, data_root: Path, split: str = "test", show_progress: bool = True):
    from mlkit.evaluation import evaluate
    from mlkit.models.predict import KerasDetector

    det = KerasDetector(model_dir)
    ds = load_split(data_root, split)
    # A low score threshold: mAP integrates over all operating points.
    return evaluate(ds, lambda ims: det.predict(ims, score_threshold=0.05), batch_size=8,
                    show_progress=show_progress)


def train_and_evaluate(cfg: DetectorConfig, tc: TrainConfig, data_root: str | Path, out_dir: str | Path,
                       init_from: str | Path | None = None, resume: bool = True,
                       show_progress: bool = True) -> dict:
    from mlkit.models.detector import build_detector, count_flops

    data_root, out_dir = Path(data_root), Path(out_dir)
    train = load_split(data_root, "train")
    manifest = read_manifest(data_root)
    val = load_split(data_root, "val") if "val" in manifest.get("splits", {}) else None
    meta = train_detector(cfg, train, val, out_dir, tc, init_from=init_from, resume=resume,
                          show_progress=show_progress)
    result = evaluate_keras(out_dir, data_root, "test", show_progress) if "test" in manifest["splits"] else None
    flops = count_flops(build_detector(cfg))
    card = write_card(
        out_dir,
        name=cfg.name,
        command=" ".join(shlex.quote(a) for a in [Path(sys.argv[0]).name, *sys.argv[1:]]),
        dataset={"root": str(data_root), "generator": manifest.get("generator"), "counts": manifest.get("counts")},
        detector=cfg.to_dict(),
        train_config=dataclasses.asdict(tc),
        params=meta["params"],
        flops=flops,
        training=meta,
        metrics={"test": result.to_dict() if result else None},
    )
    log.info("model card: %s", card)
    return {"meta": meta, "result": result, "card": card}
