"""`mlkit joint evaluate` on a real video without labels: the cloud's own boxes are the reference.

The models are the tiny imported YOLOs of tests/models (each cell scores class c by how much of colour channel c
fills it), imported under different class names, so that which classes the two share, and whether the edge agrees
with the cloud, is known in advance. The video is written here with OpenCV and has no labels file.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from mlkit.cli import main
from mlkit.detections import Detections
from mlkit.errors import MlkitError

# Red and green blocks on the tiny YOLO's 4x4 grid of a 64x64 frame (16 px cells), never in the same cell.
PLACES = [((16, 0, 32, 16), (48, 32, 64, 48)), ((0, 16, 16, 32), (32, 48, 48, 64)), ((32, 32, 48, 48), (0, 0, 16, 16))]
FRAMES = 12
FEW = [{"method": "Random", "param": {"seed": 0}}, {"method": "Keyframe", "param": {}}]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """{"edge": red,green; "same": the cloud with the edge's names; "swapped": green,red (the same boxes, each
    under the other's name); "partial": red,blue; "foreign": cat,dog}: imported model folders."""
    pytest.importorskip("tensorflow")
    from mlkit.models.importing import import_model
    from tests.models.conftest import build_yolo

    root = tmp_path_factory.mktemp("blocks")
    v8, v5 = root / "v8.tflite", root / "v5.tflite"
    v8.write_bytes(build_yolo("yolov8", normalized=True))
    v5.write_bytes(build_yolo("yolov5", normalized=False))
    out = {}
    for name, src, labels in (("edge", v8, "red,green"), ("same", v5, "red,green"), ("swapped", v5, "green,red"),
                              ("partial", v5, "red,blue"), ("foreign", v5, "cat,dog")):
        out[name] = root / name / "1"
        import_model(src, out[name], labels=labels)
    return out


@pytest.fixture(scope="module")
def street(tmp_path_factory):
    """A 12-frame MJPG video of the blocks, without labels."""
    import cv2

    path = tmp_path_factory.mktemp("video") / "street.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 64))
    for i in range(FRAMES):
        red, green = PLACES[i % len(PLACES)]
        img = np.zeros((64, 64, 3), np.uint8)
        img[red[1]:red[3], red[0]:red[2], 0] = 255
        img[green[1]:green[3], green[0]:green[2], 1] = 255
        writer.write(img[:, :, ::-1])
    writer.release()
    return path


def _evaluate(street, models, cloud: str, **kw):
    from mlkit.joint.evaluate import evaluate_on_video

    return evaluate_on_video([street], models["edge"], cloud_model=models[cloud], reuse="none", filters=FEW,
                             show_progress=False, num_threads=1, **kw)


def test_the_cloud_is_the_reference_and_classes_match_by_name(street, models):
    same = _evaluate(street, models, "same")
    assert (same.reference, same.reference_score, same.num_images) == ("cloud", 0.5, FRAMES)
    assert same.cloud_map50 == pytest.approx(1.0) and same.edge_map50 == pytest.approx(1.0)
    # The same cloud boxes, each class under the other's name: matched by name, the edge's "red" boxes sit on the
    # green blocks and nowhere near the cloud's "red" ones (matched by index they would agree exactly).
    swapped = _evaluate(street, models, "swapped")
    assert swapped.classes == ("green", "red") and swapped.cloud_map50 == pytest.approx(1.0)
    assert swapped.edge_map50 == pytest.approx(0.0)
    for f in swapped.filters:
        ratios = [p.upload_ratio for p in f.points]
        scores = [p.map50 for p in f.points]
        assert ratios[0] > 0 and ratios[-1] < 1 and all(0 < s < 1 for s in scores), f
        assert scores == sorted(scores) and scores[-1] > scores[0], f  # more uploads, more agreement
    assert "edge-only agreement 0.000" in swapped.table() and "cloud only" in swapped.sweep_table()


def test_only_the_shared_classes_are_scored(street, models):
    ev = _evaluate(street, models, "partial", reference_score=0.9, every=2)
    # The edge's green boxes (every frame has one, scoring ~1) and the cloud's "blue" ones are left out.
    assert ev.classes == ("red",) and ev.num_images == FRAMES // 2 and ev.reference_score == 0.9
    assert ev.edge_map50 == pytest.approx(1.0) and ev.cloud_map50 == pytest.approx(1.0)


def test_models_without_a_shared_class_are_refused(street, models):
    with pytest.raises(MlkitError, match=r"\['red', 'green'\] and the cloud model's \['cat', 'dog'\] share no name"):
        _evaluate(street, models, "foreign")


def test_a_video_the_cloud_sees_nothing_in_or_cannot_decode(models, tmp_path):
    import cv2

    from mlkit.joint.evaluate import evaluate_on_video

    dark = tmp_path / "dark.avi"
    writer = cv2.VideoWriter(str(dark), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 64))
    for _ in range(3):
        writer.write(np.zeros((64, 64, 3), np.uint8))
    writer.release()
    (tmp_path / "notes.avi").write_text("not a video")
    kw = {"cloud_model": models["same"], "reuse": "none", "filters": FEW, "show_progress": False}
    with pytest.raises(MlkitError, match="the cloud found no red or green box scoring >= 0.5 in any of the 3 frames"):
        evaluate_on_video([dark], models["edge"], **kw)
    with pytest.raises(MlkitError, match="cannot open video .*notes.avi"):
        evaluate_on_video([tmp_path / "notes.avi"], models["edge"], **kw)


def test_restrict_renumbers_by_name():
    from mlkit.joint.reference import restrict, shared_classes

    det = Detections([[0, 0, 1, 1], [1, 1, 2, 2], [2, 2, 3, 3]], [0.9, 0.8, 0.7], [0, 1, 2])
    shared = shared_classes(["person", "helmet", "car"], ["car", "dog", "person"])
    assert shared == ("car", "person")
    kept = restrict(det, ["person", "helmet", "car"], shared)
    assert kept.labels.tolist() == [1, 0] and kept.scores.tolist() == pytest.approx([0.9, 0.7])


def test_cli_on_a_video_without_labels(street, models, tmp_path):
    runner = CliRunner()
    out = tmp_path / "out"
    args = ["joint", "evaluate", "--video", str(street), "--edge-model", str(models["edge"]), "--filter", "Random",
            "--filter", "Keyframe", "--threads", "1"]
    result = runner.invoke(main, [*args, "--cloud-model", str(models["swapped"]), "--per-video", "--max-frames", "9",
                                  "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "street" / "joint_evaluation.json").read_text())
    assert report["reference"] == "cloud" and report["num_images"] == 9 and report["classes"] == ["green", "red"]
    assert report["cloud_map50"] == pytest.approx(1.0) and report["edge_map50"] == pytest.approx(0.0)
    assert {f["filter"] for f in report["filters"]} == {"Random", "Keyframe"}
    assert (out / "videos.png").stat().st_size > 0 and (out / "street" / "sweep.png").stat().st_size > 0
    assert "the cloud's boxes >= 0.5 as labels (green, red)" in result.output and "cloud only" in result.output
    for extra, message in ((["--cloud-model", str(models["foreign"])], "share no name"),
                           (["--cloud-model", str(models["same"]), "--reference", "labels"], "has no labels")):
        bad = runner.invoke(main, [*args, *extra, "--out", str(tmp_path / "bad")])
        assert bad.exit_code == 2 and message in bad.output and "Traceback" not in bad.output, bad.output
        assert not (tmp_path / "bad").exists()
    bad = runner.invoke(main, ["joint", "evaluate", "--data", str(tmp_path), "--reference", "cloud", "--edge-model",
                               str(models["edge"]), "--cloud-model", str(models["same"]), "--out", str(out)])
    assert bad.exit_code == 2 and "--reference need --video" in bad.output


def test_cli_with_a_served_cloud_names_its_classes(street, models, tmp_path):
    """A served cloud does not say its class names: --cloud-classes gives them, else they are taken to be the
    edge's (here that pairs the swapped model's boxes by index, and they agree)."""
    import shutil

    from mlkit.serving.server import start_background_server

    repo = tmp_path / "repo"
    shutil.copytree(models["swapped"], repo / "swapped" / "1")
    server = start_background_server(repo, log_path=tmp_path / "server.log")
    try:
        reports = {}
        for name, extra in (("named", ["--cloud-classes", "green, red"]), ("default", [])):
            result = CliRunner().invoke(main, [
                "joint", "evaluate", "--video", str(street), "--edge-model", str(models["edge"]), "--filter",
                "Random", "--threads", "1", "--cloud-endpoint", server.url, "--cloud-name", "swapped", *extra,
                "--out", str(tmp_path / name)])
            assert result.exit_code == 0, result.output
            reports[name] = json.loads((tmp_path / name / "joint_evaluation.json").read_text())
    finally:
        server.stop()
    assert reports["named"]["classes"] == ["green", "red"] and reports["named"]["edge_map50"] == pytest.approx(0.0)
    assert reports["default"]["classes"] == ["red", "green"] and reports["default"]["edge_map50"] == pytest.approx(1.0)
    assert reports["named"]["cloud_map50"] == reports["default"]["cloud_map50"] == pytest.approx(1.0)
