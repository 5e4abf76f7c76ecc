"""``mlkit models``: bring pretrained detectors into a model repository."""

from __future__ import annotations

from pathlib import Path

import click

from mlkit.cli.tools import CONTEXT_SETTINGS, friendly


@click.group(context_settings=CONTEXT_SETTINGS)
def models() -> None:
    """Bring your own pretrained detectors into a model repository."""


@models.command("import")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="The version folder to write, REPO/NAME/VERSION (e.g. models/ssd/1); it must not exist.")
@click.option("--labels", default=None,
              help="Class names: a file (one a line), a comma list a,b,c, 'coco' (the TF Object Detection API's "
                   "90-id COCO map) or 'coco80' (YOLO's 80 COCO classes). Must match the model's class count.  "
                   "[default: class0, class1, ...]")
@click.option("--format", "fmt", type=click.Choice(["auto", "ssd-postprocess", "yolo"]), default="auto",
              show_default=True, help="The output format; auto recognises it from the model's outputs.")
@click.option("--name", default=None, help="The model name in metadata.json.  [default: NAME from --out]")
@click.option("--resize", type=click.Choice(["letterbox", "stretch", "stretch-tf1"]), default=None,
              help="How images are fitted to the input (stretch-tf1: TF1's bilinear sampling).  [default: stretch "
                   "for ssd-postprocess, stretch-tf1 for a frozen graph, letterbox for yolo]")
@click.option("--input-mean", type=float, default=None,
              help="A float input gets (pixel - mean) / std.  [default: by format, see docs/models.md]")
@click.option("--input-std", type=float, default=None,
              help="See --input-mean.  [default: by format, see docs/models.md]")
@click.option("--box-units", type=click.Choice(["auto", "normalized", "pixels"]), default="auto", show_default=True,
              help="YOLO boxes: auto tells from the model's answers on two probe images.")
@click.option("--score-threshold", type=click.FloatRange(0, 1), default=None,
              help="The score threshold stored in metadata.json.  [default: mlkit's]")
@click.option("--iou-threshold", type=click.FloatRange(0, 1), default=None,
              help="The NMS IoU threshold stored in metadata.json (YOLO).  [default: mlkit's]")
@friendly
def import_cmd(source, out, labels, fmt, name, resize, input_mean, input_std, box_units, score_threshold,
               iou_threshold) -> None:
    """Make the TFLite detector SOURCE a model-repository entry (model.tflite + metadata.json) that mlkit serve,
    predict, evaluate, label auto and the joint worker take.

    Formats: TFLite_Detection_PostProcess (TF Object Detection API, TFLite Model Maker) and one raw YOLOv5/v8
    output ([1,N,5+C] or [1,4+C,N]), decoded with mlkit's NMS. See docs/models.md.
    """
    from mlkit.models.importing import import_model

    meta = import_model(source, out, labels=labels, fmt=fmt, name=name, resize=resize, input_mean=input_mean,
                        input_std=input_std, box_units=box_units, score_threshold=score_threshold,
                        iou_threshold=iou_threshold)
    click.echo(f"wrote {out}: {meta.output_format}, input {meta.input_width}x{meta.input_height}, "
               f"{len(meta.class_names)} classes, {meta.resize}")


@models.command("backbone")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Keras weights file to write (*.weights.h5).")
@friendly
def backbone_cmd(source: Path, out: Path) -> None:
    """Take the pretrained MobileNetV2 out of an SSD/SSDLite frozen graph (TF1 Object Detection API).

    The file starts a detector of the same width from real-image features:

      mlkit train --model big --backbone-weights OUT ...
    """
    from mlkit.models.backbone_extract import extract_mobilenet_v2

    found = extract_mobilenet_v2(source, out)
    click.echo(f"wrote {out}: MobileNetV2 width {found['alpha']}, {found['layers']} conv layers with their batch norms")
