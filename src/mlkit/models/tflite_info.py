"""What a ``.tflite`` file holds: its input and output tensors and its ``TFLite_Detection_PostProcess`` op.

Used by ``mlkit models import`` to recognise a detector's output format and by ``TFLiteDetector`` to find an
imported model's outputs. Needs ai_edge_litert and flatbuffers, not TensorFlow.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from mlkit.errors import MlkitError

DETECTION_POSTPROCESS = "TFLite_Detection_PostProcess"
# The op's outputs, in the op's own order (names of the saved graph vary; the op's order does not).
POSTPROCESS_OUTPUTS = ("boxes", "classes", "scores", "count")


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str

    def describe(self) -> str:
        return f"[{','.join(map(str, self.shape))}] {self.dtype}"


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    path: Path
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    # TFLite_Detection_PostProcess: its options (num_classes, max_detections, ...) and its output tensor indices
    postprocess_options: dict | None = None
    postprocess_outputs: dict[str, int] | None = None

    def describe_outputs(self) -> str:
        n = len(self.outputs)
        return f"{n} output{'s' if n != 1 else ''} " + ", ".join(t.describe() for t in self.outputs)


def _tensor(d: dict) -> TensorInfo:
    return TensorInfo(int(d["index"]), str(d["name"]), tuple(int(v) for v in d["shape"]), np.dtype(d["dtype"]).name)


def custom_ops(blob: bytes) -> list[tuple[str, dict, list[int]]]:
    """(custom code, options, output tensor indices) of every custom op in the first subgraph."""
    from ai_edge_litert import schema_py_generated as schema
    from flatbuffers import flexbuffers

    model = schema.Model.GetRootAsModel(blob, 0)
    codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
    graph = model.Subgraphs(0)
    out = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = codes[op.OpcodeIndex()].CustomCode()
        if not code:
            continue
        raw = op.CustomOptionsAsNumpy()
        try:
            options = flexbuffers.Loads(raw.tobytes()) if isinstance(raw, np.ndarray) and raw.size else {}
        except Exception:  # noqa: BLE001 - options we cannot read are reported as empty, the op is still named
            options = {}
        out.append((code.decode(), options if isinstance(options, dict) else {}, [int(t) for t in op.OutputsAsNumpy()]))
    return out


def read_model_info(path: str | Path) -> ModelInfo:
    """The tensors and detection op of a ``.tflite`` file; ``MlkitError`` naming the file if it is not one."""
    from ai_edge_litert.interpreter import Interpreter

    path = Path(path)
    if not path.is_file():
        raise MlkitError(f"{path} not found")
    blob = path.read_bytes()
    if len(blob) < 8 or blob[4:8] != b"TFL3":
        raise MlkitError(f"{path.name} is not a TFLite model (no TFL3 identifier); export it to .tflite first")
    try:
        it = Interpreter(model_content=blob)
    except (ValueError, RuntimeError) as exc:
        raise MlkitError(f"{path.name} cannot be loaded by the TFLite runtime: {str(exc).splitlines()[0]}") from None
    inputs = tuple(_tensor(d) for d in it.get_input_details())
    outputs = tuple(_tensor(d) for d in it.get_output_details())
    options = indices = None
    for code, opts, outs in custom_ops(blob):
        if code == DETECTION_POSTPROCESS and len(outs) == len(POSTPROCESS_OUTPUTS):
            options, indices = opts, dict(zip(POSTPROCESS_OUTPUTS, outs, strict=True))
    return ModelInfo(path, inputs, outputs, options, indices)


def yolo_layout(shape: tuple[int, ...]) -> tuple[str, int] | None:
    """("yolov8", C) for [1, 4+C, N], ("yolov5", C) for [1, N, 5+C] (the boxes outnumber the channels), else None."""
    if len(shape) != 3 or shape[0] != 1:
        return None
    a, b = shape[1], shape[2]
    if 5 <= a < b:
        return "yolov8", a - 4
    if 6 <= b < a:
        return "yolov5", b - 5
    return None
