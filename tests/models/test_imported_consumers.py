"""An imported model where mlkit takes a model: ``mlkit evaluate`` and ``mlkit label auto`` (``mlkit predict``,
``mlkit serve`` are in test_model_import.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from blocks import PLACES
from click.testing import CliRunner

from mlkit.models.importing import import_model


def test_evaluate_an_imported_model(blocks_yolo, scene, tmp_path):
    from mlkit.cli.app import main
    from mlkit.data.dataset import Dataset, ImageRecord, write_rgb
    from mlkit.data.layout import write_dataset_dir

    records = []
    for i, (red, green) in enumerate(PLACES):
        path = tmp_path / "images" / f"{i}.png"
        write_rgb(path, scene(64, 64, red, green))
        records.append(ImageRecord(path, 64, 64, np.array([red, green], np.float32), np.array([0, 1])))
    write_dataset_dir(tmp_path / "ds", {"test": Dataset(records, ("red", "green"), "test")})
    res = CliRunner().invoke(main, ["evaluate", str(blocks_yolo), "--data", str(tmp_path / "ds"), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output[res.output.index("{"):])
    assert out["num_images"] == 3
    assert out["map50"] == pytest.approx(1.0) and out["recall_per_class"] == {"red": 1.0, "green": 1.0}


def test_label_auto_with_an_imported_model(blocks_yolo, scene, tmp_path):
    from mlkit.cli.app import main
    from mlkit.incremental.index import DatasetIndex
    from mlkit.joint.outputs import write_jpeg

    store = tmp_path / "store"
    store.mkdir()
    for i, (red, green) in enumerate(PLACES):
        name = f"frame_{i:06d}"
        write_jpeg(store / f"{name}.jpg", scene(64, 64, red, green))
        (store / f"{name}.json").write_text(json.dumps({"image": f"{name}.jpg", "frame": i, "width": 64,
                                                        "height": 64, "edge": [], "cloud": None}))
    res = CliRunner().invoke(main, ["label", "auto", "--model", str(blocks_yolo), "--store", str(store),
                                    "--index", str(tmp_path / "index"), "--train-prob", "0.5"])
    assert res.exit_code == 0, res.output
    entries = {e["id"]: e for e in DatasetIndex(tmp_path / "index").entries()}
    assert len(entries) == 3
    for i, (red, green) in enumerate(PLACES):
        e = entries[f"frame_{i:06d}"]
        assert e["pseudo"] and sorted(e["labels"]) == [0, 1]
        boxes = {lab: box for lab, box in zip(e["labels"], e["boxes"], strict=True)}
        np.testing.assert_allclose(boxes[0], red, atol=1)
        np.testing.assert_allclose(boxes[1], green, atol=1)


def test_joint_run_with_imported_edge_and_cloud_models(tiny_models, blocks_yolo, scene, tmp_path):
    """The joint worker: an imported YOLOv8 at the edge, an imported YOLOv5 served as the cloud, every frame sent."""
    import cv2
    import yaml

    from mlkit.cli.app import main
    from mlkit.cli.joint import EXAMPLE
    from mlkit.serving.server import start_background_server

    video = tmp_path / "blocks.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 64))
    for red, green in PLACES * 2:
        writer.write(scene(64, 64, red, green)[:, :, ::-1])
    writer.release()
    import_model(tiny_models["yolov5"], tmp_path / "repo" / "big" / "1", labels="red,green")
    data = yaml.safe_load(EXAMPLE.replace("joint-output", str(tmp_path / "out")))
    edge = data["spec"]["edgeWorker"]
    edge["model"]["url"] = str(blocks_yolo)
    edge["workerSpec"]["parameters"][0]["value"] = str(video)
    edge["hardExampleMining"] = {"name": "CloudOnly"}
    server = start_background_server(tmp_path / "repo")
    try:
        cloud = data["spec"]["cloudWorker"]["workerSpec"]["parameters"]
        cloud[0]["value"], cloud[1]["value"] = server.url, "60000"
        config = tmp_path / "joint.yaml"
        config.write_text(yaml.safe_dump(data))
        result = CliRunner().invoke(main, ["joint", "run", str(config), "--no-progress"])
    finally:
        server.stop()
    assert result.exit_code == 0, result.output
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["frames"] == 6 and stats["cloud_results"] == 6 and stats["fallbacks"] == 0
    records = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert len(records) == 6
    for rec in records:
        red, green = PLACES[rec["frame"] % len(PLACES)]
        for side in ("edge", "cloud"):
            boxes = {d["label"]: d["box"] for d in rec[side]}
            assert set(boxes) == {"red", "green"}, rec
            np.testing.assert_allclose(boxes["red"], red, atol=1)
            np.testing.assert_allclose(boxes["green"], green, atol=1)
