"""compare_models component: python_func with one tiny model as both new and deployed (deltas are zero)."""

import dataclasses
import json

import pytest
from kfp import dsl

from mlkit.components.compare_models.component import compare_models


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from mlkit.data.synthetic.generate import SyntheticSpec, generate_dataset
    from mlkit.models.config import LITTLE
    from mlkit.models.detector import build_detector
    from mlkit.models.export import export_tflite
    from mlkit.models.train import save_detector

    root = tmp_path_factory.mktemp("compare")
    cfg = dataclasses.replace(LITTLE, input_width=128, input_height=96, neck_channels=16, head_convs=1)
    save_detector(build_detector(cfg, seed=0), cfg, root / "model")
    export_tflite(root / "model", root / "model" / "tflite", ["fp32"])
    data = generate_dataset(root / "data", SyntheticSpec(train=0, val=4, test=0, seed=3), show_progress=False)
    manifest = json.loads((data / "dataset.json").read_text())
    manifest["splits"] = {"eval": "val"}  # the round data names its eval split "eval"
    (data / "dataset.json").write_text(json.dumps(manifest))
    return root / "model", data


@pytest.mark.slow
@pytest.mark.parametrize(("operator", "decision"), [(">", "keep"), (">=", "deploy")])
def test_same_model_has_zero_delta(setup, tmp_path, operator, decision):
    model, data = setup
    metrics, report = dsl.Metrics(uri=str(tmp_path / "m")), dsl.Artifact(uri=str(tmp_path / "r"))
    out = compare_models.python_func(new_model=dsl.Model(uri=str(model)), deployed_model=dsl.Model(uri=str(model)),
                                     data=dsl.Dataset(uri=str(data)), metrics=metrics, report=report,
                                     operator=operator, threshold=0.0, metric="map_delta", variant="fp32")
    assert out == decision
    r = json.loads((tmp_path / "r" / "report.json").read_text())
    assert r["deploy"] is (decision == "deploy") and r["value"] == pytest.approx(0.0)
    assert r["new"]["num_images"] == 4 and r["new"]["map50"] == r["old"]["map50"]
    assert metrics.metadata["map50_delta"] == pytest.approx(0.0)
