"""COCO / YOLO / VOC readers and writers on real files: round trips, auto-detection, errors with lines."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from mlkit.data.atomic import atomic_path, atomic_write_text, unique_names
from mlkit.data.dataset import HELMET_CLASSES, Dataset, ImageRecord, read_rgb, write_rgb
from mlkit.data.formats import FORMATS, convert, detect_format, read_dataset, write_dataset
from mlkit.data.formats.coco import read_coco, write_coco
from mlkit.data.formats.voc import read_voc, write_voc
from mlkit.data.formats.yolo import image_size, read_yolo, write_yolo
from mlkit.errors import DataFormatError, MlkitError

ATOL = 0.01  # YOLO stores 6 decimals of a normalised coordinate: ~1e-4 px on 64 px images


def _image(path: Path, w: int = 64, h: int = 48, seed: int = 0) -> Path:
    write_rgb(path, np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))
    return path


@pytest.fixture
def toy(tmp_path: Path) -> Dataset:
    a = _image(tmp_path / "src" / "a.jpg")
    b = _image(tmp_path / "src" / "b.png", seed=1)
    a2 = _image(tmp_path / "src2" / "a.jpg", 40, 30, seed=2)  # same file name as the first image
    return Dataset(
        [
            ImageRecord(a, 64, 48, [[1.5, 2.25, 30.75, 40.5], [0, 0, 64, 48]], [0, 3], {"site": "a", "n": 1}),
            ImageRecord(b, 64, 48, [[10, 5, 20, 15.125]], [1]),
            ImageRecord(a2, 40, 30),  # no boxes
        ],
        HELMET_CLASSES,
        "toy",
    )


def assert_same(got: Dataset, want: Dataset, atol: float = ATOL) -> None:
    assert got.class_names == want.class_names
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert (g.width, g.height) == (w.width, w.height)
        np.testing.assert_array_equal(g.labels, w.labels)
        np.testing.assert_allclose(g.boxes, w.boxes, atol=atol)
        assert read_rgb(g.path).shape == read_rgb(w.path).shape


# --------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_each_format(toy: Dataset, tmp_path: Path, fmt: str) -> None:
    written = write_dataset(toy, tmp_path / fmt, fmt)
    back = read_dataset(written, fmt, class_names=HELMET_CLASSES)
    assert_same(back, toy, atol=ATOL if fmt == "yolo" else 1e-3)
    # images were copied into the output folder, the duplicate name got a prefix
    assert all(str(r.path).startswith(str(tmp_path / fmt)) for r in back)
    assert len({r.path.name for r in back}) == 3


def test_round_trip_chain_coco_yolo_voc_coco(toy: Dataset, tmp_path: Path) -> None:
    convert(write_coco(toy, tmp_path / "c1" / "annotations.json"), tmp_path / "y", dst_fmt="yolo")
    convert(tmp_path / "y", tmp_path / "v", dst_fmt="voc")
    convert(tmp_path / "v", tmp_path / "c2", dst_fmt="coco", class_names=HELMET_CLASSES)
    assert_same(read_dataset(tmp_path / "c2"), toy)


def test_round_trip_without_copying_images(toy: Dataset, tmp_path: Path) -> None:
    for fmt in FORMATS:
        written = write_dataset(toy, tmp_path / fmt, fmt, copy_images=False)
        back = read_dataset(written, fmt, class_names=HELMET_CLASSES)
        assert_same(back, toy)
        assert [r.path.resolve() for r in back] == [r.path.resolve() for r in toy]
        assert not (tmp_path / fmt / "images").exists() and not (tmp_path / fmt / "JPEGImages").exists()


def test_coco_meta_round_trips_and_pycocotools_loads(toy: Dataset, tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    path = write_coco(toy, tmp_path / "out" / "annotations.json")
    assert read_coco(path)[0].meta == {"site": "a", "n": 1}
    coco = COCO(str(path))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(HELMET_CLASSES)
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    assert [a["bbox"] for a in anns] == [[1.5, 2.25, 29.25, 38.25], [0, 0, 64, 48]]
    assert [a["category_id"] for a in anns] == [1, 4]
    assert coco.loadImgs([3])[0]["width"] == 40


def test_coco_category_ids_map_in_sorted_order(tmp_path: Path) -> None:
    _image(tmp_path / "a.jpg")
    doc = {"images": [{"id": 10, "file_name": "a.jpg", "width": 64, "height": 48}],
           "categories": [{"id": 7, "name": "helmet"}, {"id": 3, "name": "person"}],
           "annotations": [{"id": 1, "image_id": 10, "category_id": 7, "bbox": [1, 1, 5, 5]},
                           {"id": 2, "image_id": 10, "category_id": 3, "bbox": [2, 2, 5, 5], "iscrowd": 1}]}
    (tmp_path / "x.json").write_text(json.dumps(doc))
    ds = read_coco(tmp_path / "x.json")
    assert ds.class_names == ("person", "helmet")
    assert ds[0].labels.tolist() == [1]  # the crowd region is not an object


def test_voc_class_names_sorted_unless_given(toy: Dataset, tmp_path: Path) -> None:
    write_voc(toy, tmp_path / "voc", split="val")
    assert read_voc(tmp_path / "voc").class_names == ("helmet", "helmet-off", "person")
    ds = read_voc(tmp_path / "voc", split="val", class_names=HELMET_CLASSES)
    assert ds.class_names == HELMET_CLASSES and ds.name == "val"
    with pytest.raises(MlkitError, match="available splits: \\['val'\\]"):
        read_voc(tmp_path / "voc", split="train")


def test_voc_coordinates_are_one_based(tmp_path: Path) -> None:
    rec = ImageRecord(_image(tmp_path / "a.jpg"), 64, 48, [[0, 0, 64, 48]], [0])
    write_voc(Dataset([rec], ("person",)), tmp_path / "voc")
    xml = (tmp_path / "voc" / "Annotations" / "a.xml").read_text()
    assert "<xmin>1</xmin>" in xml and "<xmax>64</xmax>" in xml and "<ymax>48</ymax>" in xml


def test_write_dataset_accepts_index_file_paths(toy: Dataset, tmp_path: Path) -> None:
    index = write_dataset(toy, tmp_path / "y" / "data.txt", "yolo")
    assert index == tmp_path / "y" / "data.txt" and (tmp_path / "y" / "classes.txt").is_file()
    assert write_dataset(toy, tmp_path / "c" / "train.json", "coco").name == "train.json"


# --------------------------------------------------------------------------- YOLO specifics
def _yolo_tree(root: Path) -> Path:
    for name in ("a", "b", "my img", "c"):
        _image(root / "images" / f"{name}.jpg")
    (root / "labels").mkdir()
    (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.25 0.5\n")
    (root / "labels" / "my img.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    (root / "custom").mkdir()
    (root / "custom" / "b.txt").write_text("\n2 0.25 0.25 0.5 0.5\n")
    (root / "obj.names").write_text("person\nhelmet\nhelmet-on\n\n")
    return root / "data.txt"


def test_yolo_index_both_line_forms(tmp_path: Path) -> None:
    index = _yolo_tree(tmp_path)
    index.write_text("# seed index\n\nimages/a.jpg\nimages/b.jpg custom/b.txt\n"
                     f"images/my img.jpg\n{tmp_path / 'images' / 'c.jpg'}\n")
    ds = read_yolo(index)
    assert ds.class_names == ("person", "helmet", "helmet-on")
    assert [r.labels.tolist() for r in ds] == [[0], [2], [1], []]  # c.jpg has no label file: no boxes
    np.testing.assert_allclose(ds[0].boxes, [[24, 12, 40, 36]], atol=1e-4)
    np.testing.assert_allclose(ds[1].boxes, [[0, 0, 32, 24]], atol=1e-4)
    assert (ds[2].width, ds[2].height) == (64, 48)


def test_yolo_missing_classes_file_uses_class_names_or_fails(tmp_path: Path) -> None:
    index = _yolo_tree(tmp_path)
    (tmp_path / "obj.names").unlink()
    index.write_text("images/a.jpg\n")
    assert read_yolo(index, class_names=("p",)).class_names == ("p",)
    with pytest.raises(DataFormatError, match="classes.txt or obj.names"):
        read_yolo(index)


@pytest.mark.parametrize(
    ("line", "expect"),
    [
        ("0 0.5 0.5 0.2", "expected 5 fields 'class cx cy w h', got 4"),
        ("0 0.5 abc 0.2 0.2", "non-numeric"),
        ("0 1.5 0.5 0.2 0.2", "normalised to [0, 1]"),
        ("0 0.5 0.5 0 0.2", "must be > 0"),
        ("0 0.5 0.5 0.2 -0.1", "normalised to [0, 1]"),
        ("1.0 0.5 0.5 0.2 0.2", "not an integer"),
        ("x 0.5 0.5 0.2 0.2", "not an integer"),
        ("3 0.5 0.5 0.2 0.2", "out of range"),
        ("0 1.000001 0.5 0.000001 0.2", "zero area"),
    ],
)
def test_yolo_malformed_label_line(tmp_path: Path, line: str, expect: str) -> None:
    index = _yolo_tree(tmp_path)
    index.write_text("images/a.jpg\n")
    (tmp_path / "labels" / "a.txt").write_text(f"0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2 0.2\n{line}\n")
    with pytest.raises(DataFormatError) as info:
        read_yolo(index)
    msg = str(info.value)
    assert "a.txt:3:" in msg and expect in msg
    assert info.value.line == 3


def test_yolo_index_missing_image(tmp_path: Path) -> None:
    index = _yolo_tree(tmp_path)
    index.write_text("images/a.jpg\nimages/nope.jpg\n")
    with pytest.raises(DataFormatError, match=r"data\.txt:2: image not found: 'images/nope.jpg'"):
        read_yolo(index)
    index.write_text("images/a.jpg\n\nimages/nope.jpg labels/a.txt\n")
    with pytest.raises(DataFormatError, match=r"data\.txt:3: image not found: 'images/nope.jpg'"):
        read_yolo(index)
    index.write_text("images/a.jpg labels/missing.txt\n")
    with pytest.raises(DataFormatError, match=r"data\.txt:1: label file not found"):
        read_yolo(index)


def _jpeg_with_orientation(path: Path, orientation: int) -> None:
    _image(path, 64, 48)
    data = path.read_bytes()
    tiff = b"MM\0*\0\0\0\x08" + struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0)
    app1 = b"Exif\0\0" + tiff + b"\0\0\0\0"
    path.write_bytes(data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:])


def test_image_size_matches_decoder(tmp_path: Path) -> None:
    _jpeg_with_orientation(tmp_path / "rot.jpg", 6)
    _jpeg_with_orientation(tmp_path / "up.jpg", 1)
    for path in (tmp_path / "rot.jpg", tmp_path / "up.jpg", _image(tmp_path / "a.png", 33, 17),
                 _image(tmp_path / "a.bmp", 20, 10)):
        h, w = read_rgb(path).shape[:2]
        assert image_size(path) == (w, h), path.name
    assert image_size(tmp_path / "rot.jpg") == (48, 64)


# --------------------------------------------------------------------------- COCO errors
_COCO_LINES = [
    '{"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],',
    ' "categories": [{"id": 1, "name": "person"}],',
    ' "annotations": [',
    '  {"id": 5, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]},',
    "  ANN",
    " ]}",
]


@pytest.mark.parametrize(
    ("ann", "expect"),
    [
        ('{"id": 7, "image_id": 1, "category_id": 1}', "annotation id 7 is missing 'bbox'"),
        ('{"id": 7, "image_id": 1, "bbox": [1, 2, 3, 4]}', "annotation id 7 is missing 'category_id'"),
        ('{"id": 7, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3]}', "bbox must be 4 numbers"),
        ('{"id": 7, "image_id": 1, "category_id": 1, "bbox": "1 2 3 4"}', "bbox must be 4 numbers"),
        ('{"id": 7, "image_id": 1, "category_id": 9, "bbox": [1, 2, 3, 4]}', "unknown category_id 9"),
        ('{"id": 7, "image_id": 42, "category_id": 1, "bbox": [1, 2, 3, 4]}', "unknown image_id 42"),
        ('{"id": 7, "image_id": 1, "category_id": 1, "bbox": [1, 2, 0, 4]}', "must be > 0"),
        ('{"id": 7, "image_id": 1, "category_id": 1, "bbox": [70, 2, 3, 4]}', "zero area"),
    ],
)
def test_coco_malformed_annotation(tmp_path: Path, ann: str, expect: str) -> None:
    _image(tmp_path / "a.jpg")
    path = tmp_path / "annotations.json"
    path.write_text("\n".join(_COCO_LINES).replace("ANN", ann))
    with pytest.raises(DataFormatError) as info:
        read_coco(path)
    assert "annotations.json:5:" in str(info.value) and expect in str(info.value)


def test_coco_size_that_is_not_the_image_size_is_refused(tmp_path: Path) -> None:
    _image(tmp_path / "a.jpg", w=512, h=384)  # the entry says 64x48: boxes would be rescaled by 8x
    path = tmp_path / "annotations.json"
    ann = '{"id": 7, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]}'
    path.write_text("\n".join(_COCO_LINES).replace("ANN", ann))
    with pytest.raises(DataFormatError, match=r"annotations\.json:1: image id 1: width/height say 64x48, but a.jpg "
                                              r"is 512x384"):
        read_coco(path)


def test_coco_invalid_json_and_missing_image(tmp_path: Path) -> None:
    path = tmp_path / "annotations.json"
    path.write_text('{\n "images": [\n  {"id": 1,},\n ]\n}\n')
    with pytest.raises(DataFormatError, match=r"annotations\.json:3: invalid JSON"):
        read_coco(path)
    path.write_text("\n".join(_COCO_LINES[:3]) + "\n ]}")
    with pytest.raises(DataFormatError, match=r"annotations\.json:1: image id 1: file not found"):
        read_coco(path)
    path.write_text('{"images": []}')
    with pytest.raises(DataFormatError, match="'categories'"):
        read_coco(path)


# --------------------------------------------------------------------------- VOC errors
_VOC = """<annotation>
  <filename>a.jpg</filename>
  <size><width>64</width><height>48</height><depth>3</depth></size>
  <object>
    <name>person</name>
    <bndbox>
      XMIN
      <ymin>2</ymin>
      <xmax>30</xmax>
      <ymax>40</ymax>
    </bndbox>
  </object>
</annotation>
"""


@pytest.mark.parametrize(
    ("xmin", "expect", "line"),
    [
        ("", "missing <xmin>", 6),
        ("<xmin>abc</xmin>", "not a number", 7),
        ("<xmin>50</xmin>", "empty or inverted", 6),
        ("<xmin>3</ymin>", "invalid XML: mismatched tag", 7),
    ],
)
def test_voc_malformed(tmp_path: Path, xmin: str, expect: str, line: int) -> None:
    _image(tmp_path / "JPEGImages" / "a.jpg")
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "a.xml").write_text(_VOC.replace("XMIN", xmin))
    with pytest.raises(DataFormatError) as info:
        read_voc(tmp_path)
    assert f"a.xml:{line}:" in str(info.value) and expect in str(info.value)


def test_voc_unknown_class_and_split_line(tmp_path: Path) -> None:
    _image(tmp_path / "JPEGImages" / "a.jpg")
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "a.xml").write_text(_VOC.replace("XMIN", "<xmin>1</xmin>"))
    with pytest.raises(DataFormatError, match=r"a\.xml:4: unknown class 'person'"):
        read_voc(tmp_path, class_names=("helmet",))
    np.testing.assert_allclose(read_voc(tmp_path)[0].boxes, [[0, 1, 30, 40]])
    atomic_write_text(tmp_path / "ImageSets" / "Main" / "val.txt", "a\nb\n")
    with pytest.raises(DataFormatError, match=r"val\.txt:2: annotation not found"):
        read_voc(tmp_path, split="val")


def test_voc_file_that_is_not_an_annotation_or_has_no_objects(tmp_path: Path) -> None:
    from mlkit.data.formats import convert

    _image(tmp_path / "JPEGImages" / "a.jpg")
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "a.xml").write_text("<notvoc/>")
    with pytest.raises(DataFormatError, match=r"a\.xml:1: the root element is <notvoc>, not <annotation>"):
        convert(tmp_path, tmp_path / "out", "voc", "coco")
    (tmp_path / "Annotations" / "a.xml").write_text("<annotation><filename>a.jpg</filename></annotation>")
    with pytest.raises(MlkitError, match="the 1 annotations under .* have no <object>"):
        convert(tmp_path, tmp_path / "out", "voc", "coco")
    assert not (tmp_path / "out").exists()  # refused before anything was written
    assert len(read_voc(tmp_path, class_names=("helmet",))) == 1  # with class names: an image without objects


# --------------------------------------------------------------------------- detection & helpers
def test_detect_format_and_errors(toy: Dataset, tmp_path: Path) -> None:
    write_coco(toy, tmp_path / "c" / "annotations.json")
    write_yolo(toy, tmp_path / "y")
    write_voc(toy, tmp_path / "v")
    assert detect_format(tmp_path / "c") == detect_format(tmp_path / "c" / "annotations.json") == "coco"
    assert detect_format(tmp_path / "y") == detect_format(tmp_path / "y" / "data.txt") == "yolo"
    assert detect_format(tmp_path / "v") == "voc"
    assert len(read_dataset(tmp_path / "y")) == 3
    (tmp_path / "empty").mkdir()
    with pytest.raises(MlkitError, match="annotations.json.*data.txt.*Annotations/"):
        read_dataset(tmp_path / "empty")
    with pytest.raises(MlkitError, match="unknown dataset format 'csv'; choose one of coco, yolo, voc"):
        read_dataset(tmp_path / "c", fmt="csv")
    with pytest.raises(MlkitError, match="unknown dataset format"):
        convert(tmp_path / "c", tmp_path / "x", dst_fmt="tfrecord")
    with pytest.raises(MlkitError, match="not in class_names"):
        read_dataset(tmp_path / "c", class_names=("person",))


def test_unique_names_and_atomic_write(tmp_path: Path) -> None:
    names = unique_names(["x/a.jpg", "y/a.jpg", "z/a.png", "b.jpg"])
    assert names == ["a.jpg", "1_a.jpg", "2_a.png", "b.jpg"]
    target = atomic_write_text(tmp_path / "f.txt", "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]  # no temp file left behind


def test_bom_accepted_and_binary_label_rejected(tmp_path: Path) -> None:
    index = _yolo_tree(tmp_path)
    index.write_bytes(b"\xef\xbb\xbfimages/a.jpg\n")
    assert read_yolo(index)[0].labels.tolist() == [0]
    (tmp_path / "labels" / "a.txt").write_bytes(b"0 0.5 0.5 0.2 0.2\n\xff\xfe\x00junk\n")
    with pytest.raises(DataFormatError, match=r"a\.txt:2: not UTF-8 text"):
        read_yolo(index)
