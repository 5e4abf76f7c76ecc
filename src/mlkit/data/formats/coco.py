"""COCO detection JSON: ``images``, ``annotations`` (bbox ``[x, y, w, h]``) and ``categories``.

Category ids in the file are 1-based and need not be contiguous; class ids in the
``Dataset`` follow the sorted category ids. Record meta round-trips under an ``mlkit`` key
in each image entry (pycocotools ignores unknown keys).
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from mlkit.data.atomic import atomic_copy, atomic_write_text, unique_names
from mlkit.data.dataset import Dataset, ImageRecord
from mlkit.data.formats.yolo import image_size, read_text
from mlkit.errors import DataFormatError, MlkitError


class _Doc:
    """The parsed file plus a lazy way to find the line of an entry, only needed for errors."""

    def __init__(self, path: Path, text: str) -> None:
        self.path, self.text = path, text

    def error(self, section: str, index: int | None, message: str) -> DataFormatError:
        line = _line_of(self.text, section, index) if index is not None else None
        return DataFormatError(self.path, message, line)


def _line_of(text: str, section: str, index: int) -> int | None:
    """1-based line where element ``index`` of the top-level array ``section`` starts.

    ``json`` keeps no positions, so walk the top level with ``raw_decode`` (C speed).
    """
    decoder, ws = json.JSONDecoder(), re.compile(r"\s*")

    def skip(i: int) -> int:
        return ws.match(text, i).end()

    try:
        i = skip(0)
        if text[i] != "{":
            return None
        i = skip(i + 1)
        while text[i] != "}":
            key, i = decoder.raw_decode(text, i)
            i = skip(skip(i) + 1)  # past ':'
            if key == section and text[i] == "[":
                i, n = skip(i + 1), 0
                while text[i] != "]":
                    if n == index:
                        return text.count("\n", 0, i) + 1
                    _, i = decoder.raw_decode(text, i)
                    i = skip(i)
                    i = skip(i + 1) if text[i] == "," else i
                    n += 1
                return None
            _, i = decoder.raw_decode(text, i)
            i = skip(i)
            i = skip(i + 1) if text[i] == "," else i
    except (ValueError, IndexError):
        return None
    return None


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _known(key: Any, table: dict) -> bool:
    return isinstance(key, int | str) and key in table  # a list as an id would not even hash


# --------------------------------------------------------------------------- reading
def read_coco(json_path: Path | str, image_root: Path | str | None = None) -> Dataset:
    """Read a COCO detection file; image ``file_name`` is relative to ``image_root`` (default: its folder)."""
    path = Path(json_path).absolute()
    if not path.is_file():
        raise MlkitError(f"COCO annotation file not found: {path}")
    root = Path(image_root).absolute() if image_root is not None else path.parent
    text = read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        msg = f"invalid JSON: {exc.msg} (column {exc.colno}); fix the syntax"
        raise DataFormatError(path, msg, exc.lineno) from None
    doc = _Doc(path, text)
    if not isinstance(data, dict):
        raise DataFormatError(path, "expected a JSON object with 'images', 'annotations', 'categories'", 1)
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise DataFormatError(path, f"missing or non-list top-level key {key!r}; a COCO file needs "
                                  "'images', 'annotations' and 'categories' lists")
    annotations = data.get("annotations", [])  # absent in test-split files: images without boxes
    if not isinstance(annotations, list):
        raise DataFormatError(path, "'annotations' must be a list")

    cat_index, class_names = _read_categories(doc, data["categories"])
    images, order = _read_images(doc, data["images"], root)
    boxes: dict[Any, list[list[float]]] = {k: [] for k in order}
    labels: dict[Any, list[int]] = {k: [] for k in order}
    for i, ann in enumerate(annotations):
        got = _read_annotation(doc, i, ann, images, cat_index)
        if got is not None:
            boxes[ann["image_id"]].append(got[0])
            labels[ann["image_id"]].append(got[1])

    records = []
    for image_id in order:
        img = images[image_id]
        records.append(ImageRecord(img["path"], img["width"], img["height"],
                                   np.asarray(boxes[image_id], np.float32).reshape(-1, 4),
                                   np.asarray(labels[image_id], np.int64), img["meta"]))
    return Dataset(records, class_names, path.stem)


def _read_categories(doc: _Doc, cats: list) -> tuple[dict[Any, int], tuple[str, ...]]:
    found: dict[int, str] = {}
    for i, cat in enumerate(cats):
        if not (isinstance(cat, dict) and isinstance(cat.get("id"), int)
                and isinstance(cat.get("name"), str)):
            raise doc.error("categories", i, f"category #{i} needs an integer 'id' and a string 'name'")
        if cat["id"] in found:
            raise doc.error("categories", i, f"category id {cat['id']} is used twice; ids must be unique")
        found[cat["id"]] = cat["name"]
    if not found:
        raise DataFormatError(doc.path, "'categories' is empty; list at least one {'id': 1, 'name': ...}")
    ids = sorted(found)
    return {cid: k for k, cid in enumerate(ids)}, tuple(found[cid] for cid in ids)


def _read_images(doc: _Doc, entries: list, root: Path) -> tuple[dict[Any, dict], list]:
    images: dict[Any, dict] = {}
    for i, img in enumerate(entries):
        if not (isinstance(img, dict) and isinstance(img.get("id"), int | str)
                and isinstance(img.get("file_name"), str)):
            raise doc.error("images", i, f"image #{i} needs an integer 'id' and a string 'file_name'")
        image_id = img["id"]
        if image_id in images:
            raise doc.error("images", i, f"image id {image_id} is used twice; ids must be unique")
        file = root / img["file_name"]
        if not file.is_file():
            raise doc.error("images", i, f"image id {image_id}: file not found: {file}; file_name is "
                            f"relative to {root} (pass image_root= if the images live elsewhere)")
        w, h = img.get("width"), img.get("height")
        real = image_size(file)  # the header only
        if w is None or h is None:  # optional in some exports
            w, h = real
        if not (isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0):
            raise doc.error("images", i, f"image id {image_id}: width/height must be positive integers, "
                            f"got {w!r}x{h!r}")
        if (w, h) != real:  # boxes would be rescaled to the wrong size on conversion
            raise doc.error("images", i, f"image id {image_id}: width/height say {w}x{h}, but {file.name} is "
                            f"{real[0]}x{real[1]}; fix them (or drop both to read them from the file)")
        meta = img.get("mlkit")
        meta = meta if isinstance(meta, dict) else {}
        images[image_id] = {"path": file, "width": w, "height": h, "meta": meta}
    return images, list(images)


def _read_annotation(
    doc: _Doc, i: int, ann: Any, images: dict[Any, dict], cat_index: dict[Any, int]
) -> tuple[list[float], int] | None:
    """``(xyxy box, class id)`` of one annotation, or None for a crowd region (not an object)."""
    if not isinstance(ann, dict):
        raise doc.error("annotations", i, f"annotation #{i} must be an object")
    who = f"annotation id {ann['id']}" if "id" in ann else f"annotation #{i} (no 'id')"
    for key in ("image_id", "category_id", "bbox"):
        if key not in ann:
            raise doc.error("annotations", i, f"{who} is missing {key!r}; annotations need "
                            "'id', 'image_id', 'category_id' and 'bbox'")
    if not _known(ann["image_id"], images):
        raise doc.error("annotations", i, f"{who} refers to unknown image_id {ann['image_id']!r}; "
                        "add the image to 'images' or remove the annotation")
    if not _known(ann["category_id"], cat_index):
        raise doc.error("annotations", i, f"{who} refers to unknown category_id {ann['category_id']!r}; "
                        f"known ids: {sorted(cat_index)}")
    bbox = ann["bbox"]
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
        raise doc.error("annotations", i, f"{who}: bbox must be 4 numbers [x, y, width, height], "
                        f"got {bbox!r}")
    if ann.get("iscrowd", 0):
        return None
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        raise doc.error("annotations", i, f"{who}: bbox width and height must be > 0, got {w:g}x{h:g}")
    img = images[ann["image_id"]]
    x1, y1 = max(0.0, x), max(0.0, y)
    x2, y2 = min(float(img["width"]), x + w), min(float(img["height"]), y + h)
    if x2 <= x1 or y2 <= y1:
        raise doc.error("annotations", i, f"{who}: bbox {bbox} has zero area inside the "
                        f"{img['width']}x{img['height']} image; fix or remove it")
    return [x1, y1, x2, y2], cat_index[ann["category_id"]]


# --------------------------------------------------------------------------- writing
def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic | np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise MlkitError(f"record meta holds a {type(obj).__name__}, which JSON cannot store; "
                     "keep meta to numbers, strings, lists and dicts")


def write_coco(
    ds: Dataset, json_path: Path | str, image_root: Path | str | None = None, copy_images: bool = True
) -> Path:
    """Write ``ds`` as COCO JSON; with ``copy_images`` images go to ``<image_root>/images/``."""
    path = Path(json_path).absolute()
    root = Path(image_root).absolute() if image_root is not None else path.parent
    names = unique_names([r.path for r in ds])
    images, annotations = [], []
    for image_id, (rec, name) in enumerate(zip(ds, names, strict=True), 1):
        if copy_images:
            atomic_copy(rec.path, root / "images" / name)
            file_name = f"images/{name}"
        else:
            file_name = Path(os.path.relpath(rec.path.absolute(), root)).as_posix()
        entry: dict[str, Any] = {"id": image_id, "file_name": file_name,
                                 "width": int(rec.width), "height": int(rec.height)}
        if rec.meta:
            entry["mlkit"] = rec.meta
        images.append(entry)
        for box, cls in zip(rec.boxes.tolist(), rec.labels.tolist(), strict=True):
            x, y, w, h = box[0], box[1], box[2] - box[0], box[3] - box[1]
            bbox = [round(v, 4) for v in (x, y, w, h)]
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cls + 1,
                                "bbox": bbox, "area": round(w * h, 4), "iscrowd": 0})
    doc = {
        "info": {"description": ds.name, "version": "1.0", "contributor": "mlkit"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": k + 1, "name": n, "supercategory": "object"}
                       for k, n in enumerate(ds.class_names)],
    }
    return atomic_write_text(path, json.dumps(doc, indent=1, default=_json_default) + "\n")
