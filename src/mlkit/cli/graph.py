"""``mlkit graph``: check, run and deploy model ensembles (pipelines of models).

- ``validate CONFIG``: load the models and check every pipeline; print their inputs, outputs and levels
- ``run CONFIG PIPELINE IMAGE...``: run a pipeline in this process on image files (one JSON line each)
- ``manifest CONFIG --storage-uri URI --out DIR``: KServe InferenceGraph + InferenceServices
- ``train-demo --data DIR --out DIR``: train the two demo classifiers, export them with the argmax model

Serve a config with ``mlkit serve --graph-config CONFIG`` (pipelines next to the models).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from mlkit.cli.tools import friendly


@click.group("graph")
def graph() -> None:
    """Model ensembles: a DAG of models served in one server, or compiled to a KServe InferenceGraph."""


@graph.command("validate")
@click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the pipelines as JSON.")
@friendly
def validate_cmd(config, as_json) -> None:
    """Load CONFIG's models and check its pipelines (exit code 2 with the first problem)."""
    from mlkit.serving.graph.loading import Graph
    from mlkit.serving.graph.pipeline import describe

    with Graph.load(config) as g:
        info = [describe(pm.pipeline) for pm in g.pipelines.values()]
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    for p in info:
        ins = ", ".join(f"{i['name']} {i['datatype']} {i['shape']}" for i in p["inputs"])
        outs = ", ".join(f"{o['name']} {o['datatype']} {o['shape']}" for o in p["outputs"])
        click.echo(f"pipeline {p['name']}: inputs {ins} -> outputs {outs}")
        for lv, names in enumerate(p["levels"]):
            click.echo(f"  level {lv}: {', '.join(names)}" + ("  (in parallel)" if len(names) > 1 else ""))
    click.echo(f"{config}: {len(info)} pipeline(s) valid")


@graph.command("run")
@click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("pipeline")
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--input", "input_name", default=None, help="Pipeline input that takes the images [its only input].")
@friendly
def run_cmd(config, pipeline, images, input_name) -> None:
    """Run PIPELINE of CONFIG on image files in this process; prints one JSON line per image."""
    from mlkit.data.dataset import read_rgb
    from mlkit.errors import MlkitError
    from mlkit.serving.graph.loading import Graph

    with Graph.load(config) as g:
        p = g.pipeline(pipeline).pipeline
        name = input_name or (next(iter(p.inputs)) if len(p.inputs) == 1 else None)
        if name is None or name not in p.inputs:
            raise MlkitError(f"pipeline {pipeline!r} has inputs {list(p.inputs)}: choose one with --input")
        out = g.run(pipeline, **{name: [read_rgb(path) for path in images]})
    for i, path in enumerate(images):
        click.echo(json.dumps({"image": str(path), **{k: v[i].tolist() for k, v in out.items()}}))


@graph.command("manifest")
@click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--storage-uri", required=True, metavar="URI",
              help="Where the folder of CONFIG (config.json + model folders) is uploaded (s3://, gs://, pvc://...).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write one YAML file per pipeline here [default: print to stdout].")
@click.option("--pipeline", "only", default=None, help="Only this pipeline [default: all].")
@click.option("--namespace", default="kubeflow", show_default=True)
@click.option("--image", default=None, metavar="IMAGE", help="Serving image [default: mlkit's image].")
@click.option("--cpu", default="1", show_default=True)
@click.option("--memory", default="1Gi", show_default=True)
@friendly
def manifest_cmd(config, storage_uri, out_dir, only, namespace, image, cpu, memory) -> None:
    """Compile CONFIG's pipelines into KServe InferenceGraphs plus one InferenceService per node.

    Apply with `kubectl apply -f DIR`. See docs/ensembles.md for what differs from in-server runs.
    """
    from mlkit.serving.graph.manifest import compile_config, write_manifests
    from mlkit.serving.manifests import DEFAULT_IMAGE, to_yaml

    compiled = compile_config(config, storage_uri, namespace=namespace, image=image or DEFAULT_IMAGE, cpu=cpu,
                              memory=memory, only=only)
    if out_dir is None:
        click.echo(to_yaml(*[o for objs in compiled.values() for o in objs]), nl=False)
        return
    for path in write_manifests(compiled, out_dir):
        click.echo(f"wrote {path}")


@graph.command("train-demo")
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Detection dataset folder with train/val/test splits (mlkit data generate).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("models/ensemble"),
              show_default=True)
@click.option("--train-images", type=click.IntRange(min=1), default=900, show_default=True,
              help="Training-split images to cut crops from (about 5 crops each).")
@click.option("--val-images", type=click.IntRange(min=1), default=150, show_default=True)
@click.option("--test-images", type=click.IntRange(min=1), default=None, help="Test-split images [default: all].")
@click.option("--epochs", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--crop-size", type=click.IntRange(16, 256), default=64, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@friendly
def train_demo_cmd(data, out_dir, train_images, val_images, test_images, epochs, crop_size, seed) -> None:
    """Train two crop classifiers (small CNN, MobileNetV2-0.35), export them with the argmax model and a
    seed-shaped config.json, and report held-out accuracy of each member and of the ensembles."""
    from mlkit.serving.graph.demo import accuracy_table, train_demo

    card = train_demo(data, out_dir, train_images=train_images, val_images=val_images, test_images=test_images,
                      epochs=epochs, crop_size=crop_size, seed=seed, echo=click.echo)
    click.echo(accuracy_table(card))
    click.echo(f"wrote {out_dir}/config.json and {out_dir}/model_card.json; serve with: "
               f"mlkit serve --graph-config {out_dir}/config.json")
