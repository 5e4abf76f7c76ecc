"""Image classification served like the detector: image in, softmax probabilities out.

A classifier version folder holds ``model.tflite`` and a ``metadata.json`` with ``"task":
"classification"``, ``name``, ``input_width``, ``input_height`` and ``labels``. Images are
letterboxed like the detector's (RGB 0..255). Each instance gets ``{label, class_id, score,
probabilities}``; v2 answers tensors ``probabilities`` FP32 [N, K], ``classes`` INT32 [N] and
``scores`` FP32 [N]. Optional ``input_name`` / ``output_name`` in metadata.json rename the v2 input
(default ``image``) and the probabilities output, e.g. to match the tensor names a pipeline config uses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from kserve.protocol.infer_type import InferOutput

from mlkit.errors import MlkitError
from mlkit.models.postprocess import letterbox
from mlkit.models.quantize import from_output, to_input
from mlkit.serving.predictor import METADATA_FILE, MODEL_FILE, Job, TFLiteModel, tensor_output


@dataclasses.dataclass(frozen=True)
class ClassifierMeta:
    name: str
    input_width: int
    input_height: int
    labels: tuple[str, ...]
    task: str = "classification"
    input_name: str = "image"
    output_name: str = "probabilities"

    @classmethod
    def from_dict(cls, data: dict, where: Path) -> ClassifierMeta:
        missing = {"name", "input_width", "input_height", "labels"} - set(data)
        if missing:
            raise MlkitError(f"{where}: missing fields {sorted(missing)}")
        if not isinstance(data["labels"], list) or not data["labels"]:
            raise MlkitError(f"{where}: 'labels' must be a non-empty list")
        names = {k: str(data.get(k) or default) for k, default in (("input_name", "image"),
                                                                    ("output_name", "probabilities"))}
        if names["output_name"] in ("classes", "scores"):
            raise MlkitError(f"{where}: output_name {names['output_name']!r} clashes with the outputs 'classes' and "
                             "'scores'")
        return cls(str(data["name"]), int(data["input_width"]), int(data["input_height"]),
                   tuple(str(x) for x in data["labels"]), **names)


def softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class TFLiteClassifier:
    """``model.tflite`` with one image input and one [N, K] output (probabilities or logits)."""

    def __init__(self, model_path: str | Path, meta: ClassifierMeta, num_threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        model_path = Path(model_path)
        self.meta = meta
        try:
            self.interpreter = Interpreter(model_path=str(model_path), num_threads=num_threads)
        except ValueError as exc:
            raise MlkitError(f"{model_path} is not a valid TFLite model: {exc}") from exc
        self._batch = 0
        self._resize(1)

    def _resize(self, n: int) -> None:
        if self._batch == n:
            return
        it = self.interpreter
        shape = [n, self.meta.input_height, self.meta.input_width, 3]
        it.resize_tensor_input(it.get_input_details()[0]["index"], shape)
        it.allocate_tensors()
        self._batch = n
        self._in, self._out = it.get_input_details()[0], it.get_output_details()[0]

    def prepare(self, images: Sequence[np.ndarray]):
        m = self.meta
        batch = np.empty((len(images), m.input_height, m.input_width, 3), np.uint8)
        for i, img in enumerate(images):
            batch[i], _ = letterbox(img, m.input_width, m.input_height)
        return batch, [None] * len(images)

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        self._resize(len(batch))
        it, inp, out = self.interpreter, self._in, self._out
        it.set_tensor(inp["index"], to_input(batch, inp))
        it.invoke()
        y = from_output(it.get_tensor(out["index"]), out).reshape(len(batch), -1)
        if y.shape[1] != len(self.meta.labels):
            raise MlkitError(f"the model outputs {y.shape[1]} classes but metadata.json lists "
                             f"{len(self.meta.labels)} labels")
        is_prob = (y >= 0).all() and np.allclose(y.sum(axis=1), 1.0, atol=1e-3)
        return y if is_prob else softmax(y)

    def predict(self, images: Sequence[np.ndarray]) -> np.ndarray:
        batch, _ = self.prepare(images)
        return self.predict_batch(batch)

    def finish(self, raw: np.ndarray, start: int, job: Job) -> np.ndarray:
        return raw[start:start + job.n]


class TFLiteClassifierModel(TFLiteModel):
    """A TFLite image classifier (metadata task "classification")."""

    task = "classification"

    def _open(self, raw_meta: dict) -> TFLiteClassifier:
        meta = ClassifierMeta.from_dict(raw_meta, self.model_dir / METADATA_FILE)
        return TFLiteClassifier(self.model_dir / MODEL_FILE, meta, self.num_threads)

    def _rows(self, items: np.ndarray) -> np.ndarray:
        return np.asarray(items, np.float32).reshape(-1, len(self.runtime.meta.labels))

    def v1_predictions(self, items: np.ndarray) -> list:
        labels = self.runtime.meta.labels
        out = []
        for p in self._rows(items):
            c = int(np.argmax(p))
            out.append({"label": labels[c], "class_id": c, "score": round(float(p[c]), 5),
                        "probabilities": [round(float(v), 5) for v in p]})
        return out

    def v2_outputs(self, items: np.ndarray) -> list[InferOutput]:
        probs = self._rows(items).astype(np.float32)
        classes = probs.argmax(axis=1).astype(np.int32)
        scores = probs[np.arange(len(probs)), classes].astype(np.float32)
        return [tensor_output(self.runtime.meta.output_name, probs, "FP32"),
                tensor_output("classes", classes, "INT32"), tensor_output("scores", scores, "FP32")]

    def get_input_types(self) -> list[dict]:
        name = self.runtime.meta.input_name if self.runtime else "image"
        return [{"name": name, "datatype": "BYTES", "shape": [-1]}]

    def get_output_types(self) -> list[dict]:
        if self.runtime is None:
            return []
        k = len(self.runtime.meta.labels)
        return [{"name": self.runtime.meta.output_name, "datatype": "FP32", "shape": [-1, k]},
                {"name": "classes", "datatype": "INT32", "shape": [-1]},
                {"name": "scores", "datatype": "FP32", "shape": [-1]}]
