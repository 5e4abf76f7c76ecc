"""The mlkit dataset folder: ``dataset.json`` naming one annotated folder per split.

```
<root>/dataset.json        {"format": "coco", "class_names": [...], "splits": {"train": "train", ...}}
<root>/train/annotations.json + train/images/   (or YOLO data.txt, or VOC, per "format")
```
A folder without ``dataset.json`` is read as a single split by format auto-detection.
"""

from __future__ import annotations

import json
from pathlib import Path

from mlkit.data.dataset import Dataset
from mlkit.errors import MlkitError

MANIFEST = "dataset.json"


def split_path(split_dir: Path, fmt: str) -> Path:
    return {"coco": split_dir / "annotations.json", "yolo": split_dir / "data.txt", "voc": split_dir}[fmt]


def write_dataset_dir(root: Path, splits: dict[str, Dataset], fmt: str = "coco", extra: dict | None = None) -> None:
    from mlkit.data.atomic import atomic_write_text
    from mlkit.data.formats import FORMATS, write_dataset

    if fmt not in FORMATS:
        raise MlkitError(f"unknown dataset format {fmt!r}; choose one of {list(FORMATS)}")
    root = Path(root)
    names: tuple[str, ...] = ()
    for split, ds in splits.items():
        write_dataset(ds, split_path(root / split, fmt), fmt)
        names = ds.class_names
    manifest = {"format": fmt, "class_names": list(names), "splits": {s: s for s in splits},
                "counts": {s: len(d) for s, d in splits.items()}, **(extra or {})}
    atomic_write_text(root / MANIFEST, json.dumps(manifest, indent=2))


def read_manifest(root: Path) -> dict:
    path = Path(root) / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise MlkitError(f"{path} not found: is {root} an mlkit dataset folder?") from None
    except json.JSONDecodeError as exc:
        raise MlkitError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from exc


def load_split(root: str | Path, split: str = "train") -> Dataset:
    """Read one split of a dataset folder (or the folder itself when it has no manifest)."""
    from mlkit.data.formats import read_dataset

    root = Path(root)
    if not root.exists():
        raise MlkitError(f"dataset not found: {root}")
    if not (root / MANIFEST).exists():
        return read_dataset(root)
    manifest = read_manifest(root)
    splits = manifest.get("splits", {})
    if split not in splits:
        raise MlkitError(f"{root} has no split {split!r}; it has {sorted(splits)}")
    fmt = manifest.get("format", "auto")
    ds = read_dataset(split_path(root / splits[split], fmt) if fmt != "auto" else root / splits[split], fmt,
                      class_names=tuple(manifest["class_names"]) if manifest.get("class_names") else None)
    ds.name = split
    return ds


def import_dataset(src: str | Path, dest_root: str | Path, fmt: str = "auto", val_fraction: float = 0.1,
                   test_fraction: float = 0.2, seed: int = 0, class_names: tuple[str, ...] | None = None) -> Path:
    """Turn a downloaded dataset into an mlkit dataset folder with train/val/test splits.

    An mlkit dataset folder (with ``dataset.json``) is copied as it is; a single COCO,
    YOLO or VOC set is split at random (seeded) into train/val/test.
    """
    import shutil

    import numpy as np

    from mlkit.data.formats import read_dataset

    src, dest_root = Path(src), Path(dest_root)
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise MlkitError(f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must be in [0, 1) "
                         "and leave some training images")
    if (src / MANIFEST).is_file():
        if src.resolve() != dest_root.resolve():
            shutil.copytree(src, dest_root, dirs_exist_ok=True)
        return dest_root
    ds = read_dataset(src, fmt, class_names=class_names)
    if len(ds) == 0:
        raise MlkitError(f"{src} holds no images")
    order = np.random.default_rng(seed).permutation(len(ds))
    n_test, n_val = int(round(len(ds) * test_fraction)), int(round(len(ds) * val_fraction))
    parts = {"test": order[:n_test], "val": order[n_test:n_test + n_val], "train": order[n_test + n_val:]}
    splits = {name: ds.subset([int(i) for i in idx], name) for name, idx in parts.items() if len(idx)}
    write_dataset_dir(dest_root, splits, fmt="coco", extra={"imported_from": str(src), "split_seed": seed})
    return dest_root
