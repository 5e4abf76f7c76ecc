"""convert component: python_func on an untrained test-profile detector (conversion needs no training)."""

import json

import pytest
from kfp import dsl

from mlkit.components.convert.component import convert
from mlkit.data.synthetic.generate import generate_dataset
from mlkit.models.detector import build_detector
from mlkit.models.train import save_detector
from mlkit.profiles import PROFILES


@pytest.mark.slow
def test_writes_every_variant_and_fidelity(tmp_path):
    cfg = PROFILES["test"].little
    save_detector(build_detector(cfg, seed=0), cfg, tmp_path / "keras")
    data = generate_dataset(tmp_path / "data", PROFILES["test"].data, show_progress=False)
    tflite = dsl.Model(uri=str(tmp_path / "tflite"))
    fidelity = dsl.Metrics(uri=str(tmp_path / "fidelity"))
    convert.python_func(model=dsl.Model(uri=str(tmp_path / "keras")), dataset=dsl.Dataset(uri=str(data)),
                        tflite=tflite, fidelity=fidelity, variants="fp32, int8", profile="test",
                        num_threads=1)

    for v in ("fp32", "int8"):
        assert (tmp_path / "tflite" / v / "model.tflite").stat().st_size > 1000
        meta = json.loads((tmp_path / "tflite" / v / "metadata.json").read_text())
        assert meta["variant"] == v and meta["name"] == "little"
        assert 0.0 <= fidelity.metadata[f"{v}_map50"] <= 1.0
        assert fidelity.metadata[f"{v}_size_mb"] > 0 and fidelity.metadata[f"{v}_ms_per_image"] > 0
    assert not (tmp_path / "tflite" / "fp16").exists()
    assert fidelity.metadata["int8_size_mb"] < fidelity.metadata["fp32_size_mb"]
    rows = json.loads((tmp_path / "tflite" / "fidelity.json").read_text())
    assert [r["variant"] for r in rows] == ["keras", "fp32", "int8"]
    assert tflite.metadata["variants"] == ["fp32", "int8"]


def test_unknown_variant_fails_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="unknown: \\['int4'\\]"):
        convert.python_func(model=dsl.Model(uri=str(tmp_path / "k")),
                            dataset=dsl.Dataset(uri=str(tmp_path / "d")),
                            tflite=dsl.Model(uri=str(tmp_path / "t")),
                            fidelity=dsl.Metrics(uri=str(tmp_path / "f")), variants="fp32,int4")
