"""Relabelling: YOLO / VOC / COCO labels for hard examples into the index (trainProb split), auto-labels
marked pseudo and later replaced by reviewed labels, and a round's data (new + replay, common eval)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from il_helpers import CLASSES

from mlkit.data.dataset import Dataset, ImageRecord
from mlkit.errors import MlkitError
from mlkit.incremental.index import DatasetIndex
from mlkit.incremental.labels import auto_label, import_labels


@pytest.fixture()
def store(tmp_path):
    """A hard-example store as the deploy worker writes it: clean frame JPEGs + sidecars."""
    from mlkit.joint.outputs import write_jpeg

    s = tmp_path / "store"
    s.mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):
        name = f"frame_{i:06d}"
        write_jpeg(s / f"{name}.jpg", rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
        (s / f"{name}.json").write_text(json.dumps({"image": f"{name}.jpg", "frame": i, "width": 64, "height": 48,
                                                    "class_names": list(CLASSES), "edge": [], "cloud": None}))
    (s / "frame_000099.json").write_text(json.dumps({"image": "frame_000099.jpg", "width": 64, "height": 48}))
    return s


def _truth(store, n=6) -> Dataset:
    recs = [ImageRecord(store / f"frame_{i:06d}.jpg", 64, 48, [[2, 3, 20 + i, 30]], [i % 4]) for i in range(n)]
    return Dataset(recs, CLASSES, "truth")


def test_import_yolo_with_reordered_classes(tmp_path, store):
    labels = tmp_path / "yolo"
    labels.mkdir()
    # the labelling tool numbers classes in its own order
    (labels / "classes.txt").write_text("helmet-off\nhelmet-on\nhelmet\nperson\n")
    for rec in _truth(store):
        x0, y0, x1, y1 = rec.boxes[0]
        tool_id = 3 - int(rec.labels[0])
        (labels / f"{rec.path.stem}.txt").write_text(
            f"{tool_id} {(x0 + x1) / 128} {(y0 + y1) / 96} {(x1 - x0) / 64} {(y1 - y0) / 48}\n")
    report = import_labels(store, labels, "yolo", tmp_path / "index", 0.5, class_names=CLASSES)
    assert (report.added, report.replaced, report.skipped) == (6, 0, 4)
    index = DatasetIndex(tmp_path / "index")
    entries = {e["id"]: e for e in index.entries()}
    assert set(entries) == {f"frame_{i:06d}" for i in range(6)}
    assert entries["frame_000002"]["labels"] == [2] and entries["frame_000002"]["boxes"] == [[2, 3, 22, 30]]
    assert report.train + report.eval == 6 and {e["split"] for e in entries.values()} == {"train", "eval"}
    assert all(not e["pseudo"] and e["source"] == "import:yolo" for e in entries.values())
    assert all(index.image_path(e).is_file() for e in entries.values())  # copied into the index
    assert len(index.new_since(0)) == 6 and index.max_seq() == 6
    again = import_labels(store, labels, "yolo", tmp_path / "index", 0.5)
    assert (again.added, again.replaced) == (0, 0)  # the same labels again: nothing new
    assert index.max_seq() == 6
    assert {e["id"]: e["split"] for e in index.entries()} == {k: v["split"] for k, v in entries.items()}


@pytest.mark.parametrize("fmt", ["voc", "coco"])
def test_import_voc_and_coco(tmp_path, store, fmt):
    from mlkit.data.formats import write_dataset

    out = tmp_path / fmt
    write_dataset(_truth(store, 4), out if fmt == "voc" else out / "annotations.json", fmt, copy_images=False)
    report = import_labels(store, out, fmt, tmp_path / "index", 1.0, class_names=CLASSES)
    assert (report.added, report.train, report.eval) == (4, 4, 0)
    entries = {e["id"]: e for e in DatasetIndex(tmp_path / "index").entries()}
    assert entries["frame_000003"]["labels"] == [3]
    assert entries["frame_000003"]["boxes"][0][2] == pytest.approx(23, abs=1)


def test_import_errors_are_clear(tmp_path, store):
    labels = tmp_path / "other"
    labels.mkdir()
    (labels / "elsewhere.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(MlkitError, match="matches a frame of the store"):
        import_labels(store, labels, "yolo", tmp_path / "index", 0.8, class_names=CLASSES)
    with pytest.raises(MlkitError, match="unknown label format"):
        import_labels(store, labels, "csv", tmp_path / "index", 0.8, class_names=CLASSES)


def test_auto_label_creates_a_new_index_with_the_models_classes(tmp_path, store, tiny_model):
    auto_label(store, tiny_model / "tflite" / "fp32", tmp_path / "new", 0.5, threshold=0.02)
    assert DatasetIndex(tmp_path / "new").class_names == tuple(CLASSES)


def test_voc_import_errors_name_the_users_files(tmp_path, store):
    labels = tmp_path / "voc" / "Annotations"
    labels.mkdir(parents=True)
    (labels / "frame_000001.xml").write_text("<annotation><filename>frame_000001.jpg</filename><object>"
                                             "<name>helmet</name><bndbox><xmin>x</xmin></bndbox></object>"
                                             "</annotation>")
    with pytest.raises(MlkitError) as err:
        import_labels(store, tmp_path / "voc", "voc", tmp_path / "index", 0.8, class_names=CLASSES)
    assert str(labels) in str(err.value) and "mlkit-voc-" not in str(err.value), str(err.value)


def test_auto_label_marks_pseudo_and_review_replaces(tmp_path, store, tiny_model):
    # The untrained tiny model scores every box around 0.07: a low threshold makes it label something.
    report = auto_label(store, tiny_model / "tflite" / "fp32", tmp_path / "index", 0.5, threshold=0.02,
                        class_names=CLASSES)
    assert report.added == 10 and report.skipped == 0
    index = DatasetIndex(tmp_path / "index")
    entries = {e["id"]: e for e in index.entries()}
    e = entries["frame_000001"]
    assert e["pseudo"] and e["source"] == "auto:fp32" and len(e["scores"]) == len(e["labels"]) > 0
    assert min(e["scores"]) >= 0.02
    high = auto_label(store, tiny_model / "tflite" / "fp32", tmp_path / "i2", 0.5, threshold=0.9,
                      class_names=CLASSES)
    assert high.added == 0 and high.skipped == 10  # nothing confident: no empty pseudo-labels
    # a person reviews frame 1 and imports it: the pseudo label is replaced, the split kept
    labels = tmp_path / "reviewed"
    labels.mkdir()
    (labels / "frame_000001.txt").write_text("1 0.5 0.5 0.25 0.25\n")
    rep = import_labels(store, labels, "yolo", tmp_path / "index", 0.5)
    assert rep.replaced == 1
    after = {x["id"]: x for x in index.entries()}
    assert not after["frame_000001"]["pseudo"] and after["frame_000001"]["split"] == e["split"]
    assert after["frame_000001"]["seq"] > e["seq"]
    again = auto_label(store, tiny_model / "tflite" / "fp32", tmp_path / "index", 0.5, threshold=0.02)
    assert "frame_000001" not in {x["id"] for x in index.entries() if x["pseudo"]}
    assert (again.added, again.replaced) == (0, 0)  # same model, same frames: the pseudo-labels are unchanged


def test_round_data_is_new_plus_replay_and_the_common_eval(tmp_path, store):
    from mlkit.data.layout import load_split
    from mlkit.incremental.index import sample
    from mlkit.incremental.rounds import prepare_round_data

    index = DatasetIndex(tmp_path / "index", CLASSES).create()
    img = str(store / "frame_000000.jpg")
    index.add([sample(f"a{i}", img, 64, 48, [[1, 1, 9, 9]], [0], "train", "initial") for i in range(8)]
              + [sample("a-eval", img, 64, 48, [[1, 1, 9, 9]], [0], "eval", "initial")])
    index.add([sample(f"n{i}", img, 64, 48, [[1, 1, 9, 9]], [1], "train" if i < 3 else "eval", "import:yolo")
               for i in range(4)])
    assert len(index.new_since(0)) == 4  # initial samples are never new
    counts = prepare_round_data(tmp_path / "index", 0, index.max_seq(), tmp_path / "round", replay_ratio=2.0)
    assert counts == {"new": 3, "replay": 6, "eval": 2, "cut_from": 0, "cut_to": 13}
    train, ev = load_split(tmp_path / "round", "train"), load_split(tmp_path / "round", "eval")
    assert len(train) == 9 and len(ev) == 2 and sum(int(r.labels[0]) == 1 for r in train) == 3
    with pytest.raises(MlkitError, match="no new train samples"):
        prepare_round_data(tmp_path / "index", 13, 13, tmp_path / "round2")
