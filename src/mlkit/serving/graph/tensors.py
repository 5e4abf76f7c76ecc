"""Tensor specs of pipeline data items: a KServe v2 datatype and a shape, ``-1`` for a free dimension.

Connected tensors must agree: same datatype, same rank, and every dimension equal unless one side is
free. The leading dimension is the batch (``N`` instances of one request) everywhere.

Images are the one exception to "a tensor is an array": an image input (``IMAGE`` = BYTES ``[-1]``,
what the served detectors and classifiers declare) carries a batch of decoded RGB pictures of any
size, each ``uint8 [H, W, 3]``, because every model letterboxes to its own input size. Requests may send
it as encoded JPEG/PNG bytes or as a UINT8/FP32 ``[N, H, W, 3]`` pixel tensor.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mlkit.errors import MlkitError

NUMPY_TYPES: dict[str, Any] = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64, "BYTES": np.object_,
}


def datatype_of(dtype: Any) -> str:
    """The v2 datatype of a numpy dtype (``MlkitError`` for one without a v2 name)."""
    dt = np.dtype(dtype)
    for name, t in NUMPY_TYPES.items():
        if dt == np.dtype(t):
            return name
    raise MlkitError(f"numpy dtype {dt} has no KServe v2 datatype")


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    datatype: str
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "datatype", str(self.datatype).upper())
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        if self.datatype not in NUMPY_TYPES:
            raise MlkitError(f"unknown datatype {self.datatype!r}; KServe v2 datatypes are {sorted(NUMPY_TYPES)}")
        if any(d < -1 for d in self.shape):
            raise MlkitError(f"shape {list(self.shape)}: dimensions are sizes >= 0, or -1 for any size")

    def __str__(self) -> str:
        return f"{self.datatype} {list(self.shape)}"

    @property
    def is_image(self) -> bool:
        return self == IMAGE

    @property
    def numpy_type(self):
        return NUMPY_TYPES[self.datatype]

    def to_dict(self, name: str) -> dict:
        return {"name": name, "datatype": self.datatype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, data: Mapping, where: str) -> TensorSpec:
        try:
            return cls(data["datatype"], tuple(data["shape"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise MlkitError(f"{where}: a tensor needs a 'datatype' and a 'shape' list ({exc})") from None


IMAGE = TensorSpec("BYTES", (-1,))


def shapes_compatible(a: Sequence[int], b: Sequence[int]) -> bool:
    return len(a) == len(b) and all(x == y or x == -1 or y == -1 for x, y in zip(a, b, strict=True))


def mismatch(expected: TensorSpec, got: TensorSpec) -> str | None:
    """``None`` when ``got`` can feed ``expected``, else "datatype" or "shape"."""
    if expected.datatype != got.datatype:
        return "datatype"
    if not shapes_compatible(expected.shape, got.shape):
        return "shape"
    return None


def merge(a: TensorSpec, b: TensorSpec) -> TensorSpec:
    """The more specific of two compatible specs (free dimensions filled from the other)."""
    return TensorSpec(a.datatype, tuple(y if x == -1 else x for x, y in zip(a.shape, b.shape, strict=True)))


def batch_size(value: Any, spec: TensorSpec, where: str) -> int:
    """Check a runtime value against its spec; returns its batch size (leading dimension)."""
    if spec.is_image:
        if not isinstance(value, list | tuple) or not all(
                isinstance(v, np.ndarray) and v.ndim == 3 and v.shape[2] == 3 and v.dtype == np.uint8 for v in value):
            raise MlkitError(f"{where} must be a list of RGB uint8 [H, W, 3] images, got {type(value).__name__}")
        return len(value)
    if not isinstance(value, np.ndarray):
        raise MlkitError(f"{where} must be a numpy array ({spec}), got {type(value).__name__}")
    if datatype_of(value.dtype) != spec.datatype:
        raise MlkitError(f"{where} has datatype {datatype_of(value.dtype)}; expected {spec.datatype}")
    if not shapes_compatible(spec.shape, value.shape):
        raise MlkitError(f"{where} has shape {list(value.shape)}; expected {list(spec.shape)}")
    return int(value.shape[0]) if value.ndim else 1
