"""joint_inference_video component: python_func against a real local server, on tiny labelled clips."""

import json
from pathlib import Path

import pytest
from kfp import dsl

from mlkit.components.joint_inference_video.component import joint_inference_video
from mlkit.data.synthetic.clipset import ClipSetSpec, render_clip_set

LITTLE = Path(__file__).resolve().parents[3] / "models" / "little" / "tflite"


def _outputs(tmp_path: Path) -> dict:
    return {"metrics": dsl.Metrics(uri=str(tmp_path / "metrics")), "report": dsl.Artifact(uri=str(tmp_path / "report")),
            "sweep": dsl.HTML(uri=str(tmp_path / "sweep.html"))}


@pytest.fixture(scope="module")
def setup(tmp_path_factory, little_cloud):
    root = tmp_path_factory.mktemp("joint-video")
    render_clip_set(root / "clips", ClipSetSpec(test_seeds="31,32", tune_seeds="33", frames=12), show_progress=False)
    return root / "clips", little_cloud


@pytest.mark.slow
def test_metrics_report_and_chart_on_clips(setup, tmp_path):
    clips, server = setup
    best = joint_inference_video.python_func(edge_model=dsl.Model(uri=str(LITTLE)), clips=dsl.Dataset(uri=str(clips)),
                                             endpoint=server.url, reuse="hold", reuse_frames=2, num_threads=1,
                                             **_outputs(tmp_path))
    report = json.loads((tmp_path / "report" / "joint_evaluation.json").read_text())
    assert report["num_images"] == 24 and report["tuned_on"] == "1 tuning clip"  # two 12-frame test clips
    assert (report["reuse"], report["reuse_frames"]) == ("hold", 2)
    assert "Keyframe" in {f["filter"] for f in report["filters"]}
    (chosen,) = [f for f in report["filters"] if f["filter"] == report["best"]]
    assert chosen["test_map50"] == pytest.approx(best)
    assert (tmp_path / "report" / "sweep.png").stat().st_size > 10_000
    assert "data:image/png;base64," in (tmp_path / "sweep.html").read_text()


@pytest.mark.slow
def test_logged_metrics_match_the_report(setup, tmp_path):
    clips, server = setup
    out = _outputs(tmp_path)
    best = joint_inference_video.python_func(edge_model=dsl.Model(uri=str(LITTLE)), clips=dsl.Dataset(uri=str(clips)),
                                             endpoint=server.url, num_threads=1, **out)
    m = out["metrics"].metadata
    assert m["best_map50"] == pytest.approx(best) and 0.0 <= best <= 1.0
    assert {"edge_map50", "cloud_map50", "Keyframe_map50", "bytes_per_upload_jpeg"} <= set(m)


def test_bad_inputs_are_value_errors(tmp_path):
    kw = {"edge_model": dsl.Model(uri=str(LITTLE)), **_outputs(tmp_path)}
    with pytest.raises(ValueError, match="no TFLite variant 'int4'"):
        joint_inference_video.python_func(clips=dsl.Dataset(uri=str(tmp_path)), endpoint="http://x", variant="int4",
                                          **kw)
    with pytest.raises(ValueError, match="endpoint must be an http"):
        joint_inference_video.python_func(clips=dsl.Dataset(uri=str(tmp_path)), endpoint="localhost:8080", **kw)
    if (LITTLE / "int8" / "model.tflite").is_file():
        with pytest.raises(ValueError, match="has no clips.json: it is not a clip set"):
            joint_inference_video.python_func(clips=dsl.Dataset(uri=str(tmp_path)), endpoint="http://127.0.0.1:9",
                                              **kw)
