"""`mlkit joint run` on a real video against a real server, and the offline joint evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from mlkit.cli import main
from tests.joint.conftest import joint_spec


def test_joint_run_cli_end_to_end(video, cloud_server, tmp_path):
    every_frame = {"name": "Uncertainty", "parameters": [{"key": "threshold_uncertainty", "value": "0.0"}]}
    config = joint_spec(tmp_path, video, cloud_server.url, every_frame)  # 0 = every frame is hard
    result = CliRunner().invoke(main, ["joint", "run", str(config), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "end of file" in result.output.lower() or "source:" in result.output
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["frames"] == 10 and stats["hard_frames"] == 10 and stats["cloud_results"] == 10
    assert "hard frames" in result.output and "10 (100.0% uploaded)" in result.output
    records = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(10)) and all(r["source"] == "cloud" for r in records)


def test_output_paths_that_cannot_be_written_are_usage_errors(video, cloud_server, tmp_path):
    import yaml

    every_frame = {"name": "Uncertainty", "parameters": [{"key": "threshold_uncertainty", "value": "0.0"}]}
    config = joint_spec(tmp_path, video, cloud_server.url, every_frame)
    (tmp_path / "out" / "results.jsonl").mkdir(parents=True)  # a folder where the results file goes
    result = CliRunner().invoke(main, ["joint", "run", str(config), "--no-progress"])
    assert result.exit_code == 2 and "results.jsonl: Is a directory" in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    data = yaml.safe_load(config.read_text())
    params = data["spec"]["edgeWorker"]["workerSpec"]["parameters"]
    (tmp_path / "taken").write_text("a file where a folder goes")
    moved = {"results": str(tmp_path / "out2" / "results.jsonl"), "hard_example_store": str(tmp_path / "taken")}
    for p in params:
        p["value"] = moved.get(p["key"], p["value"])
    config.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(main, ["joint", "run", str(config), "--no-progress"])
    assert result.exit_code == 2 and "taken: File exists" in result.output, result.output


def test_the_first_fallback_of_each_kind_says_why(video, cloud_server, tmp_path, caplog):
    import yaml

    every_frame = {"name": "Uncertainty", "parameters": [{"key": "threshold_uncertainty", "value": "0.0"}]}
    config = joint_spec(tmp_path, video, cloud_server.url, every_frame)
    data = yaml.safe_load(config.read_text())
    data["spec"]["cloudWorker"]["model"]["name"] = "nosuchmodel"
    config.write_text(yaml.safe_dump(data))
    with caplog.at_level("WARNING", logger="mlkit.joint.worker"):
        result = CliRunner().invoke(main, ["joint", "run", str(config), "--no-progress"])
    assert result.exit_code == 0, result.output
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "cloud http_4xx (404" in warnings[0] and "nosuchmodel" in warnings[0], warnings
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["fallback_reasons"] == {"http_4xx": 10}


def test_evaluate_joint_endpoints_and_sweep(edge_model):
    """Random at ratio 0 is the edge, at ratio 1 the cloud; sweeps stay within [0, 1] and are scored by COCO mAP."""
    import tempfile
    from pathlib import Path

    from mlkit.data.layout import load_split
    from mlkit.data.synthetic.generate import SyntheticSpec, generate_dataset
    from mlkit.evaluation.coco_map import coco_map
    from mlkit.joint.evaluate import evaluate_joint, sweep_filter
    from mlkit.mining import build_filter
    from mlkit.models.predict import TFLiteDetector
    from tests.joint.conftest import LITTLE

    root = Path(tempfile.mkdtemp(prefix="mlkit-joint-eval-"))
    ds = load_split(generate_dataset(root, SyntheticSpec(train=0, val=0, test=16, seed=8), workers=1,
                                     show_progress=False), "test")
    cloud_model = TFLiteDetector(LITTLE / "fp32" / "model.tflite")
    edge = [edge_model.predict([ds.load_image(i)], score_threshold=0.05)[0] for i in range(len(ds))]
    cloud = [cloud_model.predict([ds.load_image(i)], score_threshold=0.05)[0] for i in range(len(ds))]
    rnd = build_filter({"method": "Random", "param": {"seed": 1}})
    points, _ = sweep_filter(rnd, ds, edge, cloud, [0.0, 1.0])
    assert points[0].upload_ratio == 0.0 and points[0].map50 == pytest.approx(coco_map(ds, edge)["map50"])
    assert points[1].upload_ratio == 1.0 and points[1].map50 == pytest.approx(coco_map(ds, cloud)["map50"])

    result = evaluate_joint(ds, edge, cloud, upload_budget=0.3, show_progress=False)
    names = {f.filter for f in result.filters}
    assert names >= {"IBT(threshold_box=0.9)", "IBT(threshold_box=0.5)", "Random", "Uncertainty"}
    for f in result.filters:
        assert all(0.0 <= p.upload_ratio <= 1.0 and 0.0 <= p.map50 <= 1.0 for p in f.points)
        if f.test_upload_ratio is not None:
            assert f.test_upload_ratio <= 0.3 + 1e-9
    assert result.bytes_json_list > 20 * result.bytes_jpeg
    d = result.to_dict()
    assert d["edge_map50"] == pytest.approx(coco_map(ds, edge)["map50"]) and np.isfinite(d["bytes_ratio"])
    assert "bytes per uploaded frame" in result.table() and "oracle (uses GT)" in result.table()
    assert result.oracle and all(0.0 <= p.map50 <= 1.0 for p in result.oracle)


def test_oracle_uploads_exactly_the_frames_the_cloud_fixes(tmp_path):
    """Edge perfect on even frames and blind on odd ones, cloud perfect: the oracle at 50% is the cloud."""
    from mlkit.data.layout import load_split
    from mlkit.data.synthetic.generate import SyntheticSpec, generate_dataset
    from mlkit.detections import Detections
    from mlkit.joint.evaluate import oracle_points

    ds = load_split(generate_dataset(tmp_path, SyntheticSpec(train=0, val=0, test=8, seed=4), workers=1,
                                     show_progress=False), "test")
    perfect = [Detections(r.boxes, np.full(len(r.labels), 0.9), r.labels) for r in ds]
    edge = [d if i % 2 == 0 else Detections() for i, d in enumerate(perfect)]
    points = {p.value: p for p in oracle_points(ds, edge, perfect, ratios=(0.0, 0.25, 0.5))}
    assert points[0.5].upload_ratio == 0.5 and points[0.5].map50 == pytest.approx(1.0)
    assert points[0.0].map50 < points[0.25].map50 < points[0.5].map50


def test_budget_margin_shrinks_with_more_tuning_frames():
    from mlkit.joint.evaluate import budget_margin

    assert budget_margin(0.3, 300) == pytest.approx(1.645 * (0.3 * 0.7 / 300) ** 0.5)
    assert budget_margin(0.3, 3000) < budget_margin(0.3, 300) < budget_margin(0.3, 30)
    assert budget_margin(0.3, 10) == pytest.approx(0.15)  # capped at half the budget
    assert budget_margin(0.3, 6) == pytest.approx(0.3 - 1 / 6)  # one of 6 frames may still go


def test_evaluate_on_video_applies_the_workers_reuse_rule(edge_model, tmp_path):
    """On clips, a sweep point's mAP is that of the worker's rule (final_sequence) within each clip."""
    from mlkit.data.synthetic.video import VideoSpec, extract_frames, render_video
    from mlkit.evaluation.coco_map import coco_map
    from mlkit.joint.evaluate import FrameOrder, evaluate_joint, sweep_filter
    from mlkit.joint.reuse import final_sequence
    from mlkit.mining import build_filter
    from mlkit.models.predict import TFLiteDetector
    from tests.joint.conftest import LITTLE

    sets = []
    for i in range(2):
        path = tmp_path / f"clip{i}.avi"
        labels = render_video(path, VideoSpec(frames=12, width=320, height=240, seed=40 + i), show_progress=False)
        sets.append(extract_frames(path, labels, tmp_path / f"frames{i}", show_progress=False))
    ds = type(sets[0])([r for s in sets for r in s.images], sets[0].class_names)
    clips = tuple([0] * 12 + [1] * 12)
    cloud_model = TFLiteDetector(LITTLE / "fp32" / "model.tflite")
    edge = [edge_model.predict([ds.load_image(i)], score_threshold=0.05)[0] for i in range(len(ds))]
    cloud = [cloud_model.predict([ds.load_image(i)], score_threshold=0.05)[0] for i in range(len(ds))]
    key = build_filter({"method": "Keyframe", "param": {}})
    scores = np.array([key.score(d) for d in edge])
    hard = key.decide(scores, 0.3)
    images = [ds.load_image(i) for i in range(len(ds))]
    for rule in ("none", "hold", "interpolate", "track", "track-interpolate"):
        (point,), _ = sweep_filter(build_filter("Keyframe"), ds, edge, cloud, [0.3],
                                   FrameOrder(clips, rule, 8, images))
        assert point.upload_ratio == pytest.approx(hard.mean())
        want = coco_map(ds, final_sequence(edge, cloud, hard, rule, 8, clips, images))["map50"]
        assert point.map50 == pytest.approx(want)
    result = evaluate_joint(ds, edge, cloud, filters=[{"method": "Keyframe", "param": {}}], show_progress=False,
                            order=FrameOrder(clips, "interpolate", 8))
    # No per-frame oracle: answers are shared between frames.
    assert (result.reuse, result.reuse_frames, result.oracle) == ("interpolate", 8, [])
    assert "24 test frames (reuse: interpolate within 8 frames)" in result.table()


def test_evaluate_cli_on_video_and_its_usage_errors(video, tmp_path):
    runner = CliRunner()
    models = ["--edge-model", "models/little/tflite/int8", "--cloud-model", "models/little/tflite/fp32"]
    out = tmp_path / "out"
    result = runner.invoke(main, ["joint", "evaluate", "--video", str(video), "--tune-video", str(video),
                                  "--reuse", "interpolate", "--reuse-frames", "4", *models, "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "joint_evaluation.json").read_text())
    assert report["reuse"] == "interpolate" and report["num_images"] == 10 and report["tuned_on"] == "1 tuning clip"
    assert "Keyframe" in {f["filter"] for f in report["filters"]} and (out / "sweep.png").stat().st_size > 0
    # Several rules on one set of predictions: a report each, and the rules side by side.
    rules = tmp_path / "rules"
    result = runner.invoke(main, ["joint", "evaluate", "--video", str(video), "--reuse", "none", "--reuse", "track",
                                  "--filter", "Keyframe", "--filter", "Random", *models, "--out", str(rules)])
    assert result.exit_code == 0, result.output
    for rule in ("none", "track"):
        report = json.loads((rules / rule / "joint_evaluation.json").read_text())
        assert report["reuse"] == rule and {f["filter"] for f in report["filters"]} == {"Keyframe", "Random"}
    assert (rules / "reuse.png").stat().st_size > 0 and "Keyframe under each rule" in result.output
    for args, message in ((["--reuse", "hold", "--data", str(tmp_path)], "--tune-video and --reuse need --video"),
                          (["--filter", "Keyframe", "--data", str(tmp_path)], "Keyframe needs --video"),
                          (["--video", str(video), "--data", str(tmp_path)], "either --data"),
                          ([], "either --data")):
        bad = runner.invoke(main, ["joint", "evaluate", *args, *models, "--out", str(out)])
        assert bad.exit_code == 2 and message in bad.output and "Traceback" not in bad.output
