"""YOLO / darknet txt datasets: a ``data.txt`` index, one label file per image, ``classes.txt``.

Index lines are either ``images/x.jpg`` (labels at ``labels/x.txt``: the last ``images``
component becomes ``labels``) or ``images/x.jpg labels/x.txt``. Label lines are
``class cx cy w h`` normalised to [0, 1].
"""

from __future__ import annotations

import math
import re
import struct
from pathlib import Path, PurePath

import numpy as np

from mlkit.data.atomic import atomic_copy, atomic_write_text, unique_names
from mlkit.data.dataset import Dataset, ImageRecord, read_rgb
from mlkit.errors import DataFormatError, MlkitError

CLASS_FILES = ("classes.txt", "obj.names")
_EPS = 1e-6
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


# --------------------------------------------------------------------------- image size
def image_size(path: Path | str) -> tuple[int, int]:
    """``(width, height)`` of an image as ``read_rgb`` returns it (EXIF rotation applied).

    JPEG and PNG sizes come from the header (fast); anything else, or a header we are
    not sure about, is decoded with OpenCV so the answer always matches ``read_rgb``.
    """
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(8)
        f.seek(0)
        size = None
        if head.startswith(b"\xff\xd8"):
            size = _jpeg_size(f)
        elif head == b"\x89PNG\r\n\x1a\n":
            size = _png_size(f)
    if size is None:
        h, w = read_rgb(path).shape[:2]
        return int(w), int(h)
    return size


def _jpeg_size(f) -> tuple[int, int] | None:
    f.read(2)
    orientation = 1
    while True:
        byte = f.read(1)
        while byte == b"\xff":  # fill bytes before a marker
            byte = f.read(1)
        if not byte:
            return None
        marker = byte[0]
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            return None
        raw = f.read(2)
        if len(raw) != 2:
            return None
        length = struct.unpack(">H", raw)[0] - 2
        if marker in _JPEG_SOF:
            seg = f.read(5)
            if len(seg) != 5:
                return None
            h, w = struct.unpack(">xHH", seg)
            # OpenCV applies the EXIF orientation: 5..8 are the 90-degree rotations.
            return (h, w) if orientation in (5, 6, 7, 8) else (w, h)
        seg = f.read(length)
        if marker == 0xE1 and seg.startswith(b"Exif\0\0"):
            found = _exif_orientation(seg[6:])
            if found is None:
                return None
            orientation = found


def _exif_orientation(tiff: bytes) -> int | None:
    """The EXIF orientation tag (1 when absent); None when the block is unreadable."""
    try:
        order = {b"II": "<", b"MM": ">"}[tiff[:2]]
        (ifd,) = struct.unpack(order + "I", tiff[4:8])
        (count,) = struct.unpack(order + "H", tiff[ifd : ifd + 2])
        for i in range(count):
            entry = tiff[ifd + 2 + 12 * i : ifd + 14 + 12 * i]
            tag, _type, _n, value = struct.unpack(order + "HHIH", entry[:10])
            if tag == 0x0112:
                return int(value)
    except (KeyError, struct.error):
        return None
    return 1


def _png_size(f) -> tuple[int, int] | None:
    f.read(8)
    length_type = f.read(8)
    if length_type[4:] != b"IHDR":
        return None
    w, h = struct.unpack(">II", f.read(8))
    f.read(9)  # rest of IHDR + CRC
    while True:  # an eXIf chunk may rotate the image in OpenCV: let OpenCV decide then
        chunk = f.read(8)
        if len(chunk) != 8:
            return None
        n, kind = struct.unpack(">I4s", chunk)
        if kind == b"eXIf":
            return None
        if kind in (b"IDAT", b"IEND"):
            return int(w), int(h)
        f.seek(n + 4, 1)


# --------------------------------------------------------------------------- reading
def read_text(path: Path) -> str:
    """A UTF-8 text file (a BOM from Windows editors is dropped); binary junk is a DataFormatError."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise DataFormatError(path, "not UTF-8 text; save the file as UTF-8", line) from None


def find_class_file(folder: Path) -> Path | None:
    for name in CLASS_FILES:
        if (folder / name).is_file():
            return folder / name
    return None


def read_class_names(path: Path) -> tuple[str, ...]:
    lines = read_text(path).splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    names: list[str] = []
    for lineno, line in enumerate(lines, 1):
        name = line.strip()
        if not name:
            raise DataFormatError(path, "empty class name; write one class name per line", lineno)
        if name in names:
            raise DataFormatError(path, f"class {name!r} is listed twice; class names must be unique", lineno)
        names.append(name)
    if not names:
        raise DataFormatError(path, "no class names; write one class name per line")
    return tuple(names)


def label_path_for(image_entry: str) -> PurePath:
    """Darknet rule: last ``images`` path component -> ``labels``, suffix -> ``.txt``."""
    p = PurePath(image_entry)
    parts = list(p.parts)
    for i in range(len(parts) - 2, -1, -1):  # folders only, never the file name itself
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return PurePath(*parts).with_suffix(".txt")


def read_yolo(index_path: Path | str, class_names: tuple[str, ...] | None = None) -> Dataset:
    """Read a darknet dataset from its index (``data.txt``) or the folder holding it.

    Class names come from ``classes.txt`` / ``obj.names`` next to the index, else ``class_names``.
    """
    index = Path(index_path).absolute()
    if index.is_dir():
        index = index / "data.txt"
    if not index.is_file():
        raise MlkitError(f"YOLO index not found: {index}; expected a data.txt listing one image per line")
    base = index.parent
    class_file = find_class_file(base)
    if class_file is not None:
        names = read_class_names(class_file)
    elif class_names is not None:
        names = tuple(class_names)
    else:
        raise DataFormatError(
            index, f"no {' or '.join(CLASS_FILES)} next to the index; add one with one class name per line"
        )

    records = []
    for lineno, raw in enumerate(read_text(index).splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        image, label, explicit = _parse_index_line(index, base, line, lineno)
        try:
            w, h = image_size(image)
        except MlkitError as exc:  # undecodable image: point at the index line that lists it
            raise DataFormatError(index, str(exc), lineno) from None
        if label.is_file():
            boxes, labels = read_label_file(label, w, h, len(names))
        elif explicit:
            raise DataFormatError(
                index, f"label file not found: {label}; fix the path or drop it to use the default", lineno
            )
        else:  # standard YOLO: an image without a label file has no objects
            boxes, labels = np.zeros((0, 4), np.float32), np.zeros((0,), np.int64)
        records.append(ImageRecord(image, w, h, boxes, labels))
    name = base.name if index.stem == "data" else index.stem
    return Dataset(records, names, name)


def _parse_index_line(index: Path, base: Path, line: str, lineno: int) -> tuple[Path, Path, bool]:
    """``(image, label, explicit)`` for one index line; a missing image is an error."""
    parts = line.rsplit(None, 1)
    # The whole line wins when it names a file: image paths may contain spaces.
    if len(parts) == 2 and parts[1].lower().endswith(".txt") and not (base / line).is_file():
        image_entry, label, explicit = parts[0].strip(), base / parts[1], True
    else:
        image_entry, label, explicit = line, base / label_path_for(line), False
    image = base / image_entry
    if not image.is_file():
        raise DataFormatError(
            index,
            f"image not found: {image_entry!r} (resolved to {image}); fix the path or remove the line. "
            "Lines are 'images/x.jpg' or 'images/x.jpg labels/x.txt', relative to this file",
            lineno,
        )
    return image, label, explicit


def read_label_file(path: Path, width: int, height: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Parse one YOLO label file into absolute ``[xmin, ymin, xmax, ymax]`` boxes and class ids."""
    boxes: list[list[float]] = []
    labels: list[int] = []
    for lineno, raw in enumerate(read_text(path).splitlines(), 1):
        fields = raw.split()
        if not fields:
            continue

        def fail(msg: str, lineno: int = lineno) -> DataFormatError:
            return DataFormatError(path, msg, lineno)

        if len(fields) != 5:
            raise fail(f"expected 5 fields 'class cx cy w h', got {len(fields)}")
        if not re.fullmatch(r"[+-]?\d+", fields[0]):
            raise fail(f"class id {fields[0]!r} is not an integer; use 0..{num_classes - 1}")
        cls = int(fields[0])
        if not 0 <= cls < num_classes:
            raise fail(f"class id {cls} is out of range: the classes file has {num_classes} names "
                       f"(0..{num_classes - 1})")
        try:
            cx, cy, bw, bh = (float(v) for v in fields[1:])
        except ValueError:
            raise fail(f"non-numeric value in {' '.join(fields[1:])!r}; cx cy w h must be numbers") from None
        values = (cx, cy, bw, bh)
        if not all(math.isfinite(v) and -_EPS <= v <= 1 + _EPS for v in values):
            raise fail(f"coordinates {' '.join(fields[1:])} must be normalised to [0, 1]; "
                       "divide pixel values by the image width/height")
        if bw <= 0 or bh <= 0:
            raise fail(f"box width and height must be > 0, got w={bw:g} h={bh:g}")
        x1, x2 = max(0.0, (cx - bw / 2) * width), min(float(width), (cx + bw / 2) * width)
        y1, y2 = max(0.0, (cy - bh / 2) * height), min(float(height), (cy + bh / 2) * height)
        if x2 <= x1 or y2 <= y1:
            raise fail("box has zero area after clipping to the image; fix or remove it")
        boxes.append([x1, y1, x2, y2])
        labels.append(cls)
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64)


# --------------------------------------------------------------------------- writing
def label_text(rec: ImageRecord) -> str:
    """YOLO label lines for one image (boxes clipped to the image, 6 decimals)."""
    lines = []
    for box, cls in zip(rec.boxes.astype(np.float64), rec.labels, strict=True):
        x1, x2 = np.clip(box[[0, 2]], 0, rec.width)
        y1, y2 = np.clip(box[[1, 3]], 0, rec.height)
        if x2 <= x1 or y2 <= y1:
            raise MlkitError(f"{rec.path}: box {box.tolist()} has zero area inside the image; "
                             "fix or remove it")
        cx, cy = (x1 + x2) / 2 / rec.width, (y1 + y2) / 2 / rec.height
        w, h = (x2 - x1) / rec.width, (y2 - y1) / rec.height
        lines.append(f"{int(cls)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
    return "".join(lines)


def write_yolo(
    ds: Dataset, out_dir: Path | str, index_name: str = "data.txt", copy_images: bool = True
) -> Path:
    """Write ``ds`` as a darknet dataset in ``out_dir``; returns the index path.

    With ``copy_images`` the images go to ``images/`` and the index uses the short line form;
    otherwise it lists the original absolute image paths with an explicit label path.
    """
    out = Path(out_dir).absolute()
    sources = [r.path for r in ds]
    # Without copying, the label path is the second field of an index line: keep it space-free.
    names = unique_names(sources if copy_images else [re.sub(r"\s", "_", p.name) for p in sources])
    index_lines = []
    for rec, name in zip(ds, names, strict=True):
        label_rel = f"labels/{Path(name).stem}.txt"
        if copy_images:
            atomic_copy(rec.path, out / "images" / name)
            index_lines.append(f"images/{name}")
        else:
            index_lines.append(f"{rec.path.absolute()} {label_rel}")
        atomic_write_text(out / label_rel, label_text(rec))
    atomic_write_text(out / "classes.txt", "".join(f"{n}\n" for n in ds.class_names))
    return atomic_write_text(out / index_name, "".join(f"{line}\n" for line in index_lines))
