"""download component: python_func on local folders laid out as a plain COCO set and as a seed bucket."""

import json

import numpy as np
import pytest
from kfp import dsl

from mlkit.components.download.component import download
from mlkit.data.dataset import Dataset, ImageRecord, write_rgb
from mlkit.data.formats import write_dataset
from mlkit.data.layout import load_split


def _coco_folder(root, n=10):
    """A single COCO set: annotations.json + images/, n images with one person each."""
    recs = []
    for i in range(n):
        img = root.parent / f"src-images-{root.name}" / f"{i}.jpg"
        write_rgb(img, np.full((48, 64, 3), 40 + i, np.uint8))
        recs.append(ImageRecord(img, 64, 48, [[4, 4, 30, 40]], [0]))
    write_dataset(Dataset(recs, ("person", "helmet")), root, "coco")
    return root


def test_plain_coco_folder_is_split(tmp_path):
    src = _coco_folder(tmp_path / "coco")
    out = dsl.Dataset(uri=str(tmp_path / "dataset"))
    uri = download.python_func(uri=str(src), dataset=out, val_fraction=0.2, test_fraction=0.2, seed=3)

    assert uri == out.uri
    manifest = json.loads((tmp_path / "dataset" / "dataset.json").read_text())
    assert manifest["counts"] == {"train": 6, "val": 2, "test": 2}
    assert manifest["class_names"] == ["person", "helmet"]
    train = load_split(out.path, "train")
    assert all(r.path.is_file() and str(r.path).startswith(out.path) for r in train)  # images copied in
    assert out.metadata["counts"]["test"] == 2


def test_seed_bucket_layout_uses_its_datasets_folder(tmp_path):
    bucket = tmp_path / "bucket"
    _coco_folder(bucket / "datasets", n=5)
    (bucket / "cfg").mkdir()
    (bucket / "cfg" / "yolov3.cfg").write_text("[net]\n")
    (bucket / "pretrained weights").mkdir()
    (bucket / "pretrained weights" / "w.weights").write_bytes(b"\0" * 16)
    out = dsl.Dataset(uri=str(tmp_path / "dataset"))
    download.python_func(uri=f"file://{bucket}", dataset=out, test_fraction=0.2, val_fraction=0.0)

    assert sum(len(load_split(out.path, s)) for s in ("train", "test")) == 5
    assert not any(p.suffix in (".cfg", ".weights") for p in (tmp_path / "dataset").rglob("*"))


def test_bad_uris(tmp_path):
    with pytest.raises(ValueError, match="uri is empty"):
        download.python_func(uri=" ", dataset=dsl.Dataset(uri=str(tmp_path / "a")))
    with pytest.raises(ValueError, match="not found"):
        download.python_func(uri=str(tmp_path / "missing"), dataset=dsl.Dataset(uri=str(tmp_path / "b")))
