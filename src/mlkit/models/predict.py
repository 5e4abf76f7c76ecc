"""Run a detector on RGB images: Keras (training side) or TFLite via ai_edge_litert (edge, server).

Both share letterbox, decode and NMS from ``mlkit.models.postprocess``, so a TFLite
model and its Keras source differ only by what conversion changed.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlkit.detections import Detections
from mlkit.errors import MlkitError
from mlkit.models.postprocess import (
    Letterbox,
    Stretch,
    grid_centers,
    letterbox,
    postprocess,
    postprocess_ssd,
    postprocess_yolo,
    stretch,
    stretch_tf1,
)
from mlkit.models.quantize import from_output, to_input

METADATA = "metadata.json"
# How a model's outputs are decoded: mlkit's own grid head ("reg", "scores"), the TF Object Detection API /
# Model Maker TFLite_Detection_PostProcess op, or one raw YOLO tensor ([1, 4+C, N] v8, [1, N, 5+C] v5).
OUTPUT_FORMATS = ("mlkit", "ssd-postprocess", "yolov8", "yolov5")
RESIZES = ("letterbox", "stretch", "stretch-tf1")
BOX_UNITS = ("pixels", "normalized")


@dataclasses.dataclass(frozen=True)
class DetectorMeta:
    """What a runtime needs to pre- and post-process for a model (``metadata.json``)."""

    name: str
    input_width: int
    input_height: int
    stride: int
    class_names: tuple[str, ...]
    task: str = "detection"
    preprocessing: str = "letterbox-topleft-pad114-rgb-0..255"
    score_threshold: float = 0.3
    iou_threshold: float = 0.5
    output_format: str = "mlkit"
    # letterbox: aspect kept, padded right/bottom; stretch: resized to the input exactly (OpenCV bilinear);
    # stretch-tf1: the same with TF1's resize_bilinear sampling (TF1 Object Detection API frozen graphs)
    resize: str = "letterbox"
    # A float input gets (pixel - input_mean) / input_std; an integer input of an imported model gets the pixels.
    input_mean: float = 0.0
    input_std: float = 1.0
    box_units: str = "pixels"  # YOLO boxes: input pixels, or normalised to the input size

    @classmethod
    def from_config(cls, cfg) -> DetectorMeta:
        return cls(cfg.name, cfg.input_width, cfg.input_height, cfg.stride, tuple(cfg.class_names))

    def __post_init__(self) -> None:
        def bad(field: str, value, want: str) -> MlkitError:
            return MlkitError(f"model metadata: {field} must be {want}, got {value!r}")

        if not isinstance(self.name, str) or not self.name:
            raise bad("name", self.name, "a non-empty string")
        for field in ("input_width", "input_height", "stride"):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 8192:
                raise bad(field, v, "an integer in 1..8192")
        names = self.class_names
        if isinstance(names, str) or not names or not all(isinstance(n, str) and n for n in names):
            raise bad("class_names", names, "a non-empty list of class names")
        object.__setattr__(self, "class_names", tuple(names))
        for field in ("score_threshold", "iou_threshold"):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 1:
                raise bad(field, v, "a number in [0, 1]")
        for field, allowed in (("output_format", OUTPUT_FORMATS), ("resize", RESIZES), ("box_units", BOX_UNITS)):
            if getattr(self, field) not in allowed:
                raise bad(field, getattr(self, field), f"one of {list(allowed)}")
        for field in ("input_mean", "input_std"):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, int | float) or not np.isfinite(v):
                raise bad(field, v, "a number")
        if self.input_std == 0:
            raise bad("input_std", self.input_std, "a non-zero number")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["class_names"] = list(self.class_names)
        return d

    @classmethod
    def load(cls, path: str | Path) -> DetectorMeta:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise MlkitError(f"{path} not found: a model folder needs {METADATA} next to model.tflite") from None
        except json.JSONDecodeError as exc:
            raise MlkitError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from exc
        if not isinstance(data, dict):
            raise MlkitError(f"{path}: expected a JSON object with name, input_width, ..., got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        missing = {"name", "input_width", "input_height", "stride", "class_names"} - set(data)
        if missing:
            raise MlkitError(f"{path}: missing fields {sorted(missing)}")
        data = {k: v for k, v in data.items() if k in known}
        try:
            return cls(**data)
        except MlkitError as exc:
            raise MlkitError(f"{path}: {exc}") from None


class _Base:
    meta: DetectorMeta

    # prepare -> raw -> finish: the runtime interface the server's batcher drives (it runs ``raw`` on many
    # requests' images at once, then finishes each request's slice).
    def prepare(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, list[Letterbox | Stretch]]:
        """The images resized (letterboxed, or stretched) into one uint8 batch at the model's input size, and how."""
        m = self.meta
        fit = {"stretch": stretch, "stretch-tf1": stretch_tf1}.get(m.resize, letterbox)
        batch = np.empty((len(images), m.input_height, m.input_width, 3), np.uint8)
        lbs = []
        for i, img in enumerate(images):
            if img.ndim != 3 or img.shape[2] != 3:
                raise MlkitError(f"image {i} has shape {img.shape}; expected [H, W, 3] RGB")
            batch[i], lb = fit(img, m.input_width, m.input_height)
            lbs.append(lb)
        return batch, lbs

    def finish(self, reg: np.ndarray, scores: np.ndarray, lbs: list[Letterbox | Stretch],
               score_threshold: float | None, iou_threshold: float | None) -> list[Detections]:
        """Boxes in original-image pixels from ``raw``'s two outputs for the images ``lbs`` fitted (NMS applied).

        By output format, ``raw`` gives: mlkit (reg, scores); yolo (cx cy w h boxes in input pixels, class
        scores); ssd-postprocess (ymin xmin ymax xmax boxes normalised, [class, score] pairs).
        """
        m = self.meta
        st = m.score_threshold if score_threshold is None else score_threshold
        it = m.iou_threshold if iou_threshold is None else iou_threshold
        n = range(len(lbs))
        if m.output_format == "ssd-postprocess":
            return [postprocess_ssd(reg[i], scores[i, :, 0], scores[i, :, 1], m.input_width, m.input_height, lbs[i],
                                    st) for i in n]
        if m.output_format in ("yolov8", "yolov5"):
            return [postprocess_yolo(reg[i], scores[i], lbs[i], st, it) for i in n]
        return [postprocess(reg[i], scores[i], self._centers, m.stride, lbs[i], st, it) for i in n]

    @property
    def _centers(self) -> np.ndarray:
        if not hasattr(self, "_grid"):
            m = self.meta
            self._grid = grid_centers(m.input_height // m.stride, m.input_width // m.stride, m.stride)
        return self._grid

    def predict(self, images: Sequence[np.ndarray], score_threshold: float | None = None,
                iou_threshold: float | None = None) -> list[Detections]:
        if len(images) == 0:
            return []
        batch, lbs = self.prepare(images)
        reg, scores = self.raw(batch)
        return self.finish(reg, scores, lbs, score_threshold, iou_threshold)

    def raw(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


class KerasDetector(_Base):
    """A trained Keras detector folder (``config.json`` + ``model.weights.h5``)."""

    def __init__(self, model_dir: str | Path) -> None:
        from mlkit.models.detector import inference_model
        from mlkit.models.train import load_detector

        model, cfg = load_detector(model_dir)
        self.cfg = cfg
        self.meta = DetectorMeta.from_config(cfg)
        self.model = inference_model(model, cfg)
        self._fn = None

    def raw(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import tensorflow as tf

        if self._fn is None:
            self._fn = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True)
        out = self._fn(tf.convert_to_tensor(batch, tf.float32))
        return out["reg"].numpy(), out["scores"].numpy()


class TFLiteDetector(_Base):
    """A ``model.tflite`` run by ai_edge_litert; handles float and int8/uint8 quantised inputs and outputs."""

    def __init__(self, model_path: str | Path, meta: DetectorMeta | None = None, num_threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        model_path = Path(model_path)
        if not model_path.is_file():
            raise MlkitError(f"TFLite model not found: {model_path}")
        self.meta = meta or DetectorMeta.load(model_path.parent / METADATA)
        try:
            self.interpreter = Interpreter(model_path=str(model_path), num_threads=num_threads)
        except ValueError as exc:
            raise MlkitError(f"{model_path} is not a valid TFLite model: {exc}") from exc
        self.num_threads = num_threads
        self._batch = 0
        h, w = (int(v) for v in self.interpreter.get_input_details()[0]["shape"][1:3])
        if (h, w) != (self.meta.input_height, self.meta.input_width):
            raise MlkitError(f"{model_path.parent / METADATA} says the input is {self.meta.input_height}x"
                             f"{self.meta.input_width} (HxW), but {model_path.name} takes {h}x{w}: the metadata "
                             f"belongs to another model; copy the one exported with this model")
        if self.meta.output_format != "mlkit":
            self._open_imported(model_path)
            return
        self._resize(1)
        classes = int(self._out_scores["shape"][-1])
        if classes != len(self.meta.class_names):
            raise MlkitError(f"{model_path.parent / METADATA} names {len(self.meta.class_names)} classes, but "
                             f"{model_path.name} scores {classes}: the metadata belongs to another model")

    def _open_imported(self, model_path: Path) -> None:
        """An imported model (``mlkit models import``): batch 1 as exported, its outputs found by format."""
        from mlkit.models.tflite_info import read_model_info, yolo_layout

        info = read_model_info(model_path)
        m, where = self.meta, f"{model_path.parent / METADATA} says output_format {self.meta.output_format!r}"
        if m.output_format == "ssd-postprocess":
            if info.postprocess_outputs is None:
                raise MlkitError(f"{where}, but {model_path.name} has no TFLite_Detection_PostProcess op")
            classes = info.postprocess_options.get("num_classes")
            self._outs = [info.postprocess_outputs[k] for k in ("boxes", "classes", "scores", "count")]
        else:
            layout = yolo_layout(info.outputs[0].shape) if len(info.outputs) == 1 else None
            if layout is None or layout[0] != m.output_format:
                raise MlkitError(f"{where}, but {model_path.name} has {info.describe_outputs()}")
            classes = layout[1]
            self._outs = [info.outputs[0].index]
        if classes is not None and classes != len(m.class_names):
            raise MlkitError(f"{model_path.parent / METADATA} names {len(m.class_names)} classes, but "
                             f"{model_path.name} has {classes}: the metadata belongs to another model")
        self.interpreter.allocate_tensors()
        self._in = self.interpreter.get_input_details()[0]
        self._out_details = {d["index"]: d for d in self.interpreter.get_output_details()}
        self._batch = 1

    def _input(self, batch: np.ndarray) -> np.ndarray:
        """uint8 pixels as the model's input tensor, normalised as the metadata says."""
        inp, m = self._in, self.meta
        if m.output_format != "mlkit" and inp["dtype"] in (np.uint8, np.int8):
            # Quantised imported models take the pixels (their input quantisation holds the normalisation).
            return batch if inp["dtype"] == np.uint8 else (batch.astype(np.int16) - 128).astype(np.int8)
        if (m.input_mean, m.input_std) != (0.0, 1.0):
            batch = (batch.astype(np.float32) - np.float32(m.input_mean)) / np.float32(m.input_std)
        return to_input(batch, inp)

    def _resize(self, n: int) -> None:
        if self._batch == n:  # the details below cost more than a small model's pre- and postprocessing
            return
        it = self.interpreter
        inp = it.get_input_details()[0]
        it.resize_tensor_input(inp["index"], [n, self.meta.input_height, self.meta.input_width, 3])
        it.allocate_tensors()
        self._batch = n
        self._in = it.get_input_details()[0]
        # The signature names the outputs; map them to tensor indices once (shapes alone are ambiguous
        # when there are 4 classes and 4 box numbers).
        runner = it.get_signature_runner()
        outs = runner.get_output_details()
        if {"reg", "scores"} - set(outs):
            raise MlkitError(f"TFLite model outputs {sorted(outs)}; expected 'reg' and 'scores'")
        by_index = {d["index"]: d for d in it.get_output_details()}
        self._out_reg = by_index[outs["reg"]["index"]]
        self._out_scores = by_index[outs["scores"]["index"]]

    def raw(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.meta.output_format != "mlkit":
            return self._raw_imported(batch)
        self._resize(len(batch))
        it, inp = self.interpreter, self._in
        it.set_tensor(inp["index"], self._input(batch))
        it.invoke()
        return self._get(self._out_reg), self._get(self._out_scores)

    def _raw_imported(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # Exports run one image at a time (TFLite_Detection_PostProcess handles batch 1 only).
        m = self.meta
        firsts, seconds = [], []
        for image in batch:
            outs = self.invoke_one(image)
            if m.output_format == "ssd-postprocess":
                boxes, classes, scores, count = outs
                k = boxes.shape[1]
                valid = np.arange(k) < int(count.reshape(-1)[0])
                firsts.append(boxes[0])
                seconds.append(np.stack([classes.reshape(k), np.where(valid, scores.reshape(k), -1.0)], axis=1))
                continue
            pred = outs[0][0] if m.output_format == "yolov5" else outs[0][0].T  # -> [N, 4+C] or [N, 5+C]
            boxes = pred[:, :4].copy()
            if m.box_units == "normalized":
                boxes *= np.array([m.input_width, m.input_height, m.input_width, m.input_height], np.float32)
            scores = pred[:, 5:] * pred[:, 4:5] if m.output_format == "yolov5" else pred[:, 4:]
            firsts.append(boxes)
            seconds.append(scores)
        return np.stack(firsts), np.stack(seconds).astype(np.float32)

    def invoke_one(self, image: np.ndarray) -> list[np.ndarray]:
        """An imported model's raw outputs (float) for one model-sized uint8 image: the YOLO tensor, or the
        postprocess op's boxes, classes, scores and count."""
        it = self.interpreter
        it.set_tensor(self._in["index"], self._input(image[None]))
        it.invoke()
        return [from_output(it.get_tensor(i), self._out_details[i]) for i in self._outs]

    def _get(self, d: dict) -> np.ndarray:
        return from_output(self.interpreter.get_tensor(d["index"]), d)


def open_detector(path: str | Path, num_threads: int = 1) -> KerasDetector | TFLiteDetector:
    """A ``.tflite`` file, a folder holding ``model.tflite``, or a Keras detector folder."""
    path = Path(path)
    if path.suffix == ".tflite":
        return TFLiteDetector(path, num_threads=num_threads)
    if (path / "model.tflite").is_file():
        return TFLiteDetector(path / "model.tflite", num_threads=num_threads)
    if (path / "model.weights.h5").is_file():
        return KerasDetector(path)
    raise MlkitError(f"{path} is not a model: expected a .tflite file, a folder with model.tflite, "
                     "or a trained detector folder (config.json + model.weights.h5)")
