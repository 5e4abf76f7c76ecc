"""Relabelling hard examples: import a person's labels (YOLO, VOC, COCO), or auto-label with the big model.

Both append to the job's dataset index (``mlkit.incremental.index``); each new sample is drawn into
train or eval with ``trainProb``. Auto-labels are marked ``pseudo`` with their scores and source, so a
person can review them; importing reviewed labels for the same frame later replaces the pseudo-labels
(the sample keeps its split).
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlkit.data.atomic import atomic_copy
from mlkit.errors import MlkitError, paths_named_as
from mlkit.incremental.index import DatasetIndex, draw_split, sample
from mlkit.incremental.store import HardExample, read_store

log = logging.getLogger(__name__)

LABEL_FORMATS = ("yolo", "voc", "coco")


@dataclasses.dataclass
class LabelReport:
    added: int = 0
    replaced: int = 0
    train: int = 0
    eval: int = 0
    skipped: int = 0  # store frames without labels (import) or without a confident box (auto)
    unmatched: list[str] = dataclasses.field(default_factory=list)  # labels with no frame in the store

    def line(self) -> str:
        msg = (f"{self.added} samples added, {self.replaced} relabelled ({self.train} train, {self.eval} eval), "
               f"{self.skipped} frames skipped")
        if self.unmatched:
            msg += f"; {len(self.unmatched)} labelled images are not in the store (e.g. {self.unmatched[0]})"
        return msg


def _remap(labels: np.ndarray, source: Sequence[str], target: Sequence[str], where: str) -> np.ndarray:
    if tuple(source) == tuple(target):
        return labels
    missing = [n for n in source if n not in target]
    if missing:
        raise MlkitError(f"{where}: classes {missing} are not the job's classes {list(target)}")
    mapping = np.array([list(target).index(n) for n in source], np.int64)
    return mapping[labels] if len(labels) else labels


def _yolo_labels(labels: Path, examples: list[HardExample], class_names: Sequence[str]) -> dict[str, tuple]:
    """A labelling tool's YOLO export: one ``<frame>.txt`` per image (+ optional classes.txt / obj.names)."""
    from mlkit.data.formats.yolo import find_class_file, read_class_names, read_label_file

    if not labels.is_dir():
        raise MlkitError(f"YOLO labels must be a folder of <frame>.txt files, got {labels}")
    class_file = find_class_file(labels)
    names = read_class_names(class_file) if class_file is not None else tuple(class_names)
    out = {}
    for ex in examples:
        txt = labels / (ex.image.stem + ".txt")
        if txt.is_file():
            boxes, ids = read_label_file(txt, ex.width, ex.height, len(names))
            out[ex.image.stem] = (boxes, _remap(ids, names, class_names, str(txt)))
    return out


def _voc_labels(labels: Path, store: Path, class_names: Sequence[str]) -> dict[str, tuple]:
    from mlkit.data.formats.voc import read_voc

    ann = labels / "Annotations" if (labels / "Annotations").is_dir() else labels
    if not any(ann.glob("*.xml")):
        raise MlkitError(f"no VOC .xml files in {ann}")
    with tempfile.TemporaryDirectory(prefix="mlkit-voc-") as tmp:
        # read_voc looks for images in <root>/JPEGImages: point it at the store.
        (Path(tmp) / "Annotations").symlink_to(ann.resolve(), target_is_directory=True)
        (Path(tmp) / "JPEGImages").symlink_to(store.resolve(), target_is_directory=True)
        with paths_named_as({str(Path(tmp) / "Annotations"): str(ann), str(Path(tmp) / "JPEGImages"): str(store)}):
            ds = read_voc(tmp, class_names=class_names)
    return {Path(r.path).stem: (r.boxes, r.labels) for r in ds}


def _coco_labels(labels: Path, store: Path, class_names: Sequence[str]) -> dict[str, tuple]:
    from mlkit.data.formats.coco import read_coco

    path = labels / "annotations.json" if labels.is_dir() else labels
    ds = read_coco(path, image_root=store)
    return {Path(r.path).stem: (r.boxes, _remap(r.labels, ds.class_names, class_names, str(path))) for r in ds}


def _copy_image(index: DatasetIndex, ex: HardExample) -> str:
    dest = index.images_dir / f"{ex.id}{ex.image.suffix.lower() or '.jpg'}"
    atomic_copy(ex.image, dest)
    return str(dest.relative_to(index.root))


def _check_train_prob(train_prob: float) -> None:
    if not 0 < train_prob <= 1:
        raise MlkitError(f"trainProb must be in (0, 1], got {train_prob}")


def _add(index: DatasetIndex, samples: list[dict], report: LabelReport) -> None:
    """Append to the index and count the samples' splits as the index now holds them."""
    report.added, report.replaced = index.add(samples)
    current = {e["id"]: e["split"] for e in index.entries()}
    report.train = sum(current[s["id"]] == "train" for s in samples)
    report.eval = len(samples) - report.train


def import_labels(store: str | Path, labels: str | Path, fmt: str, index_root: str | Path, train_prob: float,
                  class_names: Sequence[str] | None = None, seed: int = 0, prefix: str = "",
                  source: str | None = None) -> LabelReport:
    """Match labels to the store's frames by file name and append them to the index."""
    if fmt not in LABEL_FORMATS:
        raise MlkitError(f"unknown label format {fmt!r}; choose one of {', '.join(LABEL_FORMATS)}")
    _check_train_prob(train_prob)
    store, labels = Path(store), Path(labels)
    if not labels.exists():
        raise MlkitError(f"labels not found: {labels}")
    index = DatasetIndex(index_root, class_names).create()
    names = index.class_names
    examples = read_store(store, prefix)
    if fmt == "yolo":
        found = _yolo_labels(labels, examples, names)
    elif fmt == "voc":
        found = _voc_labels(labels, store, names)
    else:
        found = _coco_labels(labels, store, names)
    report = LabelReport()
    by_stem = {ex.image.stem: ex for ex in examples}
    report.unmatched = sorted(set(found) - set(by_stem))
    samples = []
    for stem, ex in by_stem.items():
        if stem not in found:
            report.skipped += 1
            continue
        boxes, ids = found[stem]
        split = draw_split(ex.id, train_prob, seed)
        samples.append(sample(ex.id, _copy_image(index, ex), ex.width, ex.height, boxes, ids, split,
                              source or f"import:{fmt}"))
    if not samples:
        raise MlkitError(f"none of the {len(found)} labelled images in {labels} matches a frame of the store "
                         f"{store} ({len(examples)} frames); labels are matched by file name")
    _add(index, samples, report)
    return report


def auto_label(store: str | Path, model: str | Path, index_root: str | Path, train_prob: float,
               threshold: float = 0.5, class_names: Sequence[str] | None = None, seed: int = 0,
               prefix: str = "", num_threads: int = 2, iou_threshold: float | None = None) -> LabelReport:
    """Pseudo-label the store's unlabelled frames with ``model`` (the big model); keep boxes >= ``threshold``.

    Frames a person already labelled are left alone; frames with no box above the threshold are skipped
    (an empty label would teach the model that nothing is there).
    """
    from mlkit.data.dataset import read_rgb
    from mlkit.models.predict import open_detector

    if not 0 < threshold < 1:
        raise MlkitError(f"the confidence threshold must be in (0, 1), got {threshold}")
    _check_train_prob(train_prob)
    detector = open_detector(model, num_threads=num_threads)
    index = DatasetIndex(index_root, class_names)
    if index.class_names is None:  # a new index takes the labelling model's classes
        index = DatasetIndex(index_root, detector.meta.class_names)
    index.create()
    if tuple(detector.meta.class_names) != tuple(index.class_names):
        raise MlkitError(f"model {model} predicts {list(detector.meta.class_names)}, the index holds "
                         f"{list(index.class_names)}")
    human = {e["id"] for e in index.entries() if not e.get("pseudo")}
    report, samples = LabelReport(), []
    tag = f"auto:{Path(model).name if Path(model).suffix != '.tflite' else Path(model).parent.name}"
    for ex in read_store(store, prefix):
        if ex.id in human:
            continue
        (det,) = detector.predict([read_rgb(ex.image)], score_threshold=threshold, iou_threshold=iou_threshold)
        if len(det) == 0:
            report.skipped += 1
            continue
        split = draw_split(ex.id, train_prob, seed)
        samples.append(sample(ex.id, _copy_image(index, ex), ex.width, ex.height, det.boxes, det.labels, split,
                              tag, pseudo=True, scores=det.scores, model=str(model), threshold=threshold))
    if samples:
        _add(index, samples, report)
    return report
