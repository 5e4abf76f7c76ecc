"""``mlkit joint``: run a JointInferenceService, or evaluate joint inference on a labelled dataset or a video."""

from __future__ import annotations

from pathlib import Path

import click

from mlkit.cli.tools import friendly
from mlkit.joint.evaluate import VIDEO_FILTERS
from mlkit.joint.reference import DEFAULT_REFERENCE_SCORE, REFERENCES
from mlkit.joint.reuse import REUSE_RULES

VIDEO_FILTER_NAMES = tuple(dict.fromkeys(f["method"] for f in VIDEO_FILTERS))


@click.group()
def joint() -> None:
    """Joint inference: the little model at the edge, hard frames to the big model in the cloud."""


@joint.command("run")
@click.argument("spec_path", metavar="SERVICE.yaml", type=click.Path(path_type=Path), required=False)
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None, hidden=True,
              help="Deprecated spelling of the SERVICE.yaml argument.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@friendly
def run_cmd(spec_path: Path | None, config_path: Path | None, no_progress: bool) -> None:
    """Run the edge worker of SERVICE.yaml (a JointInferenceService, see `mlkit joint example-config`) on its video
    source until it ends; print the statistics. The spec is an argument, as in `mlkit incremental run JOB.yaml`."""
    from mlkit.joint.service import format_stats, run_service
    from mlkit.joint.spec import load_service

    if config_path is not None:
        if spec_path is not None:
            raise click.UsageError("give the spec once: `mlkit joint run SERVICE.yaml` (--config is its old spelling)")
        click.echo("warning: `--config FILE` is deprecated and will be removed in the next release; use "
                   "`mlkit joint run FILE`", err=True)
        spec_path = config_path
    if spec_path is None:
        raise click.UsageError("Missing argument 'SERVICE.yaml' (a JointInferenceService; `mlkit joint "
                               "example-config` prints one)")
    service = load_service(spec_path)
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
        # On video: frames not uploaded take the last cloud answer, carried along the optical flow (with Keyframe
        # mining at keyframe_ratio 0.15, 97.5 % of cloud-only mAP on held-out clips; results: docs/results.md).
        # - {key: reuse, value: track}
        # Audits: a few easy frames uploaded anyway; an alarm when the edge stops agreeing with the cloud.
        # - {key: audit_share, value: "0.02"}
        # Offline queue: hard frames the cloud did not answer wait on disk and get a late answer when it is back.
        # - {key: queue_dir, value: joint-output/queue}
        # - {key: queue_max_mb, value: "512"}
  cloudWorker:
    model: {name: big}
    workerSpec:
      parameters:
        - {key: endpoint, value: "http://127.0.0.1:8080"}
        - {key: timeout_ms, value: "2000"}
        - {key: max_in_flight, value: "16"}           # frames out at once (at least twice upload_batch)
        - {key: upload_max_shape, value: "352,448"}   # the big model's input (HEIGHT,WIDTH)
        - {key: upload_batch, value: "8"}             # hard frames arriving within upload_wait_ms share a request:
        - {key: upload_wait_ms, value: "80"}          # less edge CPU per frame, cloud answers up to 80 ms later
        # A cloud server started with --auth-token-file: the file holding the same token.
        # - {key: auth_token_file, value: /etc/mlkit/auth/token}
"""


@joint.command("example-config")
def example_config() -> None:
    """Print a JointInferenceService YAML to start from."""
    click.echo(EXAMPLE, nl=False)


@joint.command("evaluate")
@click.option("--data", "data_root", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Labelled dataset folder (dataset.json with splits); or use --video.")
@click.option("--video", "videos", type=click.Path(exists=True, dir_okay=False, path_type=Path), multiple=True,
              help="Video to report on; repeatable. A labelled clip (from `mlkit data video`, labels next to it) is "
                   "scored against its labels, a real video without labels against the cloud's answers "
                   "(see --reference).")
@click.option("--reference", type=click.Choice(REFERENCES), default="auto", show_default=True,
              help="With --video: the labels next to each video, or the cloud's own boxes (scoring >= "
                   "--reference-score, on the classes both models name alike: cloud only scores 1.0 and the rest is "
                   "agreement with the cloud); auto: labels when there are, else the cloud.")
@click.option("--reference-score", type=click.FloatRange(0, 1, min_open=True), default=None,
              help=f"With the cloud as reference: its boxes scoring at least this are the labels.  "
                   f"[default: {DEFAULT_REFERENCE_SCORE}]")
@click.option("--per-video", is_flag=True,
              help="With --video: report each video on its own (a report under --out/VIDEO_NAME each, and the "
                   "videos side by side in --out/videos.png).")
@click.option("--every", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --video: use every N-th frame.")
@click.option("--max-frames", type=click.IntRange(min=1), default=None,
              help="With --video: use at most N frames of each video.  [default: all]")
@click.option("--tune-video", "tune_videos", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              multiple=True, help="With --video: clip on which thresholds are chosen; repeatable.")
@click.option("--reuse", "reuse_rules", type=click.Choice(REUSE_RULES), multiple=True,
              help="With --video: how a frame that was not uploaded uses nearby cloud answers (as `reuse` in the "
                   "joint service spec); repeat it to compare rules on the same predictions (a report per rule under "
                   "--out/RULE and reuse.png).  [default: none]")
@click.option("--filter", "filter_names", type=click.Choice(VIDEO_FILTER_NAMES), multiple=True,
              help="Sweep only this filter (repeatable; the tracking rules make each sweep point cost a pass of "
                   "optical flow over every frame).  [default: all]")
@click.option("--reuse-frames", type=click.IntRange(min=1), default=8, show_default=True,
              help="With --video: how many frames away an answer may serve.")
@click.option("--edge-model", type=click.Path(exists=True, path_type=Path), required=True,
              help="Little model: .tflite or a folder with model.tflite.")
@click.option("--cloud-model", type=click.Path(exists=True, path_type=Path), default=None,
              help="Big model run locally (.tflite or folder); or use --cloud-endpoint.")
@click.option("--cloud-endpoint", default=None, help="http://host:port of a server serving the big model.")
@click.option("--cloud-name", default="big", show_default=True, help="Served model name at --cloud-endpoint.")
@click.option("--cloud-classes", default=None,
              help="With --cloud-endpoint and the cloud as reference: the served model's class names, comma-separated."
                   "  [default: the edge model's]")
@click.option("--auth-token-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --cloud-endpoint: file holding the server's bearer token (a server started with "
                   "--auth-token-file).  [default: $MLKIT_AUTH_TOKEN_FILE, else none]")
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
def evaluate_cmd(data_root, videos, reference, reference_score, per_video, every, max_frames, tune_videos,
                 reuse_rules, filter_names, reuse_frames, edge_model, cloud_model, cloud_endpoint, cloud_name,
                 cloud_classes, auth_token_file, split, tune_split, budget, limit, threads, out_dir) -> None:
    """mAP@0.5 of edge-only, cloud-only and joint; sweep every filter's threshold; plot mAP vs upload ratio.

    On a dataset (--data), on labelled video clips (--video, with --tune-video and --reuse), or on real videos
    without labels, scored as agreement with the cloud (--video, --reference cloud).
    """
    from mlkit.joint.evaluate import (
        DEFAULT_FILTERS,
        VIDEO_FILTERS,
        evaluate_on_dataset,
        evaluate_reuse_rules,
        plot_reuse_rules,
        write_report,
    )
    from mlkit.serving.auth import read_token_file, token_file_option

    if (cloud_model is None) == (cloud_endpoint is None):
        raise click.UsageError("give exactly one of --cloud-model and --cloud-endpoint")
    if (data_root is None) == (not videos):
        raise click.UsageError("give either --data (a dataset folder) or --video (clips or real videos), not both")
    if not videos and (tune_videos or reuse_rules):
        raise click.UsageError("--tune-video and --reuse need --video: the images of a dataset are not a sequence")
    video_only = {"--reference": reference != "auto", "--reference-score": reference_score is not None,
                  "--per-video": per_video, "--every": every != 1, "--max-frames": max_frames is not None}
    if not videos and any(video_only.values()):
        raise click.UsageError(f"{', '.join(k for k, v in video_only.items() if v)} need --video")
    if cloud_classes is not None and cloud_endpoint is None:
        raise click.UsageError("--cloud-classes is for --cloud-endpoint; a local --cloud-model names its classes")
    rules = tuple(dict.fromkeys(reuse_rules)) or ("none",)
    if per_video and len(rules) > 1:
        raise click.UsageError("--per-video takes one --reuse rule; compare rules on one video at a time")
    filters = [f for f in (VIDEO_FILTERS if videos else DEFAULT_FILTERS)
               if not filter_names or f["method"] in filter_names]
    if not filters:
        raise click.UsageError(f"--filter {', '.join(filter_names)}: Keyframe needs --video; give another filter")
    token_file = token_file_option(auth_token_file) if cloud_endpoint is not None else None
    token = None if token_file is None else read_token_file(token_file)
    if videos:
        classes = None if cloud_classes is None else [c.strip() for c in cloud_classes.split(",") if c.strip()]
        if classes == []:
            raise click.UsageError("--cloud-classes: give the served model's class names, e.g. person,car")
        kw = {"tune_videos": tune_videos, "cloud_model": cloud_model, "cloud_endpoint": cloud_endpoint,
              "cloud_name": cloud_name, "reuse_frames": reuse_frames, "upload_budget": budget,
              "num_threads": threads, "cloud_token": token, "filters": filters, "reference": reference,
              "reference_score": reference_score, "every": every, "max_frames": max_frames,
              "cloud_classes": classes}
        if per_video:
            _per_video(videos, edge_model, rules[0], out_dir, kw)
            return
        results = evaluate_reuse_rules(videos, edge_model, rules=rules, **kw)
    else:
        results = [evaluate_on_dataset(data_root, edge_model, cloud_model=cloud_model, cloud_endpoint=cloud_endpoint,
                                       cloud_name=cloud_name, split=split,
                                       tune_split=None if tune_split == "none" else tune_split, upload_budget=budget,
                                       limit=limit, num_threads=threads, cloud_token=token, filters=filters)]
    for rule, result in zip(rules, results, strict=True):
        js, png = write_report(result, out_dir if len(results) == 1 else out_dir / rule)
        _echo(result)
        click.echo(f"wrote {js} and {png}")
    if len(results) > 1:
        first = next((f["method"] for f in filters if f["method"] == "Keyframe"), filters[0]["method"])
        path = out_dir / "reuse.png"
        plot_reuse_rules(results, first, path)
        click.echo(f"wrote {path} ({first} under each rule)")


def _echo(result) -> None:
    click.echo(result.table())
    if result.reference == "cloud":  # the whole curve: there is no true mAP to tune for, only agreement
        click.echo(result.sweep_table())


def _per_video(videos, edge_model, rule: str, out_dir: Path, kw: dict) -> None:
    """A report per video under ``out_dir/<name>`` and the videos side by side in ``out_dir/videos.png``."""
    from mlkit.joint.evaluate import evaluate_each_video, plot_videos, write_report

    folders = [v.stem if [w.stem for w in videos].count(v.stem) == 1 else f"{v.stem}-{i}"
               for i, v in enumerate(videos)]
    results = evaluate_each_video(videos, edge_model, reuse=rule, **kw)
    for folder, video, result in zip(folders, videos, results, strict=True):
        js, png = write_report(result, out_dir / folder)
        click.echo(f"== {video}")
        _echo(result)
        click.echo(f"wrote {js} and {png}")
    path = out_dir / "videos.png"
    plot_videos(results, [v.name for v in videos], path)
    click.echo(f"wrote {path} (the videos side by side)")
