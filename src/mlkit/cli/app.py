"""The ``mlkit`` command line. One entry point, a subcommand group per scenario.

User errors (``MlkitError``) print a one-line message and exit 2, never a traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from mlkit.cli.tools import CONTEXT_SETTINGS, PROFILE_NAMES, friendly


@click.group(context_settings=CONTEXT_SETTINGS)
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
@click.version_option(package_name="mlkit")
def main(verbose: int) -> None:
    """mlkit: edge-cloud computer vision on Kubeflow, from a notebook or this command line."""
    # TensorFlow's C++ INFO/WARNING lines drown the output; child processes (kfp.local tasks) inherit this.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


@main.group()
def data() -> None:
    """Generate, convert and download datasets."""


@data.command("generate")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write (dataset.json + one folder per split).")
@click.option("--profile", type=click.Choice(PROFILE_NAMES), default=None,
              help="Use a profile's sizes and seed; explicit options override it.")
@click.option("--train", type=click.IntRange(min=0), default=None, help="Training images.")
@click.option("--val", type=click.IntRange(min=0), default=None, help="Validation images.")
@click.option("--test", type=click.IntRange(min=0), default=None, help="Test images.")
@click.option("--seed", type=int, default=None, help="Random seed; the same seed gives the same images.")
@click.option("--sites", default=None, help="Comma-separated sites to draw, e.g. A,B.")
@click.option("--format", "fmt", type=click.Choice(["coco", "yolo", "voc"]), default=None)
@friendly
def data_generate(out_dir, profile, train, val, test, seed, sites, fmt) -> None:
    """Generate synthetic construction-site scenes with helmet labels."""
    import dataclasses

    from mlkit.data.synthetic.generate import SyntheticSpec, generate_dataset
    from mlkit.profiles import get_profile

    spec = get_profile(profile).data if profile else SyntheticSpec()
    over = {k: v for k, v in dict(train=train, val=val, test=test, seed=seed, fmt=fmt).items() if v is not None}
    if sites:
        over["sites"] = tuple(s.strip() for s in sites.split(",") if s.strip())
    spec = dataclasses.replace(spec, **over)
    generate_dataset(out_dir, spec)
    click.echo(f"wrote {spec.train + spec.val + spec.test} images to {out_dir}")


@data.command("convert")
@click.argument("src", type=click.Path(exists=True, path_type=Path))
@click.argument("dst", type=click.Path(path_type=Path))
@click.option("--to", "dst_fmt", type=click.Choice(["coco", "yolo", "voc"]), required=True, help="Output format.")
@click.option("--from", "src_fmt", type=click.Choice(["auto", "coco", "yolo", "voc"]), default="auto",
              show_default=True)
@friendly
def data_convert(src, dst, dst_fmt, src_fmt) -> None:
    """Convert a dataset between COCO JSON, YOLO txt (data.txt index) and Pascal VOC XML."""
    from mlkit.data.formats import convert, read_dataset

    out = convert(src, dst, src_fmt=src_fmt, dst_fmt=dst_fmt)
    ds = read_dataset(out, dst_fmt)
    click.echo(f"wrote {len(ds)} images, {ds.num_boxes} boxes as {dst_fmt} to {out}")


@data.command("download")
@click.argument("uri")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--format", "fmt", type=click.Choice(["auto", "coco", "yolo", "voc"]), default="auto",
              show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the train/val/test split.")
@friendly
def data_download(uri, out_dir, fmt, seed) -> None:
    """Download a dataset (local path, file://, s3://, https://) into an mlkit dataset folder.

    A bucket laid out like the Kubeflow seed (cfg/, datasets/, pretrained weights/) is
    recognised and its datasets/ folder imported. S3 credentials come from the
    environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY; AWS_ENDPOINT_URL for MinIO).
    """
    import tempfile

    from mlkit.data.layout import import_dataset
    from mlkit.data.storage import download, download_bucket_layout, parse_uri
    from mlkit.errors import paths_named_as

    parse_uri(uri)  # fail fast on an unknown scheme
    with tempfile.TemporaryDirectory() as tmp:
        local = download(uri, tmp)
        src = local
        if local.is_dir() and (local / "datasets").is_dir():
            src = download_bucket_layout(uri, Path(tmp) / "layout").datasets_dir
        with paths_named_as({str(src): uri.rstrip("/") + ("/datasets" if src != local else ""), str(tmp): uri}):
            import_dataset(src, out_dir, fmt=fmt, seed=seed)
    click.echo(f"dataset ready in {out_dir}")


@data.command("video")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Video file to write (.avi for MJPG, .mp4 for mp4v); labels go next to it.")
@click.option("--frames", type=click.IntRange(min=1), default=300, show_default=True)
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=15.0, show_default=True)
@click.option("--site", type=click.Choice(["A", "B", "C"]), default="A", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=6, show_default=True, help="Workers in view at most.")
@friendly
def data_video(out_path, frames, fps, site, seed, workers) -> None:
    """Render a synthetic video of moving workers with labels for every frame."""
    from mlkit.data.synthetic.video import VideoSpec, labels_path_for, render_video

    codec = "mp4v" if out_path.suffix.lower() == ".mp4" else "MJPG"
    labels = render_video(out_path, VideoSpec(frames=frames, fps=fps, site=site, seed=seed, workers=workers,
                                              codec=codec))
    click.echo(f"wrote {len(labels)} frames to {out_path} and labels to {labels_path_for(out_path)}")


@data.command("frames")
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", "store", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Frame store to write (a .jpg and a .json sidecar per frame), for `mlkit label auto --store`.")
@click.option("--every", type=click.IntRange(min=1), default=1, show_default=True,
              help="Keep every N-th frame of each video (neighbouring frames teach little that is new).")
@click.option("--start", type=click.IntRange(min=0), default=0, show_default=True, help="First video frame to keep.")
@click.option("--stop", type=click.IntRange(min=1), default=None,
              help="Stop before this video frame (default: the end); keeps a later part of a video unseen.")
@friendly
def data_frames(sources, store, every, start, stop) -> None:
    """Extract frames from real videos (and copy photos) into a store to pseudo-label.

    Then label them with a real detector and mix them with a labelled dataset:

      mlkit label auto --model models/ssdlite/1 --store STORE --index INDEX --train-prob 0.9

      mlkit data merge data/full INDEX --out data/mixed
    """
    from mlkit.data.frames import FrameSelection, extract_frames

    count = extract_frames(sources, store, FrameSelection(every=every, start=start, stop=stop))
    click.echo(f"wrote {count} frames to {store}")


@data.command("merge")
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--max-train", default=None,
              help="Comma-separated caps on each source's training images, in order ('-' for all), e.g. 2000,-.")
@click.option("--classes", default=None,
              help="Comma-separated classes of the result, e.g. person,helmet,helmet-on,helmet-off (default: the "
                   "first source's).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the draw under --max-train.")
@friendly
def data_merge(sources, out_dir, max_train, classes, seed) -> None:
    """Merge dataset folders and relabelling indexes (from `mlkit label auto/import`) into one dataset.

    Classes are matched by name into the first source's classes; an index's eval samples become val.
    """
    from mlkit.incremental.merge import merge_datasets

    caps = None
    if max_train:
        parts = [p.strip() for p in max_train.split(",")]
        if len(parts) != len(sources) or not all(p == "-" or p.isdigit() for p in parts):
            raise click.BadParameter(f"give one cap per source ({len(sources)}), each a count or '-', "
                                     f"e.g. {','.join(['-'] * len(sources))}", param_hint="--max-train")
        caps = [None if p == "-" else int(p) for p in parts]
    names = [c.strip() for c in classes.split(",") if c.strip()] if classes else None
    if classes and (not names or len(set(names)) != len(names)):
        raise click.BadParameter(f"give distinct class names, e.g. person,helmet; got {classes!r}",
                                 param_hint="--classes")
    counts = merge_datasets(sources, out_dir, class_names=names, max_train=caps, seed=seed)
    click.echo(f"wrote {', '.join(f'{n} {s}' for s, n in counts.items())} images to {out_dir}")


@main.command("train")
@click.option("--data", "data_root", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Dataset folder (from `mlkit data generate` or `mlkit data download`).")
@click.option("--model", "which", type=click.Choice(["little", "big"]), required=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--profile", type=click.Choice(PROFILE_NAMES), default="demo-scratch", show_default=True,
              help="Model size and training budget (demo: the fine-tuning budget, with --init-from).")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Override the profile's epochs.")
@click.option("--init-from", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Start from this trained model folder (incremental learning).")
@click.option("--backbone-weights", default="none", show_default=True,
              help="Where the MobileNetV2 backbone starts: none (random), imagenet (Keras's weights for the model's "
                   "width, downloaded to ~/.keras/models the first time) or the path of a weights file. Ignored "
                   "with --init-from.")
@click.option("--zoom", type=click.FloatRange(0, 3), default=None,
              help="Zoom half the training images in by up to 1+ZOOM (0 = off, the profiles' default), so that "
                   "the model sees people at more scales; useful with real footage.")
@click.option("--no-resume", is_flag=True, help="Start over even if an interrupted run left a checkpoint.")
@friendly
def train_cmd(data_root, which, out_dir, profile, epochs, init_from, backbone_weights, zoom, no_resume) -> None:
    """Train a little (edge) or big (cloud) detector and evaluate it on the test split."""
    import dataclasses

    from mlkit.models.workflow import train_and_evaluate
    from mlkit.profiles import get_profile

    p = get_profile(profile)
    cfg = p.little if which == "little" else p.big
    tc = p.little_train if which == "little" else p.big_train
    if epochs:
        tc = dataclasses.replace(tc, epochs=epochs)
    tc = dataclasses.replace(tc, backbone_weights=backbone_weights)
    if zoom is not None:
        tc = dataclasses.replace(tc, zoom=zoom)
    if init_from is None:  # fail before the data is read, in one line
        from mlkit.models.backbone import resolve_backbone_weights

        resolve_backbone_weights(tc.backbone_weights, cfg.alpha)
    out = train_and_evaluate(cfg, tc, data_root, out_dir, init_from=init_from, resume=not no_resume)
    if out["result"] is not None:
        click.echo(out["result"].table())
    click.echo(f"model written to {out_dir}")


@main.command("export")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--variants", default="fp32,fp16,dynamic,int8", show_default=True,
              help="Comma-separated TFLite variants.")
@click.option("--data", "data_root", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Dataset folder: its train split calibrates int8, its test split measures fidelity.")
@click.option("--calibration-images", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True,
              help="Interpreter threads for the speed column.")
@friendly
def export_cmd(model_dir, out_dir, variants, data_root, calibration_images, threads) -> None:
    """Convert a trained detector to TFLite and report each variant's fidelity, size and speed."""
    import json

    from mlkit.data.atomic import atomic_write_text
    from mlkit.data.layout import load_split
    from mlkit.models.export import export_tflite, fidelity_report, fidelity_table

    names = [v.strip() for v in variants.split(",") if v.strip()]
    if not names:
        raise click.BadParameter("name at least one variant, e.g. int8 or fp32,int8", param_hint="--variants")
    calib = load_split(data_root, "train") if data_root else None
    paths = export_tflite(model_dir, out_dir, names, calibration=calib, calibration_count=calibration_images)
    click.echo("\n".join(f"{v}: {p}" for v, p in paths.items()))
    if data_root:
        rows = fidelity_report(model_dir, paths, load_split(data_root, "test"), num_threads=threads)
        atomic_write_text(Path(out_dir) / "fidelity.json", json.dumps([r.to_dict() for r in rows], indent=2))
        click.echo(fidelity_table(rows))
        if (Path(model_dir) / "model_card.json").is_file():
            from mlkit.models.card import write_card

            write_card(model_dir, tflite={"command": " ".join(sys.argv), "out_dir": str(out_dir),
                                          "interpreter_threads": threads, "fidelity": [r.to_dict() for r in rows]})


@main.command("evaluate")
@click.argument("model", type=click.Path(exists=True, path_type=Path))
@click.option("--data", "data_root", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--split", default="test", show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@friendly
def evaluate_cmd(model, data_root, split, threads, as_json) -> None:
    """COCO mAP, per-class precision/recall and speed of a model (Keras folder or model.tflite)."""
    import json

    from mlkit.data.layout import load_split
    from mlkit.evaluation import evaluate
    from mlkit.models.predict import open_detector

    det = open_detector(model, num_threads=threads)
    res = evaluate(load_split(data_root, split), lambda ims: det.predict(ims, score_threshold=0.05),
                   batch_size=1)
    click.echo(json.dumps(res.to_dict(), indent=2) if as_json else res.table())


@main.command("predict")
@click.argument("model", type=click.Path(exists=True, path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--score-threshold", type=click.FloatRange(0, 1), default=0.3, show_default=True)
@click.option("--iou-threshold", type=click.FloatRange(0, 1), default=0.5, show_default=True)
@friendly
def predict_cmd(model, images, score_threshold, iou_threshold) -> None:
    """Detect helmets in image files; prints one JSON line per image."""
    import json

    from mlkit.data.dataset import read_rgb
    from mlkit.models.predict import open_detector

    det = open_detector(model)
    for path in images:
        d = det.predict([read_rgb(path)], score_threshold, iou_threshold)[0]
        click.echo(json.dumps({"image": str(path), "detections": d.to_list(det.meta.class_names)}))


@main.command("demo")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("demo-output"),
              show_default=True)
@click.option("--from-scratch", is_flag=True,
              help="Train both detectors from random weights (the demo-scratch profile) instead of fine-tuning "
                   "the committed ones on a new site.")
@click.option("--profile", type=click.Choice(PROFILE_NAMES), default=None,
              help="Dataset, models and training budget  [default: demo, or demo-scratch with --from-scratch]")
@click.option("--keep-serving", is_flag=True, help="Leave the local model server running at the end.")
@friendly
def demo_cmd(out_dir, from_scratch, profile, keep_serving) -> None:
    """Run the object-detection scenario end to end: fine-tune the committed detectors on a new site, convert,
    evaluate, serve and query them. Logs go to OUT/demo.log."""
    from mlkit.demo import run_demo

    run_demo(out_dir, profile, from_scratch=from_scratch, echo=click.echo, keep_serving=keep_serving)


def _register_subcommands() -> None:
    from mlkit.cli.graph import graph
    from mlkit.cli.incremental import incremental, label
    from mlkit.cli.joint import joint
    from mlkit.cli.models import models
    from mlkit.cli.pipeline import pipeline
    from mlkit.cli.serve import serve
    from mlkit.cli.stream import stream

    main.add_command(joint)
    main.add_command(graph)
    main.add_command(pipeline)
    main.add_command(stream)
    main.add_command(serve)
    main.add_command(incremental)
    main.add_command(label)
    main.add_command(models)


_register_subcommands()

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
