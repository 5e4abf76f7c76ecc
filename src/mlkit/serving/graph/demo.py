"""The ensemble demo: two helmet-crop classifiers of different architectures + the argmax combiner.

Mirrors OpenVINO's googlenet + resnet + argmax example with mlkit models trained on crops of the
synthetic helmet data. ``train_demo`` writes a folder that is at once a model repository and a
pipeline config:

```
<out>/config.json              model_config_list + pipeline_config_list (seed-shaped)
<out>/small-cnn/1/             model.tflite + metadata.json  (plain conv net)
<out>/mobilenet/1/             model.tflite + metadata.json  (MobileNetV2, width 0.35)
<out>/argmax/1/                model.tflite + metadata.json  (sum of probabilities -> argmax)
<out>/model_card.json          crops, training, held-out accuracy of each member and of the ensembles
```

Two pipelines: ``helmet_ensemble`` (the seed's shape: both classifiers in parallel, then the argmax
model) and ``helmet_ensemble_average`` (the same branches into the ``softmax_average`` custom node,
also returning each member's probabilities).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mlkit.data.atomic import atomic_write_text
from mlkit.errors import MlkitError

log = logging.getLogger(__name__)

MEMBERS = {"small-cnn": "small_cnn", "mobilenet": "mobilenet_v2"}  # model name -> architecture
PIPELINE = "helmet_ensemble"
AVERAGE_PIPELINE = "helmet_ensemble_average"


def _src(node: str, item: str) -> dict:
    return {"node_name": node, "data_item": item}


def demo_config() -> dict:
    """The seed-shaped config.json of the demo folder (relative base paths)."""
    members = list(MEMBERS)
    branch = [{"name": f"{m.replace('-', '_')}_node", "model_name": m, "type": "DL model",
               "inputs": [{"image": _src("request", "image")}],
               "outputs": [{"data_item": "probabilities", "alias": "probability"}]} for m in members]
    n1, n2 = branch[0]["name"], branch[1]["name"]
    return {
        "model_config_list": [{"config": {"name": m, "base_path": m}} for m in [*members, "argmax"]],
        "pipeline_config_list": [
            {"name": PIPELINE, "inputs": ["image"], "nodes": [*branch, {
                "name": "argmax_node", "model_name": "argmax", "type": "DL model",
                "inputs": [{"input1": _src(n1, "probability")}, {"input2": _src(n2, "probability")}],
                "outputs": [{"data_item": "label", "alias": "most_probable_label"}]}],
             "outputs": [{"label": _src("argmax_node", "most_probable_label")}]},
            {"name": AVERAGE_PIPELINE, "inputs": ["image"], "nodes": [*branch, {
                "name": "average_node", "type": "custom", "library_name": "softmax_average",
                "inputs": [{n1: _src(n1, "probability")}, {n2: _src(n2, "probability")}],
                "outputs": [{"data_item": "label", "alias": "label"},
                            {"data_item": "probabilities", "alias": "probabilities"}]}],
             "outputs": [{"label": _src("average_node", "label")},
                         {"probabilities": _src("average_node", "probabilities")},
                         *({f"{m}_probabilities": _src(b["name"], "probability")} for m, b in zip(members, branch,
                                                                                                  strict=True))]},
        ],
    }


def evaluate_graph(config: str | Path, crops: np.ndarray, labels: np.ndarray, chunk: int = 64) -> dict:
    """Held-out accuracy of each member and of both ensembles, all computed through the pipelines."""
    from mlkit.models.classifier import CLASSES, per_class_accuracy
    from mlkit.serving.graph.loading import Graph

    members = {m: [] for m in MEMBERS}
    argmax, average = [], []
    t0 = time.perf_counter()
    with Graph.load(config) as graph:
        for i in range(0, len(crops), chunk):
            images = list(crops[i:i + chunk])
            avg = graph.run(AVERAGE_PIPELINE, image=images)
            average.append(avg["label"])
            for m in MEMBERS:
                members[m].append(avg[f"{m}_probabilities"].argmax(axis=1))
            argmax.append(graph.run(PIPELINE, image=images)["label"])
    seconds = time.perf_counter() - t0

    def row(pred: list[np.ndarray]) -> dict:
        p = np.concatenate(pred)
        return {"accuracy": round(float((p == labels).mean()), 4), "per_class": per_class_accuracy(p, labels, CLASSES)}

    return {"crops": int(len(labels)), "class_counts": {c: int((labels == i).sum()) for i, c in enumerate(CLASSES)},
            "members": {m: row(p) for m, p in members.items()},
            "ensemble_argmax": row(argmax), "ensemble_softmax_average": row(average),
            "seconds_both_pipelines": round(seconds, 1)}


def train_demo(data: str | Path, out: str | Path, *, train_images: int = 900, val_images: int = 150,
               test_images: int | None = None, epochs: int = 5, crop_size: int = 64, seed: int = 0,
               show_progress: bool = True, echo: Callable[[str], None] = log.info) -> dict:
    """Cut crops, train both members, export them and the argmax model, write config.json and the model card."""
    from mlkit.data.layout import load_split
    from mlkit.models.card import write_card
    from mlkit.models.classifier import (
        CLASSES,
        ClassifierTrainConfig,
        CropSpec,
        export_argmax_sum,
        export_classifier,
        extract_crops,
        train_classifier,
    )

    data, out = Path(data), Path(out)
    spec = CropSpec(size=crop_size, seed=seed)
    t0 = time.time()
    splits = {}
    for split, limit in (("train", train_images), ("val", val_images), ("test", test_images)):
        ds = load_split(data, split)
        splits[split] = extract_crops(ds, spec, max_images=limit, show_progress=show_progress)
        echo(f"{split}: {len(splits[split][1])} crops from {min(len(ds), limit or len(ds))} images")
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = splits["train"], splits["val"], splits["test"]
    if len(np.unique(y_tr)) != len(CLASSES):
        raise MlkitError(f"the training crops miss some classes: counts {np.bincount(y_tr, minlength=3).tolist()}")
    out.mkdir(parents=True, exist_ok=True)
    training = {}
    for name, arch in MEMBERS.items():
        echo(f"training {name} ({arch}) on {len(y_tr)} crops, {epochs} epochs")
        model, summary = train_classifier(arch, x_tr, y_tr, x_va, y_va,
                                          ClassifierTrainConfig(epochs=epochs, seed=seed), show_progress)
        export_classifier(model, out / name / "1", name=name, extra={"architecture": arch})
        summary["tflite_mb"] = round((out / name / "1" / "model.tflite").stat().st_size / 1e6, 3)
        training[name] = summary
    export_argmax_sum(out / "argmax" / "1", len(CLASSES), input_names=("input1", "input2"), output_name="label")
    atomic_write_text(out / "config.json", json.dumps(demo_config(), indent=2))
    echo(f"evaluating on {len(y_te)} held-out crops (test split) through the pipelines")
    results = evaluate_graph(out / "config.json", x_te, y_te)
    from mlkit.data.layout import read_manifest

    command = (f"mlkit graph train-demo --data {data} --out {out} --train-images {train_images} --val-images "
               f"{val_images}" + (f" --test-images {test_images}" if test_images else "") +
               f" --epochs {epochs} --crop-size {crop_size} --seed {seed}")
    card = write_card(out, kind="model ensemble (helmet crop classifiers)", dataset=str(data),
                      dataset_generator=read_manifest(data).get("generator"), command=command, classes=list(CLASSES),
                      crops={"size": crop_size, "context": spec.context, "train": int(len(y_tr)),
                             "val": int(len(y_va)), "test": int(len(y_te)),
                             "train_images": train_images, "val_images": val_images,
                             "test_images": test_images or "all"},
                      training=training, held_out=results, total_seconds=round(time.time() - t0, 1))
    return json.loads(Path(card).read_text())


def accuracy_table(card: dict) -> str:
    res = card["held_out"]
    rows = [(m, r["accuracy"]) for m, r in res["members"].items()]
    rows += [("ensemble (argmax model)", res["ensemble_argmax"]["accuracy"]),
             ("ensemble (softmax_average)", res["ensemble_softmax_average"]["accuracy"])]
    width = max(len(r[0]) for r in rows)
    lines = [f"{'model':<{width}}  accuracy  (held-out crops: {res['crops']})", "-" * (width + 36)]
    lines += [f"{name:<{width}}  {acc:8.4f}" for name, acc in rows]
    return "\n".join(lines)
