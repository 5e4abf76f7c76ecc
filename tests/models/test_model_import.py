"""``mlkit models import``: each format recognised, decoded to the known boxes, served over v2 REST and gRPC;
bad models and labels refused with one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from mlkit.errors import MlkitError
from mlkit.models.importing import COCO90, import_model
from mlkit.models.predict import DetectorMeta, TFLiteDetector, open_detector

# Where the tiny models must find the blocks (see conftest): the SSD stretches a 64x48 image onto its quadrants,
# the YOLOs letterbox a 64x64 image onto their 4x4 grid.
SSD_IMAGE = dict(width=64, height=48, red=(0, 0, 32, 24), green=(32, 24, 64, 48))
YOLO_IMAGE = dict(width=64, height=64, red=(16, 0, 32, 16), green=(48, 32, 64, 48))
CASES = {"ssd": ("ssd-postprocess", "a,b,c", SSD_IMAGE), "ssd_uint8": ("ssd-postprocess", "a,b,c", SSD_IMAGE),
         "yolov8": ("yolov8", "a,b", YOLO_IMAGE),
         "yolov5": ("yolov5", "a,b", YOLO_IMAGE)}


@pytest.fixture(scope="module")
def repo(tiny_models, tmp_path_factory):
    """A model repository with the three tiny models imported as <name>/1."""
    root = tmp_path_factory.mktemp("repo")
    for name, (_, labels, _) in CASES.items():
        import_model(tiny_models[name], root / name / "1", labels=labels)
    return root


def _expect(image: dict) -> tuple[np.ndarray, np.ndarray]:
    return np.array([image["red"], image["green"]], np.float32), np.array([0, 1])


@pytest.mark.parametrize("name", list(CASES))
def test_import_records_the_format_and_predicts_the_known_boxes(repo, name, scene):
    fmt, labels, image = CASES[name]
    meta = json.loads((repo / name / "1" / "metadata.json").read_text())
    assert meta["output_format"] == fmt and meta["class_names"] == labels.split(",")
    ssd = name.startswith("ssd")
    # a uint8 input gets the pixels whatever input_mean and input_std say (they apply to float inputs)
    assert (meta["input_mean"], meta["input_std"], meta["resize"]) == (
        (127.5, 127.5, "stretch") if ssd else (0.0, 255.0, "letterbox"))
    assert meta["box_units"] == ("normalized" if ssd or name == "yolov8" else "pixels")
    det = open_detector(repo / name / "1").predict([scene(**image)])[0]
    boxes, labels_ = _expect(image)
    order = np.argsort(det.labels)
    np.testing.assert_allclose(det.boxes[order], boxes, atol=0.5)
    np.testing.assert_array_equal(det.labels[order], labels_)
    assert np.all(det.scores > 0.99)


def test_a_batch_of_images_gives_each_its_own_boxes(repo, scene):
    det = TFLiteDetector(repo / "ssd" / "1" / "model.tflite")
    empty = np.zeros((48, 64, 3), np.uint8)
    out = det.predict([empty, scene(**SSD_IMAGE), empty])
    assert [len(d) for d in out] == [0, 2, 0]


def test_served_over_v2_rest_and_grpc(repo, scene):
    from mlkit.client.grpc import GRPCServingClient
    from mlkit.client.http import ServingClient
    from mlkit.serving.server import start_background_server

    images = {"ssd": scene(**SSD_IMAGE), "yolov8": scene(**YOLO_IMAGE), "yolov5": scene(**YOLO_IMAGE)}
    server = start_background_server(repo, max_batch_size=4)
    try:
        for name, image in images.items():
            want = open_detector(repo / name / "1").predict([image, image[::-1].copy()])
            with ServingClient(server.url, name, encoding="png") as client:
                rest = client.predict([image, image[::-1].copy()])
            with GRPCServingClient(server.grpc_url, name, encoding="png") as client:
                grpc = client.predict([image, image[::-1].copy()])
            with ServingClient(server.url, name, protocol="v1", encoding="png") as client:
                v1 = client.predict([image])
            for got, expected in ((rest, want), (grpc, want), (v1, want[:1])):
                for g, w in zip(got, expected, strict=True):
                    assert len(g) == len(w) == 2
                    np.testing.assert_allclose(g.boxes, w.boxes, atol=1e-3)
                    np.testing.assert_array_equal(g.labels, w.labels)
    finally:
        server.stop()


def test_cli_import_and_predict(tiny_models, tmp_path, scene):
    from mlkit.cli.app import main

    out = tmp_path / "models" / "people" / "3"
    res = CliRunner().invoke(main, ["models", "import", str(tiny_models["yolov8"]), "--out", str(out),
                                    "--labels", "person,car", "--score-threshold", "0.4"])
    assert res.exit_code == 0, res.output
    assert "yolov8, input 32x32, 2 classes" in res.output
    meta = DetectorMeta.load(out / "metadata.json")
    assert (meta.name, meta.score_threshold) == ("people", 0.4)
    png = tmp_path / "scene.png"
    import cv2

    cv2.imwrite(str(png), scene(**YOLO_IMAGE)[:, :, ::-1])
    res = CliRunner().invoke(main, ["predict", str(out), str(png)])
    assert res.exit_code == 0, res.output
    found = json.loads(res.output.strip().splitlines()[-1])["detections"]
    assert sorted(d["label"] for d in found) == ["car", "person"]


def _one_line_error(args) -> str:
    from mlkit.cli.app import main

    res = CliRunner().invoke(main, ["models", "import", *map(str, args)])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("Error: ")]
    assert len(lines) == 1, res.output
    return lines[0]


def test_unknown_model_names_its_outputs(tiny_models, tmp_path):
    line = _one_line_error([tiny_models["two_outputs"], "--out", tmp_path / "m" / "1"])
    assert ("two_outputs.tflite has 2 outputs [1,10] float32, [1,10,4] float32: neither TFLite_Detection_PostProcess "
            "(4 outputs) nor a YOLO output ([1,4+C,N] or [1,N,5+C]); see docs/models.md") in line
    assert not (tmp_path / "m" / "1").exists()


def test_asked_format_that_the_model_is_not(tiny_models, tmp_path):
    line = _one_line_error([tiny_models["ssd"], "--format", "yolo", "--out", tmp_path / "m" / "1"])
    assert "ssd.tflite has 4 outputs" in line and "not a YOLO output" in line


def test_not_a_tflite_file(tmp_path):
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"not a model at all")
    line = _one_line_error([bad, "--out", tmp_path / "m" / "1"])
    assert "model.tflite is not a TFLite model (no TFL3 identifier)" in line


@pytest.mark.parametrize(("name", "labels", "message"), [
    ("ssd", "a,b", "--labels 'a,b' names 2 classes, but ssd.tflite has 3"),
    ("yolov5", "coco80", "names 80 classes, but yolov5.tflite has 2"),
    ("ssd", "missing.txt", "--labels file missing.txt not found"),
])
def test_labels_must_match_the_class_count(tiny_models, tmp_path, name, labels, message):
    assert message in _one_line_error([tiny_models[name], "--labels", labels, "--out", tmp_path / "m" / "1"])


def test_labels_from_a_file_and_the_coco_map(tiny_models, tmp_path):
    (tmp_path / "labels.txt").write_text("helmet\nhead\n\nperson\n")
    meta = import_model(tiny_models["ssd"], tmp_path / "a" / "1", labels=str(tmp_path / "labels.txt"))
    assert meta.class_names == ("helmet", "head", "person")
    assert len(COCO90) == 90 and COCO90[0] == "person" and COCO90[89] == "toothbrush"


def test_out_must_be_a_new_version_folder(tiny_models, tmp_path):
    assert "must end in a version folder" in _one_line_error([tiny_models["yolov8"], "--out", tmp_path / "m"])
    (tmp_path / "m" / "1").mkdir(parents=True)
    assert "exists: import as a new version" in _one_line_error([tiny_models["yolov8"], "--out", tmp_path / "m" / "1"])


def test_metadata_format_that_the_model_is_not(repo, tmp_path):
    meta = json.loads((repo / "yolov8" / "1" / "metadata.json").read_text())
    (tmp_path / "model.tflite").write_bytes((repo / "ssd" / "1" / "model.tflite").read_bytes())
    (tmp_path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(MlkitError, match="says output_format 'yolov8', but model.tflite has 4 outputs"):
        open_detector(tmp_path)
    (tmp_path / "metadata.json").write_text(json.dumps({**meta, "output_format": "retina"}))
    with pytest.raises(MlkitError, match=r"output_format must be one of \['mlkit'"):
        open_detector(tmp_path)


def test_stretch_tf1_resizes_as_tf1_resize_bilinear():
    """TF1 frozen graphs resize inside the graph without half-pixel centres; imported, they get the same pixels."""
    tf = pytest.importorskip("tensorflow")
    from mlkit.models.postprocess import stretch, stretch_tf1

    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    want = tf.compat.v1.image.resize_bilinear(image[None].astype(np.float32), [30, 30]).numpy()[0]
    got, fit = stretch_tf1(image, 30, 30)
    assert (fit.scale_x, fit.scale_y) == (30 / 64, 30 / 48)
    assert np.abs(got.astype(np.float32) - want).max() <= 1.0
    assert np.abs(stretch(image, 30, 30)[0].astype(np.float32) - want).max() > 10  # OpenCV's centres differ
