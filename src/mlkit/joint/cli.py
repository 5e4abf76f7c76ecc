"""``mlkit joint``: run a JointInferenceService, or evaluate joint inference on a labelled dataset."""

from __future__ import annotations

import json
from pathlib import Path

import click

from mlkit.clitools import friendly


@click.group()
def joint() -> None:
    """Joint inference: the little model at the edge, hard frames to the big model in the cloud."""


@joint.command("run")
@click.option("--config", "config_path", type=click.Path(path_type=Path), required=True,
              help="JointInferenceService YAML (see `mlkit joint example-config`).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@friendly
def run_cmd(config_path: Path, no_progress: bool) -> None:
    """Run the edge worker on the config's video source until it ends; print the statistics."""
    from mlkit.joint.service import format_stats, run_service
    from mlkit.joint.spec import load_service

    service = load_service(config_path)
    summary = run_service(service, echo=click.echo, progress=not no_progress)
    click.echo(f"source: {summary.source_end}")
    click.echo(format_stats(summary.stats))
    if summary.results is not None:
        click.echo(f"results: {summary.results}")


EXAMPLE = """\
apiVersion: mlkit.io/v1
kind: JointInferenceService
metadata:
  name: helmet-detection-inference-example
spec:
  edgeWorker:
    model: {name: little, url: models/little/tflite/int8}
    hardExampleMining:
      name: IBT
      parameters:
        - {key: threshold_img, value: "0.9"}
        - {key: threshold_box, value: "0.9"}
    workerSpec:
      parameters:
        - {key: video_url, value: data/helmet.avi}
        - {key: all_examples_inference_output, value: joint-output/all_examples_inference_output}
        - {key: hard_example_edge_inference_output, value: joint-output/hard_example_edge_inference_output}
        - {key: hard_example_cloud_inference_output, value: joint-output/hard_example_cloud_inference_output}
        - {key: hard_example_store, value: joint-output/hard_examples}
        - {key: results, value: joint-output/results.jsonl}
        - {key: stats, value: joint-output/stats.json}
  cloudWorker:
    model: {name: big}
    workerSpec:
      parameters:
        - {key: endpoint, value: "http://127.0.0.1:8080"}
        - {key: timeout_ms, value: "2000"}
        - {key: max_in_flight, value: "8"}
"""


@joint.command("example-config")
def example_config() -> None:
    """Print a JointInferenceService YAML to start from."""
    click.echo(EXAMPLE, nl=False)


@joint.command("evaluate")
@click.option("--data", "data_root", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Labelled dataset folder (dataset.json with splits).")
@click.option("--edge-model", type=click.Path(exists=True, path_type=Path), required=True,
              help="Little model: .tflite or a folder with model.tflite.")
@click.option("--cloud-model", type=click.Path(exists=True, path_type=Path), default=None,
              help="Big model run locally (.tflite or folder); or use --cloud-endpoint.")
@click.option("--cloud-endpoint", default=None, help="http://host:port of a server serving the big model.")
@click.option("--cloud-name", default="big", show_default=True, help="Served model name at --cloud-endpoint.")
@click.option("--split", default="test", show_default=True, help="Split to report on.")
@click.option("--tune-split", default="val", show_default=True,
              help="Split on which thresholds are chosen ('none' to choose on --split itself).")
@click.option("--budget", type=click.FloatRange(0, 1, min_open=True), default=0.3, show_default=True,
              help="Largest upload ratio a chosen threshold may have.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use only the first N images per split.")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Writes joint_evaluation.json and sweep.png here.")
@friendly
def evaluate_cmd(data_root, edge_model, cloud_model, cloud_endpoint, cloud_name, split, tune_split, budget, limit,
                 threads, out_dir) -> None:
    """mAP@0.5 of edge-only, cloud-only and joint; sweep every filter's threshold; plot mAP vs upload ratio."""
    from mlkit.data.atomic import atomic_write_text
    from mlkit.joint.evaluate import evaluate_joint, plot_sweep, predict_dataset
    from mlkit.models.predict import open_detector

    if (cloud_model is None) == (cloud_endpoint is None):
        raise click.UsageError("give exactly one of --cloud-model and --cloud-endpoint")
    edge = open_detector(edge_model, num_threads=threads)
    if cloud_model is not None:
        big = open_detector(cloud_model, num_threads=threads)

        def cloud_predict(ims):
            return big.predict(ims, score_threshold=0.05)
    else:
        from mlkit.client.http import ServingClient

        client = ServingClient(cloud_endpoint, cloud_name)
        client.wait_ready(30)

        def cloud_predict(ims):
            return client.predict(ims, score_threshold=0.05)

    def edge_predict(ims):
        return edge.predict(ims, score_threshold=0.05)

    def load(name):
        from mlkit.data.layout import load_split

        ds = load_split(data_root, name)
        return ds.subset(range(min(limit, len(ds)))) if limit else ds

    test = load(split)
    kw = {}
    if tune_split != "none":
        tune = load(tune_split)
        kw = {"tune": tune, "edge_tune": predict_dataset(tune, edge_predict, f"edge {tune_split}"),
              "cloud_tune": predict_dataset(tune, cloud_predict, f"cloud {tune_split}")}
    result = evaluate_joint(test, predict_dataset(test, edge_predict, f"edge {split}"),
                            predict_dataset(test, cloud_predict, f"cloud {split}"), upload_budget=budget, **kw)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "joint_evaluation.json", json.dumps(result.to_dict(), indent=2) + "\n")
    plot_sweep(result, out_dir / "sweep.png")
    click.echo(result.table())
    click.echo(f"wrote {out_dir / 'joint_evaluation.json'} and {out_dir / 'sweep.png'}")
