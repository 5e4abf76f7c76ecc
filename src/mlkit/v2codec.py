"""The KServe v2 wire format in plain numpy: binary BYTES tensors, requests, answers, and detections as tensors.

The clients, the joint edge worker's cloud client and the server all use it. An edge box installs
``mlkit[edge]`` (no kserve, no TensorFlow), so nothing here imports either.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence

import numpy as np

from mlkit.detections import Detections
from mlkit.errors import MlkitError

_DTYPES = {"FP32": np.float32, "FP64": np.float64, "INT32": np.int32, "INT64": np.int64, "UINT8": np.uint8,
           "INT8": np.int8, "FP16": np.float16, "UINT32": np.uint32, "INT16": np.int16, "BOOL": np.bool_}


def serialize_bytes(items: Sequence[bytes]) -> bytes:
    """The v2 binary BYTES layout: each element as a little-endian uint32 length, then its bytes."""
    return b"".join(struct.pack("<I", len(b)) + b for b in items)


def split_bytes(raw: bytes, name: str) -> list[bytes]:
    """The elements of a v2 binary BYTES tensor; ``MlkitError`` naming input ``name`` when the layout is broken."""
    items, off = [], 0
    while off < len(raw):
        if off + 4 > len(raw):
            raise MlkitError(f"input '{name}': truncated BYTES element header at byte {off}")
        (n,) = struct.unpack_from("<I", raw, off)
        off += 4
        if off + n > len(raw):
            raise MlkitError(f"input '{name}': BYTES element of {n} bytes overruns the body")
        items.append(raw[off:off + n])
        off += n
    return items


def binary_request(blobs: Sequence[bytes], parameters: Mapping | None = None) -> tuple[dict, bytes]:
    """(headers, body) of a v2 infer request carrying encoded images as one BYTES tensor [N]."""
    import json

    raw = serialize_bytes(blobs)
    spec = {"name": "image", "shape": [len(blobs)], "datatype": "BYTES", "parameters": {"binary_data_size": len(raw)}}
    head = json.dumps({"inputs": [spec], "parameters": dict(parameters or {})}, separators=(",", ":")).encode()
    headers = {"inference-header-content-length": str(len(head)), "content-type": "application/octet-stream"}
    return headers, head + raw


def output_arrays(response: Mapping) -> dict[str, np.ndarray]:
    """``{name: array}`` from a v2 REST JSON answer; raises ``MlkitError`` when it is malformed."""
    try:
        out = {}
        for o in response["outputs"]:
            dtype = _DTYPES.get(o["datatype"])
            if dtype is None:
                raise ValueError(f"unsupported datatype {o['datatype']!r} for output {o['name']!r}")
            out[o["name"]] = np.asarray(o["data"], dtype=dtype).reshape(o["shape"])
        return out
    except (KeyError, TypeError, ValueError) as exc:
        raise MlkitError(f"malformed v2 answer ({exc}): {str(response)[:200]}") from exc


def grpc_output_arrays(response) -> dict[str, np.ndarray]:
    """``{name: array}`` from a gRPC ``ModelInferResponse`` (raw output contents, or the typed content fields)."""
    out = {}
    for i, o in enumerate(response.outputs):
        dtype = _DTYPES.get(o.datatype)
        if dtype is None:
            raise MlkitError(f"unsupported datatype {o.datatype!r} for output {o.name!r}")
        if i < len(response.raw_output_contents):
            arr = np.frombuffer(response.raw_output_contents[i], dtype=np.dtype(dtype).newbyteorder("<"))
        else:
            field = _GRPC_FIELDS.get(o.datatype, "fp32_contents")
            arr = np.asarray(getattr(o.contents, field), dtype=dtype)
        out[o.name] = arr.astype(dtype, copy=False).reshape(list(o.shape))
    return out


_GRPC_FIELDS = {"FP32": "fp32_contents", "FP64": "fp64_contents", "INT32": "int_contents", "INT8": "int_contents",
                "INT16": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
                "UINT32": "uint_contents", "BOOL": "bool_contents"}
DETECTION_OUTPUTS = ("boxes", "scores", "classes", "num_detections")


def detection_arrays(items: Sequence[Detections], max_detections: int) -> dict[str, tuple[np.ndarray, str]]:
    """A detector's v2 outputs for ``items``: ``{name: (array, datatype)}``, zero padded to at least
    ``max_detections`` boxes per image (boxes FP32 [N, K, 4], scores FP32 [N, K], classes INT32 [N, K],
    num_detections INT32 [N])."""
    n = len(items)
    k = max([max_detections, *(len(d) for d in items)])
    boxes = np.zeros((n, k, 4), np.float32)
    scores = np.zeros((n, k), np.float32)
    classes = np.zeros((n, k), np.int32)
    counts = np.zeros((n,), np.int32)
    for i, d in enumerate(items):
        m = len(d)
        boxes[i, :m], scores[i, :m], classes[i, :m], counts[i] = d.boxes, d.scores, d.labels, m
    return {"boxes": (boxes, "FP32"), "scores": (scores, "FP32"), "classes": (classes, "INT32"),
            "num_detections": (counts, "INT32")}


def detections_from_arrays(out: Mapping[str, np.ndarray]) -> list[Detections]:
    """One ``Detections`` per image from a detector's output arrays (``detection_arrays``' inverse)."""
    missing = {"boxes", "scores", "classes", "num_detections"} - set(out)
    if missing:
        raise MlkitError(f"the v2 answer lacks the detector outputs {sorted(missing)}; got {sorted(out)}")
    boxes, scores, classes, counts = out["boxes"], out["scores"], out["classes"], out["num_detections"]
    return [Detections(boxes[i, :c], scores[i, :c], classes[i, :c]) for i, c in enumerate(counts.astype(int))]


def v2_detections(response: Mapping) -> list[Detections]:
    """One ``Detections`` per image from a detector's v2 REST answer (boxes, scores, classes, num_detections)."""
    return detections_from_arrays(output_arrays(response))
