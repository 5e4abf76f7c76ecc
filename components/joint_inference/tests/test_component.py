"""joint_inference component: python_func against a real local server, on a tiny synthetic split."""

import json
from pathlib import Path

import pytest
from kfp import dsl

from mlkit.components.joint_inference.component import joint_inference
from mlkit.data.synthetic.generate import SyntheticSpec, generate_dataset

LITTLE = Path(__file__).resolve().parents[3] / "models" / "little" / "tflite"


@pytest.fixture(scope="module")
def setup(tmp_path_factory, little_cloud):
    root = tmp_path_factory.mktemp("joint")
    data = generate_dataset(root / "data", SyntheticSpec(train=0, val=6, test=8, seed=4), workers=1,
                            show_progress=False)
    return data, little_cloud


@pytest.mark.slow
def test_metrics_report_and_chart(setup, tmp_path):
    data, server = setup
    metrics = dsl.Metrics(uri=str(tmp_path / "metrics"))
    report = dsl.Artifact(uri=str(tmp_path / "report"))
    sweep = dsl.HTML(uri=str(tmp_path / "sweep.html"))
    best = joint_inference.python_func(edge_model=dsl.Model(uri=str(LITTLE)), dataset=dsl.Dataset(uri=str(data)),
                                       endpoint=server.url, metrics=metrics, report=report, sweep=sweep,
                                       num_threads=1)
    m = metrics.metadata
    assert 0.0 <= best <= 1.0 and m["best_map50"] == pytest.approx(best)
    assert {"edge_map50", "cloud_map50", "best_upload_ratio", "bytes_per_upload_jpeg"} <= set(m)
    evaluation = json.loads((tmp_path / "report" / "joint_evaluation.json").read_text())
    # Tuned on val under the budget (with a margin); 8 test images cannot hold a ratio to it.
    assert all(f["tune_upload_ratio"] <= 0.3 for f in evaluation["filters"] if f["chosen_value"] is not None)
    assert evaluation["num_images"] == 8 and evaluation["tuned_on"] == "val"
    assert (tmp_path / "report" / "sweep.png").stat().st_size > 10_000
    assert "data:image/png;base64," in (tmp_path / "sweep.html").read_text()


def test_bad_endpoint_and_variant_are_named(tmp_path):
    kw = {"dataset": dsl.Dataset(uri=str(tmp_path)), "metrics": dsl.Metrics(uri=str(tmp_path / "m")),
          "report": dsl.Artifact(uri=str(tmp_path / "r")), "sweep": dsl.HTML(uri=str(tmp_path / "s"))}
    with pytest.raises(ValueError, match="no TFLite variant 'int4'"):
        joint_inference.python_func(edge_model=dsl.Model(uri=str(LITTLE)), endpoint="http://x", variant="int4", **kw)
    with pytest.raises(ValueError, match="endpoint must be an http"):
        joint_inference.python_func(edge_model=dsl.Model(uri=str(LITTLE)), endpoint="localhost:8080", **kw)
