"""Merge labelled datasets and relabelling indexes into one dataset folder, with classes matched by name.

The usual use: a real camera's frames pseudo-labelled by a real detector (an index from ``mlkit label auto``,
classes ``person``) mixed with a dataset that holds every class the model predicts (mlkit's synthetic scenes:
``person``, ``helmet``, ...), to fine-tune a model on both. Class ids are remapped by name into the target's
class list (the first source's, unless given); a class the target does not know is an error, never dropped.
An index's ``eval`` samples become the ``val`` split.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlkit.data.dataset import Dataset, ImageRecord
from mlkit.errors import MlkitError

SPLITS = ("train", "val", "test")


def read_source(path: str | Path) -> dict[str, Dataset]:
    """The splits of a dataset folder (``dataset.json``) or of a relabelling index (``index.jsonl``)."""
    from mlkit.data.layout import MANIFEST, load_split, read_manifest
    from mlkit.incremental.index import INDEX, DatasetIndex

    path = Path(path)
    if (path / MANIFEST).is_file():
        return {s: load_split(path, s) for s in read_manifest(path).get("splits", {}) if s in SPLITS}
    if (path / INDEX).is_file():
        index = DatasetIndex(path)
        entries = index.entries()
        return {split: index.to_dataset([e for e in entries if e["split"] == part], split)
                for split, part in (("train", "train"), ("val", "eval"))}
    raise MlkitError(f"{path} is neither an mlkit dataset folder ({MANIFEST}) nor a relabelling index ({INDEX}); "
                     "give folders made by `mlkit data generate/download` or `mlkit label auto/import`")


def remap(ds: Dataset, class_names: Sequence[str], where: str) -> Dataset:
    """``ds`` with its class ids renumbered into ``class_names`` (matched by name)."""
    target = tuple(class_names)
    if tuple(ds.class_names) == target:
        return ds
    missing = [n for n in ds.class_names if n not in target]
    if missing:
        raise MlkitError(f"{where}: classes {missing} are not among the target classes {list(target)}; merge into "
                         "a dataset that has them, or relabel")
    mapping = np.array([target.index(n) for n in ds.class_names], np.int64)
    records = [ImageRecord(r.path, r.width, r.height, r.boxes, mapping[r.labels] if len(r.labels) else r.labels,
                           dict(r.meta)) for r in ds]
    return Dataset(records, target, ds.name)


def take(ds: Dataset, limit: int | None, seed: int) -> Dataset:
    """At most ``limit`` images of ``ds``, drawn at random (seeded) and kept in their order."""
    if limit is None or limit >= len(ds):
        return ds
    keep = np.sort(np.random.default_rng(seed).choice(len(ds), limit, replace=False))
    return ds.subset([int(i) for i in keep])


def merge_datasets(sources: Sequence[str | Path], out_dir: str | Path, *, class_names: Sequence[str] | None = None,
                   max_train: Sequence[int | None] | None = None, seed: int = 0) -> dict[str, int]:
    """Write the splits of every source, concatenated, as one COCO dataset folder; returns the split sizes.

    ``max_train[i]`` caps source ``i``'s training images (None: all of them).
    """
    from mlkit.data.layout import write_dataset_dir

    if not sources:
        raise MlkitError("give at least one dataset or index to merge")
    caps = list(max_train) if max_train is not None else [None] * len(sources)
    if len(caps) != len(sources):
        raise MlkitError(f"{len(caps)} training caps for {len(sources)} sources; give one per source")
    read = [(Path(s), read_source(s)) for s in sources]
    target = tuple(class_names) if class_names else next(iter(read[0][1].values())).class_names
    merged: dict[str, list[ImageRecord]] = {}
    for i, (path, splits) in enumerate(read):
        for split, ds in splits.items():
            if split == "train":
                ds = take(ds, caps[i], seed + i)
            merged.setdefault(split, []).extend(remap(ds, target, f"{path} ({split})").images)
    if not merged.get("train"):
        raise MlkitError(f"the merged dataset would have no training images (sources: {[str(s) for s in sources]})")
    out = {s: Dataset(merged[s], target, s) for s in SPLITS if merged.get(s)}
    write_dataset_dir(Path(out_dir), out, fmt="coco",
                      extra={"merged_from": [str(s) for s in sources], "max_train": caps, "seed": seed})
    return {s: len(d) for s, d in out.items()}
