"""A camera's footage to training data: ``mlkit data frames`` -> ``mlkit label auto`` with an imported detector ->
``mlkit data merge`` with a dataset of other classes; and the zoom augmentation that goes with real footage."""

from __future__ import annotations

import json

import numpy as np
import pytest
from blocks import PLACES
from click.testing import CliRunner

from mlkit.cli.app import main


@pytest.fixture()
def footage(scene, tmp_path):
    """A 6-frame MJPG video of the blocks and one photo."""
    import cv2

    from mlkit.data.dataset import write_rgb

    video = tmp_path / "site cam.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 64))
    for red, green in PLACES * 2:
        writer.write(scene(64, 64, red, green)[:, :, ::-1])
    writer.release()
    photo = tmp_path / "photo.png"
    write_rgb(photo, scene(64, 64, *PLACES[1]))
    return video, photo


def _base(tmp_path, class_names=("green", "blue", "red")):
    """A labelled dataset whose classes are ordered differently from the labeller's."""
    from mlkit.data.dataset import Dataset, ImageRecord, write_rgb
    from mlkit.data.layout import write_dataset_dir

    splits = {}
    for split, n in (("train", 2), ("val", 1), ("test", 1)):
        recs = []
        for i in range(n):
            path = tmp_path / "base_images" / f"{split}{i}.png"
            write_rgb(path, np.zeros((32, 32, 3), np.uint8))
            recs.append(ImageRecord(path, 32, 32, [[1, 1, 9, 9]], [1 if "blue" in class_names else 0]))
        splits[split] = Dataset(recs, class_names, split)
    write_dataset_dir(tmp_path / "base", splits)
    return tmp_path / "base"


def test_footage_is_pseudo_labelled_and_merged_by_class_name(blocks_yolo, footage, tmp_path):
    from mlkit.data.layout import load_split

    video, photo = footage
    runner = CliRunner()
    res = runner.invoke(main, ["data", "frames", str(video), str(photo), "--every", "2", "--stop", "5",
                               "--out", str(tmp_path / "store")])
    assert res.exit_code == 0, res.output
    sidecars = sorted(p.name for p in (tmp_path / "store").glob("*.json"))
    assert sidecars == ["photo.json", "site-cam_000000.json", "site-cam_000002.json", "site-cam_000004.json"]
    side = json.loads((tmp_path / "store" / "site-cam_000002.json").read_text())
    assert (side["frame"], side["width"], side["height"]) == (2, 64, 64)

    res = runner.invoke(main, ["label", "auto", "--model", str(blocks_yolo), "--store", str(tmp_path / "store"),
                               "--index", str(tmp_path / "index"), "--train-prob", "1"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("4 samples added")

    base = _base(tmp_path)
    res = runner.invoke(main, ["data", "merge", str(base), str(tmp_path / "index"), "--out", str(tmp_path / "mixed"),
                               "--max-train", "1,-"])
    assert res.exit_code == 0, res.output
    train = load_split(tmp_path / "mixed", "train")
    assert train.class_names == ("green", "blue", "red") and len(train) == 1 + 4
    assert [len(load_split(tmp_path / "mixed", s)) for s in ("val", "test")] == [1, 1]
    # frame 2 shows PLACES[2]: the labeller's red (0) and green (1) are the dataset's red (2) and green (0)
    frame2 = next(r for r in train if r.path.stem.startswith("site-cam_000002"))
    boxes = {int(c): b for c, b in zip(frame2.labels, frame2.boxes, strict=True)}
    assert sorted(boxes) == [0, 2]
    np.testing.assert_allclose(boxes[2], PLACES[2][0], atol=1)
    np.testing.assert_allclose(boxes[0], PLACES[2][1], atol=1)


def test_merge_refuses_a_class_the_target_lacks(blocks_yolo, footage, tmp_path):
    from mlkit.data.frames import extract_frames
    from mlkit.incremental.labels import auto_label

    extract_frames([footage[1]], tmp_path / "store", show_progress=False)
    auto_label(tmp_path / "store", blocks_yolo, tmp_path / "index", 1.0)
    base = _base(tmp_path, ("green", "blue"))
    res = CliRunner().invoke(main, ["data", "merge", str(base), str(tmp_path / "index"), "--out", str(tmp_path / "m")])
    assert res.exit_code == 2
    assert "classes ['red'] are not among the target classes ['green', 'blue']" in res.output
    assert "Traceback" not in res.output and not (tmp_path / "m").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--start", "5", "--stop", "5"], "stop (5) must be after start (5)"),
    (["--max-train", "3"], None),
])
def test_bad_frames_and_merge_options_are_refused(footage, tmp_path, args, message):
    video, _ = footage
    if "--max-train" in args:
        res = CliRunner().invoke(main, ["data", "merge", str(tmp_path), str(tmp_path), "--out", str(tmp_path / "m"),
                                        *args])
        assert res.exit_code == 2 and "give one cap per source (2)" in res.output
        return
    res = CliRunner().invoke(main, ["data", "frames", str(video), "--out", str(tmp_path / "s"), *args])
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output


def test_frames_refuses_a_file_that_is_neither_video_nor_image(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    res = CliRunner().invoke(main, ["data", "frames", str(notes), "--out", str(tmp_path / "s")])
    assert res.exit_code == 2 and "unknown file type '.txt'" in res.output


def test_zoom_moves_boxes_with_the_pixels_and_drops_boxes_cut_off():
    from mlkit.models.train import zoom_in

    x = np.zeros((6, 96, 128, 3), np.float32)
    x[:, 40:60, 50:70] = 255
    y = np.full((6, 4, 5), -1.0, np.float32)
    y[:, 0] = [0, 50, 40, 70, 60]
    y[:, 1] = [1, 0, 0, 4, 4]  # a corner box that most zooms cut off
    zoom_in(x, y, np.random.default_rng(3), zoom=1.0, share=1.0)
    dropped = 0
    for i in range(6):
        ys, xs = np.nonzero(x[i, ..., 0] > 128)
        cls, *box = y[i, 0]
        if cls < 0:
            dropped += 1
            continue
        assert len(xs), "the kept box has its pixels in view"
        np.testing.assert_allclose(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], atol=2.5)
        assert (box[2] - box[0]) > 20  # zoomed in: larger than the 20 px block
    assert dropped < 6
    assert (y[:, 1, 0] < 0).sum() >= 4  # the 4 px corner box leaves view in most crops
    assert (y[:, 2:, 0] < 0).all()  # padding stays padding
