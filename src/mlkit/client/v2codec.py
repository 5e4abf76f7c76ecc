"""The KServe v2 REST wire format for detectors, without importing kserve.

An edge box installs ``mlkit[edge]`` (no kserve, no TensorFlow), so the client side of the v2
protocol - the binary-data request and the JSON answer - lives here in plain numpy.
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


def v2_detections(response: Mapping) -> list[Detections]:
    """One ``Detections`` per image from a detector's v2 answer (boxes, scores, classes, num_detections)."""
    out = output_arrays(response)
    missing = {"boxes", "scores", "classes", "num_detections"} - set(out)
    if missing:
        raise MlkitError(f"the v2 answer lacks the detector outputs {sorted(missing)}; got {sorted(out)}")
    boxes, scores, classes, counts = out["boxes"], out["scores"], out["classes"], out["num_detections"]
    return [Detections(boxes[i, :c], scores[i, :c], classes[i, :c]) for i, c in enumerate(counts.astype(int))]
