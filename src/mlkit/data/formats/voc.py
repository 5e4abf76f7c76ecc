"""Pascal VOC: ``Annotations/<stem>.xml``, ``JPEGImages/<file>``, ``ImageSets/Main/<split>.txt``.

VOC pixel indices are 1-based and inclusive: a box over the whole W x H image is
``xmin=1 .. xmax=W``. In a ``Dataset`` that is ``[0, 0, W, H]``, so reading subtracts 1
from xmin/ymin only and writing adds it back (the convention Detectron2 uses).
"""

from __future__ import annotations

import dataclasses
import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlkit.data.atomic import atomic_copy, atomic_write_text, unique_names
from mlkit.data.dataset import Dataset, ImageRecord
from mlkit.data.formats.yolo import image_size, read_text
from mlkit.errors import DataFormatError, MlkitError

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
_COORDS = ("xmin", "ymin", "xmax", "ymax")


@dataclasses.dataclass
class _Parsed:
    image: Path
    width: int
    height: int
    boxes: list[list[float]]
    names: list[str]
    lines: list[int]


def _parse_xml(path: Path) -> tuple[ET.Element, dict[ET.Element, int]]:
    """Parse with expat feeding an ElementTree builder, recording each element's start line.

    ElementTree itself keeps no line numbers, and errors must point at a line.
    """
    import xml.parsers.expat

    builder = ET.TreeBuilder()
    parser = xml.parsers.expat.ParserCreate()
    lines: dict[ET.Element, int] = {}

    def start(tag: str, attrs: dict[str, str]) -> None:
        lines[builder.start(tag, attrs)] = parser.CurrentLineNumber

    parser.StartElementHandler = start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        with open(path, "rb") as f:
            parser.ParseFile(f)
    except xml.parsers.expat.ExpatError as exc:
        raise DataFormatError(path, f"invalid XML: {xml.parsers.expat.ErrorString(exc.code)} "
                              f"(column {exc.offset + 1}); fix the markup", exc.lineno) from None
    return builder.close(), lines


def _text(elem: ET.Element | None, tag: str) -> str | None:
    child = elem.find(tag) if elem is not None else None
    return child.text.strip() if child is not None and child.text and child.text.strip() else None


def _find_image(root: Path, xml: ET.Element, xml_path: Path, lines: dict[ET.Element, int]) -> Path:
    filename, stored = _text(xml, "filename"), _text(xml, "path")
    candidates = [root / "JPEGImages" / filename] if filename else []
    if stored:
        candidates.append(Path(stored))  # written by labelImg, and by write_voc without copying
    candidates += [root / "JPEGImages" / (xml_path.stem + s) for s in _IMAGE_SUFFIXES]
    for c in candidates:
        if c.is_file():
            return c
    tag = xml.find("filename")
    raise DataFormatError(xml_path, f"image not found for <filename>{filename}</filename>; "
                          f"put it in {root / 'JPEGImages'} or fix <filename>/<path>",
                          lines[tag] if tag is not None else lines[xml])


def _parse_file(root: Path, xml_path: Path) -> _Parsed:
    xml, lines = _parse_xml(xml_path)
    if xml.tag != "annotation":
        raise DataFormatError(xml_path, f"the root element is <{xml.tag}>, not <annotation>: this is not a VOC "
                              "annotation; remove it from Annotations/", lines.get(xml, 1))
    image = _find_image(root, xml, xml_path, lines)
    size = xml.find("size")
    try:
        width, height = int(_text(size, "width") or 0), int(_text(size, "height") or 0)
    except ValueError:
        width = height = 0
    if width <= 0 or height <= 0:  # missing or bogus <size>: trust the image itself
        width, height = image_size(image)

    parsed = _Parsed(image, width, height, [], [], [])
    for obj in xml.findall("object"):
        line = lines[obj]
        name = _text(obj, "name")
        if name is None:
            raise DataFormatError(xml_path, "<object> has no <name>; add the class name", line)
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise DataFormatError(xml_path, f"<object> {name!r} has no <bndbox>; add xmin, ymin, xmax, ymax",
                                  line)
        values = []
        for tag in _COORDS:
            raw = _text(bndbox, tag)
            where = lines[bndbox.find(tag)] if bndbox.find(tag) is not None else lines[bndbox]
            if raw is None:
                raise DataFormatError(xml_path, f"<bndbox> of {name!r} is missing <{tag}>; a box needs "
                                      "xmin, ymin, xmax and ymax", where)
            try:
                values.append(float(raw))
            except ValueError:
                msg = f"<{tag}> of {name!r} is {raw!r}, not a number"
                raise DataFormatError(xml_path, msg, where) from None
            if not math.isfinite(values[-1]):
                raise DataFormatError(xml_path, f"<{tag}> of {name!r} is {raw!r}, not a finite number", where)
        xmin, ymin, xmax, ymax = values
        x1, y1, x2, y2 = xmin - 1, ymin - 1, xmax, ymax  # 1-based inclusive -> 0-based exclusive
        if x2 <= x1 or y2 <= y1:
            raise DataFormatError(xml_path, f"box of {name!r} is empty or inverted (xmin={xmin:g} "
                                  f"xmax={xmax:g}, ymin={ymin:g} ymax={ymax:g}); xmax must be >= xmin and "
                                  "ymax >= ymin", lines[bndbox])
        x1, y1 = max(0.0, x1), max(0.0, y1)
        x2, y2 = min(float(width), x2), min(float(height), y2)
        if x2 <= x1 or y2 <= y1:
            raise DataFormatError(xml_path, f"box of {name!r} has zero area inside the {width}x{height} "
                                  "image; fix or remove it", lines[bndbox])
        parsed.boxes.append([x1, y1, x2, y2])
        parsed.names.append(name)
        parsed.lines.append(line)
    return parsed


def _read_split_file(split_file: Path, ann: Path, strict: bool) -> list[Path]:
    files = []
    for lineno, raw in enumerate(read_text(split_file).splitlines(), 1):
        fields = raw.split()
        if not fields or fields[0].startswith("#"):
            continue
        # Main/<split>.txt holds one stem per line; class files add a " 1" / "-1" flag.
        stem = raw.strip() if (ann / f"{raw.strip()}.xml").is_file() else fields[0]
        xml_path = ann / f"{stem}.xml"
        if xml_path.is_file():
            files.append(xml_path)
        elif strict:
            raise DataFormatError(split_file, f"annotation not found: {xml_path}; fix or remove the line",
                                  lineno)
    return files


def _xml_files(root: Path, split: str) -> list[Path]:
    ann, main = root / "Annotations", root / "ImageSets" / "Main"
    if split == "all":
        # Every XML, in split-file order first so that write -> read keeps the record order.
        listed = [f for s in sorted(main.glob("*.txt")) for f in _read_split_file(s, ann, strict=False)]
        return list(dict.fromkeys(listed + sorted(ann.glob("*.xml"))))
    split_file = main / f"{split}.txt"
    if not split_file.is_file():
        found = sorted(p.stem for p in main.glob("*.txt"))
        raise MlkitError(f"VOC split file not found: {split_file}; available splits: {found or 'none'} "
                         "(or use split='all')")
    return _read_split_file(split_file, ann, strict=True)


def read_voc(
    root: Path | str, split: str = "all", class_names: Sequence[str] | None = None
) -> Dataset:
    """Read a VOC folder; ``split='all'`` reads every XML in ``Annotations/``.

    Class ids follow ``class_names`` when given (other names are errors), else the sorted names found.
    """
    root = Path(root).absolute()
    if not (root / "Annotations").is_dir():
        raise MlkitError(f"not a VOC dataset: {root / 'Annotations'} does not exist")
    files = _xml_files(root, split)
    parsed = [_parse_file(root, f) for f in files]
    if class_names is None:
        class_names = sorted({n for p in parsed for n in p.names})
        if not class_names:  # nothing to name the classes after: fail before anything is written
            raise MlkitError(f"the {len(files)} annotations under {root / 'Annotations'} have no <object>, so there "
                             "are no class names; pass class_names= to keep them as images without objects")
    index = {n: k for k, n in enumerate(class_names)}
    records = []
    for xml_path, p in zip(files, parsed, strict=True):
        for name, line in zip(p.names, p.lines, strict=True):
            if name not in index:
                msg = f"unknown class {name!r}; expected one of {list(class_names)} (or pass class_names=)"
                raise DataFormatError(xml_path, msg, line)
        records.append(ImageRecord(p.image, p.width, p.height, np.asarray(p.boxes, np.float32).reshape(-1, 4),
                                   np.asarray([index[n] for n in p.names], np.int64)))
    return Dataset(records, tuple(class_names), root.name if split == "all" else split)


def _num(v: float) -> str:
    return f"{v:.4f}".rstrip("0").rstrip(".")


def _to_xml(rec: ImageRecord, filename: str, class_names: Sequence[str], source: Path | None) -> str:
    ann = ET.Element("annotation")
    ET.SubElement(ann, "folder").text = "JPEGImages"
    ET.SubElement(ann, "filename").text = filename
    if source is not None:
        ET.SubElement(ann, "path").text = str(source)
    ET.SubElement(ET.SubElement(ann, "source"), "database").text = "mlkit"
    size = ET.SubElement(ann, "size")
    for tag, value in (("width", rec.width), ("height", rec.height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(int(value))
    ET.SubElement(ann, "segmented").text = "0"
    for box, cls in zip(rec.boxes.astype(np.float64).tolist(), rec.labels.tolist(), strict=True):
        obj = ET.SubElement(ann, "object")
        for tag, value in (("name", class_names[cls]), ("pose", "Unspecified"), ("truncated", "0"),
                           ("difficult", "0")):
            ET.SubElement(obj, tag).text = value
        bndbox = ET.SubElement(obj, "bndbox")
        for tag, value in zip(_COORDS, (box[0] + 1, box[1] + 1, box[2], box[3]), strict=True):
            ET.SubElement(bndbox, tag).text = _num(value)
    ET.indent(ann)
    return ET.tostring(ann, encoding="unicode") + "\n"


def write_voc(ds: Dataset, root: Path | str, split: str = "train", copy_images: bool = True) -> Path:
    """Write ``ds`` as VOC under ``root`` and list it in ``ImageSets/Main/<split>.txt``; returns ``root``."""
    root = Path(root).absolute()
    if not split or "/" in split or "\\" in split:
        raise MlkitError(f"invalid VOC split name {split!r}: use a plain name such as 'train'")
    stems = []
    for rec, name in zip(ds, unique_names([r.path for r in ds]), strict=True):
        if copy_images:
            atomic_copy(rec.path, root / "JPEGImages" / name)
        xml = _to_xml(rec, name, ds.class_names, None if copy_images else rec.path.absolute())
        atomic_write_text(root / "Annotations" / f"{Path(name).stem}.xml", xml)
        stems.append(Path(name).stem)
    atomic_write_text(root / "ImageSets" / "Main" / f"{split}.txt", "".join(f"{s}\n" for s in stems))
    return root
