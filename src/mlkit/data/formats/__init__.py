"""Read, write and convert detection datasets: COCO JSON, YOLO/darknet txt, Pascal VOC XML.

>>> ds = read_dataset("helmet/")                 # format detected from the folder
>>> convert("helmet/data.txt", "out/coco", dst_fmt="coco")
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlkit.data.dataset import Dataset, ImageRecord
from mlkit.data.formats.coco import read_coco, write_coco
from mlkit.data.formats.voc import read_voc, write_voc
from mlkit.data.formats.yolo import read_yolo, write_yolo
from mlkit.errors import MlkitError

FORMATS: tuple[str, ...] = ("coco", "yolo", "voc")

__all__ = [
    "FORMATS",
    "convert",
    "detect_format",
    "read_coco",
    "read_dataset",
    "read_voc",
    "read_yolo",
    "write_coco",
    "write_dataset",
    "write_voc",
    "write_yolo",
]


def _check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise MlkitError(f"unknown dataset format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return fmt


def detect_format(path: Path | str) -> str:
    """Guess the format of a dataset file or folder."""
    path = Path(path)
    if not path.exists():
        raise MlkitError(f"dataset not found: {path}")
    if path.is_file():
        if path.suffix.lower() == ".json":
            return "coco"
        if path.suffix.lower() == ".txt":
            return "yolo"
    else:
        if (path / "annotations.json").is_file():
            return "coco"
        if (path / "data.txt").is_file():
            return "yolo"
        if (path / "Annotations").is_dir():
            return "voc"
    raise MlkitError(
        f"cannot tell the dataset format of {path}: looked for a .json file or a folder with "
        "annotations.json (COCO), a .txt index or a folder with data.txt (YOLO), and a folder with "
        f"Annotations/ (VOC); name the format (--from / --format on the command line, fmt= in Python): "
        f"one of {', '.join(FORMATS)}"
    )


def _reorder(ds: Dataset, class_names: Sequence[str]) -> Dataset:
    """Re-map class ids to follow ``class_names`` (e.g. HELMET_CLASSES); every name must be present."""
    class_names = tuple(class_names)
    if ds.class_names == class_names:
        return ds
    missing = [n for n in ds.class_names if n not in class_names]
    if missing:
        raise MlkitError(f"dataset classes {missing} are not in class_names {list(class_names)}")
    mapping = np.array([class_names.index(n) for n in ds.class_names], np.int64)
    records = [ImageRecord(r.path, r.width, r.height, r.boxes, mapping[r.labels], dict(r.meta)) for r in ds]
    return Dataset(records, class_names, ds.name)


def read_dataset(
    path: Path | str, fmt: str = "auto", class_names: Sequence[str] | None = None, split: str = "all"
) -> Dataset:
    """Read one split in any supported format; ``class_names`` fixes the class id order.

    ``path`` is the COCO json (or its folder), the YOLO index (or its folder) or the VOC root;
    ``split`` selects ``ImageSets/Main/<split>.txt`` for VOC.
    """
    path = Path(path)
    fmt = detect_format(path) if fmt == "auto" else _check_format(fmt)
    if fmt == "coco":
        ds = read_coco(path / "annotations.json" if path.is_dir() else path)
    elif fmt == "yolo":
        ds = read_yolo(path, class_names=tuple(class_names) if class_names is not None else None)
    else:
        ds = read_voc(path, split=split, class_names=class_names)
    return _reorder(ds, class_names) if class_names is not None else ds


def write_dataset(
    ds: Dataset, path: Path | str, fmt: str, *, split: str = "train", copy_images: bool = True
) -> Path:
    """Write ``ds`` to a folder or to its COCO ``.json`` / YOLO ``.txt`` index; returns the main path."""
    path = Path(path)
    _check_format(fmt)
    if fmt == "coco":
        return write_coco(ds, path if path.suffix.lower() == ".json" else path / "annotations.json",
                          copy_images=copy_images)
    if fmt == "yolo":  # the folder, or the index file inside it (``out/data.txt``)
        if path.suffix.lower() == ".txt":
            return write_yolo(ds, path.parent, index_name=path.name, copy_images=copy_images)
        return write_yolo(ds, path, copy_images=copy_images)
    return write_voc(ds, path, split=split, copy_images=copy_images)


def convert(
    src: Path | str,
    dst: Path | str,
    src_fmt: str = "auto",
    dst_fmt: str = "coco",
    *,
    class_names: Sequence[str] | None = None,
    copy_images: bool = True,
) -> Path:
    """Read ``src`` and write it to ``dst`` in ``dst_fmt``; returns what ``write_dataset`` returns."""
    _check_format(dst_fmt)
    return write_dataset(read_dataset(src, src_fmt, class_names), dst, dst_fmt, copy_images=copy_images)
