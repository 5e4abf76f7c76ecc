"""Helpers shared by the ensemble tests (a module with a unique name: test folders are not packages)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SIZE = 32  # the tiny classifiers' input side


def copy_version(src: Path, dest: Path, **meta) -> Path:
    """Copy a version folder, overriding metadata.json fields."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src / "model.tflite", dest / "model.tflite")
    data = {**json.loads((src / "metadata.json").read_text()), **meta}
    (dest / "metadata.json").write_text(json.dumps(data))
    return dest


def src(node: str, item: str) -> dict:
    return {"node_name": node, "data_item": item}


def ensemble_config() -> dict:
    """Two classifiers in parallel into the argmax model (the seed's shape), plus custom-node pipelines."""
    branches = [{"name": f"{m}_node", "model_name": m, "inputs": [{"image": src("request", "image")}],
                 "outputs": [{"data_item": "probabilities", "alias": "probability"}]} for m in ("cls-a", "cls-b")]
    x = {"name": "x", "datatype": "FP32", "shape": [-1, 3]}
    return {
        "model_config_list": [{"config": {"name": m, "base_path": m}} for m in ("cls-a", "cls-b", "argmax")],
        "custom_node_library_config_list": [{"name": "explode_if_negative", "base_path": "nodes.py:explode"},
                                            {"name": "reject_if_negative", "base_path": "nodes.py:reject"}],
        "pipeline_config_list": [
            {"name": "ensemble", "inputs": ["image"], "nodes": [*branches, {
                "name": "argmax_node", "model_name": "argmax", "type": "DL model",
                "inputs": [{"input1": src("cls-a_node", "probability")}, {"input2": src("cls-b_node", "probability")}],
                "outputs": [{"data_item": "label", "alias": "most_probable_label"}]}],
             "outputs": [{"label": src("argmax_node", "most_probable_label")}]},
            {"name": "average", "inputs": ["image"], "nodes": [*branches, {
                "name": "avg", "type": "custom", "library_name": "softmax_average",
                "inputs": [{"a": src("cls-a_node", "probability")}, {"b": src("cls-b_node", "probability")}],
                "outputs": [{"data_item": "probabilities", "alias": "p"}, {"data_item": "label", "alias": "l"}]}],
             "outputs": [{"probabilities": src("avg", "p")}, {"label": src("avg", "l")},
                         {"a": src("cls-a_node", "probability")}, {"b": src("cls-b_node", "probability")}]},
            {"name": "guarded", "inputs": [x], "nodes": [
                {"name": "guard_node", "type": "custom", "library_name": "explode_if_negative",
                 "inputs": [{"x": src("request", "x")}], "outputs": [{"data_item": "y", "alias": "y"}]}],
             "outputs": [{"y": src("guard_node", "y")}]},
            {"name": "checked", "inputs": [x], "nodes": [
                {"name": "check_node", "type": "custom", "library_name": "reject_if_negative",
                 "inputs": [{"x": src("request", "x")}], "outputs": [{"data_item": "y", "alias": "y"}]}],
             "outputs": [{"y": src("check_node", "y")}]},
        ],
    }
