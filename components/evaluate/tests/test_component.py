"""evaluate component: python_func on an untrained, fp32-converted test-profile detector."""

import pytest
from kfp import dsl

from mlkit.components.evaluate.component import evaluate
from mlkit.data.synthetic.generate import generate_dataset
from mlkit.models.detector import build_detector
from mlkit.models.export import export_tflite
from mlkit.models.train import save_detector
from mlkit.profiles import PROFILES


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    cfg = PROFILES["test"].little
    save_detector(build_detector(cfg, seed=0), cfg, root / "keras")
    export_tflite(root / "keras", root / "tflite", variants=("fp32",))
    data = generate_dataset(root / "data", PROFILES["test"].data, show_progress=False)
    return root / "tflite", data


@pytest.mark.slow
def test_metrics_confusion_matrix_and_return_value(converted, tmp_path):
    tflite, data = converted
    metrics = dsl.Metrics(uri=str(tmp_path / "metrics"))
    confusion = dsl.ClassificationMetrics(uri=str(tmp_path / "confusion"))
    map50 = evaluate.python_func(model=dsl.Model(uri=str(tflite)), dataset=dsl.Dataset(uri=str(data)),
                                 metrics=metrics, confusion=confusion, variant="fp32", num_threads=1)

    assert isinstance(map50, float) and 0.0 <= map50 <= 1.0
    m = metrics.metadata
    assert m["map50"] == pytest.approx(map50)
    assert m["images_per_second"] > 0
    assert {"ap50_person", "precision_person", "recall_person"} <= set(m)
    cm = confusion.metadata["confusionMatrix"]
    names = [s["displayName"] for s in cm["annotationSpecs"]]
    assert names == [*PROFILES["test"].little.class_names, "background"]
    rows = [r["row"] for r in cm["rows"]]
    assert len(rows) == len(names) and all(len(r) == len(names) for r in rows)
    # every test-split GT box lands once in its true-class row
    from mlkit.data.layout import load_split

    assert sum(sum(r) for r in rows[:-1]) == load_split(data, "test").num_boxes


@pytest.mark.slow
def test_missing_variant_names_what_is_there(converted, tmp_path):
    tflite, data = converted
    with pytest.raises(ValueError, match=r"no TFLite variant 'int8' .* it has \['fp32'\]"):
        evaluate.python_func(model=dsl.Model(uri=str(tflite)), dataset=dsl.Dataset(uri=str(data)),
                             metrics=dsl.Metrics(uri=str(tmp_path / "m")),
                             confusion=dsl.ClassificationMetrics(uri=str(tmp_path / "c")), variant="int8")
