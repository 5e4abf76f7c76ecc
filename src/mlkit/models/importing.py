"""``mlkit models import``: a pretrained TFLite detector made into a model-repository entry.

It recognises the output format (``TFLite_Detection_PostProcess`` as the TF Object Detection API and TFLite
Model Maker export it, or one raw YOLOv5/v8 tensor), checks the labels against the model's class count, writes
``REPO/NAME/VERSION/{model.tflite, metadata.json}`` atomically (a folder renamed into place once it works) and
runs it once before the rename, so the entry loads wherever mlkit takes a model.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from mlkit.errors import MlkitError
from mlkit.models.tflite_info import ModelInfo, read_model_info, yolo_layout

FORMATS = ("auto", "ssd-postprocess", "yolo")
DOC = "see docs/models.md"

# The COCO label map of the TF Object Detection API: class k of TFLite_Detection_PostProcess is COCO id k+1
# (90 ids, ten of them unused).
_COCO_IDS = {
    1: "person", 2: "bicycle", 3: "car", 4: "motorcycle", 5: "airplane", 6: "bus", 7: "train", 8: "truck",
    9: "boat", 10: "traffic light", 11: "fire hydrant", 13: "stop sign", 14: "parking meter", 15: "bench",
    16: "bird", 17: "cat", 18: "dog", 19: "horse", 20: "sheep", 21: "cow", 22: "elephant", 23: "bear",
    24: "zebra", 25: "giraffe", 27: "backpack", 28: "umbrella", 31: "handbag", 32: "tie", 33: "suitcase",
    34: "frisbee", 35: "skis", 36: "snowboard", 37: "sports ball", 38: "kite", 39: "baseball bat",
    40: "baseball glove", 41: "skateboard", 42: "surfboard", 43: "tennis racket", 44: "bottle", 46: "wine glass",
    47: "cup", 48: "fork", 49: "knife", 50: "spoon", 51: "bowl", 52: "banana", 53: "apple", 54: "sandwich",
    55: "orange", 56: "broccoli", 57: "carrot", 58: "hot dog", 59: "pizza", 60: "donut", 61: "cake", 62: "chair",
    63: "couch", 64: "potted plant", 65: "bed", 67: "dining table", 70: "toilet", 72: "tv", 73: "laptop",
    74: "mouse", 75: "remote", 76: "keyboard", 77: "cell phone", 78: "microwave", 79: "oven", 80: "toaster",
    81: "sink", 82: "refrigerator", 84: "book", 85: "clock", 86: "vase", 87: "scissors", 88: "teddy bear",
    89: "hair drier", 90: "toothbrush",
}
COCO90 = tuple(_COCO_IDS.get(i, f"unused-{i}") for i in range(1, 91))  # TF OD API SSD models
COCO80 = tuple(n for n in COCO90 if not n.startswith("unused-"))  # YOLO (Ultralytics) COCO models
LABEL_SETS = {"coco": COCO90, "coco80": COCO80}


@dataclasses.dataclass(frozen=True)
class Found:
    """The recognised format of a model: ``output_format`` as DetectorMeta names it and the class count."""

    output_format: str
    num_classes: int | None  # None: a postprocess op whose options do not say


def recognise(info: ModelInfo, fmt: str = "auto") -> Found:
    """The output format of ``info``; one-line ``MlkitError`` naming what was found when it is neither."""
    if fmt not in FORMATS:
        raise MlkitError(f"unknown --format {fmt!r}; choose from {list(FORMATS)}")
    name = info.path.name
    if len(info.inputs) != 1 or len(info.inputs[0].shape) != 4 or info.inputs[0].shape[3] != 3:
        got = ", ".join(t.describe() for t in info.inputs) or "none"
        raise MlkitError(f"{name} has inputs {got}: expected one image input [1,H,W,3]; {DOC}")
    if fmt in ("auto", "ssd-postprocess") and info.postprocess_outputs is not None:
        outputs = {t.index for t in info.outputs}
        if not set(info.postprocess_outputs.values()) <= outputs:
            raise MlkitError(f"{name}: the outputs of its TFLite_Detection_PostProcess op are not all model outputs "
                             f"({info.describe_outputs()}); export the op's 4 outputs as the model's; {DOC}")
        return Found("ssd-postprocess", info.postprocess_options.get("num_classes"))
    if fmt in ("auto", "yolo") and len(info.outputs) == 1:
        layout = yolo_layout(info.outputs[0].shape)
        if layout is not None:
            return Found(*layout)
    wanted = {"auto": "TFLite_Detection_PostProcess (4 outputs) nor a YOLO output ([1,4+C,N] or [1,N,5+C])",
              "ssd-postprocess": "TFLite_Detection_PostProcess (a custom op with 4 outputs)",
              "yolo": "a YOLO output ([1,4+C,N] or [1,N,5+C])"}[fmt]
    nor = "neither " if fmt == "auto" else "not "
    raise MlkitError(f"{name} has {info.describe_outputs()}: {nor}{wanted}; {DOC}")


def read_labels(spec: str | None, num_classes: int | None, source: str) -> tuple[str, ...]:
    """Class names from ``--labels``: a file (one name a line), a comma list, or ``coco`` / ``coco80``."""
    if spec is None:
        if num_classes is None:
            raise MlkitError(f"{source} does not say how many classes it has: give --labels FILE or a,b,c")
        return tuple(f"class{i}" for i in range(num_classes))
    if spec in LABEL_SETS:
        names = LABEL_SETS[spec]
    elif Path(spec).is_file():
        names = tuple(line.strip() for line in Path(spec).read_text().splitlines() if line.strip())
    elif "," in spec or not spec.endswith((".txt", ".labels")):
        names = tuple(n.strip() for n in spec.split(",") if n.strip())
    else:
        raise MlkitError(f"--labels file {spec} not found")
    if not names:
        raise MlkitError(f"--labels {spec!r} names no classes")
    if num_classes is not None and len(names) != num_classes:
        raise MlkitError(f"--labels {spec!r} names {len(names)} classes, but {source} has {num_classes}; "
                         "give one name per class, in the model's order")
    return names


def _box_units(model: Path, meta_kw: dict) -> str:
    """YOLO box units, from the model's own answers: normalised exports keep every cx, cy, w, h near [0, 1]."""
    from mlkit.models.predict import DetectorMeta, TFLiteDetector

    probe = TFLiteDetector(model, meta=DetectorMeta(**meta_kw, box_units="normalized"))
    rng = np.random.default_rng(0)
    h, w = meta_kw["input_height"], meta_kw["input_width"]
    batch = np.stack([np.full((h, w, 3), 114, np.uint8), rng.integers(0, 256, (h, w, 3), dtype=np.uint8)])
    layout = meta_kw["output_format"]
    biggest = 0.0
    for image in batch:
        out = probe.invoke_one(image)[0][0]
        pred = out if layout == "yolov5" else out.T
        biggest = max(biggest, float(np.abs(pred[:, :4]).max()))
    return "normalized" if biggest <= 2.0 else "pixels"


def import_model(source: str | Path, out: str | Path, *, labels: str | None = None, fmt: str = "auto",
                 name: str | None = None, resize: str | None = None, input_mean: float | None = None,
                 input_std: float | None = None, box_units: str = "auto", score_threshold: float | None = None,
                 iou_threshold: float | None = None):
    """Write ``out`` (``REPO/NAME/VERSION``) from the TFLite detector ``source`` (or a TF Object Detection API SSD
    frozen graph, ``.pb``, converted first); returns its ``DetectorMeta``.

    Defaults by format: TFLite_Detection_PostProcess models are stretched to the input and a float input gets
    (pixel - 127.5) / 127.5, as the TF Object Detection API trains them; YOLO models are letterboxed and a float
    input gets pixel / 255. Integer (quantised) inputs get the pixels.
    """
    source, out = Path(source), Path(out)
    if not out.name.isascii() or not out.name.isdigit() or int(out.name) < 1:
        raise MlkitError(f"--out {out} must end in a version folder, a positive integer: REPO/NAME/VERSION, "
                         f"e.g. models/{source.stem}/1")
    if out.exists():
        raise MlkitError(f"{out} exists: import as a new version (the server serves the newest) or remove it")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.importing-"))
    try:
        model = work / "model.tflite"
        if source.suffix == ".pb":  # a TF OD API SSD frozen graph: its own normalisation unless told otherwise
            from mlkit.models.frozen_graph import convert_ssd_frozen_graph

            converted = convert_ssd_frozen_graph(source)
            model.write_bytes(converted.tflite)
            input_mean = converted.input_mean if input_mean is None else input_mean
            input_std = converted.input_std if input_std is None else input_std
            resize = resize or converted.resize
        else:
            shutil.copyfile(source, model)
        meta = _write_entry(model, source, out, labels=labels, fmt=fmt, name=name, resize=resize,
                            input_mean=input_mean, input_std=input_std, box_units=box_units,
                            score_threshold=score_threshold, iou_threshold=iou_threshold)
        os.chmod(work, 0o755)
        os.rename(work, out)  # atomic: the server's watcher sees no version folder, then a complete one
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return meta


def _write_entry(model: Path, source: Path, out: Path, *, labels, fmt, name, resize, input_mean, input_std,
                 box_units, score_threshold, iou_threshold):
    """metadata.json next to ``model`` (in the work folder), checked by running the model once."""
    from mlkit.models.predict import METADATA, DetectorMeta, TFLiteDetector

    info = read_model_info(model if source.suffix == ".pb" else source)  # messages name the user's file
    found = recognise(info, fmt)
    names = read_labels(labels, found.num_classes, source.name)
    _, h, w, _ = info.inputs[0].shape
    ssd = found.output_format == "ssd-postprocess"
    kw = dict(name=name or out.parent.name, input_width=int(w), input_height=int(h), stride=1, class_names=names,
              preprocessing="imported", output_format=found.output_format,
              resize=resize or ("stretch" if ssd else "letterbox"),
              input_mean=float(input_mean if input_mean is not None else (127.5 if ssd else 0.0)),
              input_std=float(input_std if input_std is not None else (127.5 if ssd else 255.0)))
    if score_threshold is not None:
        kw["score_threshold"] = score_threshold
    if iou_threshold is not None:
        kw["iou_threshold"] = iou_threshold
    if ssd:
        kw["box_units"] = "normalized"
    elif box_units == "auto":
        kw["box_units"] = _box_units(model, kw)
    else:
        kw["box_units"] = box_units
    meta = DetectorMeta(**kw)
    (model.parent / METADATA).write_text(json.dumps({**meta.to_dict(), "source": source.name}, indent=2) + "\n")
    for f in (model, model.parent / METADATA):
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    # Run it once: an entry that cannot predict is never put in place.
    TFLiteDetector(model).predict([np.full((h, w, 3), 114, np.uint8)])
    return meta
