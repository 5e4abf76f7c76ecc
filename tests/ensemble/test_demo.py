"""The demo: crops cut from the synthetic scenes, and the committed trained ensemble (models/ensemble).

The accuracy check runs the committed models through both pipelines on crops of freshly generated scenes
(another seed than the training data), so it is held out and needs no dataset on disk.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from ensemble_helpers import REPO

DEMO = REPO / "models" / "ensemble"


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    from mlkit.data.layout import load_split
    from mlkit.data.synthetic.generate import SyntheticSpec, generate_dataset

    root = generate_dataset(tmp_path_factory.mktemp("scenes"), SyntheticSpec(train=0, val=0, test=24, seed=7),
                            workers=1, show_progress=False)
    return load_split(root, "test")


def test_crops_follow_the_boxes_and_are_deterministic(scenes):
    from mlkit.models.classifier import CLASSES, CropSpec, extract_crops

    spec = CropSpec(size=48, background_per_image=2, seed=3)
    x, y = extract_crops(scenes, spec, max_images=6, show_progress=False)
    names = list(scenes.class_names)
    heads = [int(lab) for rec in scenes.images[:6] for lab in rec.labels
             if names[int(lab)] in ("helmet-on", "helmet-off")]
    assert x.shape == (len(y), 48, 48, 3) and x.dtype == np.uint8
    assert y[y != CLASSES.index("background")].tolist() == [CLASSES.index(names[h]) for h in heads]
    assert (y == CLASSES.index("background")).sum() == 12
    x2, y2 = extract_crops(scenes, spec, max_images=6, show_progress=False)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)


def test_the_committed_config_is_the_demo_config_and_names_existing_models():
    from mlkit.serving.graph.config import load_config
    from mlkit.serving.graph.demo import demo_config

    assert json.loads((DEMO / "config.json").read_text()) == demo_config()
    for name, base in load_config(DEMO / "config.json").models().items():
        assert (base / "1" / "model.tflite").is_file() and (base / "1" / "metadata.json").is_file(), name


def test_the_committed_ensemble_is_accurate_on_new_scenes(scenes):
    from mlkit.models.classifier import extract_crops
    from mlkit.serving.graph.demo import AVERAGE_PIPELINE, PIPELINE
    from mlkit.serving.graph.loading import Graph

    x, y = extract_crops(scenes, show_progress=False)
    with Graph.load(DEMO / "config.json") as g:
        avg = g.run(AVERAGE_PIPELINE, image=list(x))
        label = g.run(PIPELINE, image=list(x))["label"]
    acc = {m: float((avg[f"{m}_probabilities"].argmax(1) == y).mean()) for m in ("small-cnn", "mobilenet")}
    ensemble = float((label == y).mean())
    assert np.array_equal(label, avg["label"])  # argmax model and softmax_average pick the same class
    assert min(acc.values()) >= 0.85 and ensemble >= 0.9, (acc, ensemble)
    assert ensemble >= max(acc.values()) - 0.03, (acc, ensemble)  # a small set: allow one or two crops of noise


def test_the_model_card_reports_each_member_and_the_ensemble():
    card = json.loads((DEMO / "model_card.json").read_text())
    res = card["held_out"]
    assert res["crops"] == card["crops"]["test"] > 1000
    best = max(r["accuracy"] for r in res["members"].values())
    assert set(res["members"]) == {"small-cnn", "mobilenet"}
    assert res["ensemble_argmax"]["accuracy"] >= best  # the acceptance: at least the best member
