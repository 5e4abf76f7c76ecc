"""Converting between numpy arrays and a TFLite interpreter's (possibly quantized) tensors."""

from __future__ import annotations

import numpy as np

_INTEGER = (np.uint8, np.int8)


def to_input(x: np.ndarray, detail: dict) -> np.ndarray:
    """``x`` (pixels, uint8 or float) as the input tensor described by ``detail`` (``get_input_details()``)."""
    dtype = detail["dtype"]
    if dtype not in _INTEGER:
        return np.asarray(x, dtype)
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    if scale == 1.0 and float(zero).is_integer() and x.dtype == np.uint8:
        # Raw pixels into an integer input (mlkit's exports take uint8 pixels, scale 1): a shift at most.
        # The float round trip below costs 0.45 ms on a 256x192 image, a quarter of the little model's invoke.
        if dtype == np.uint8 and zero == 0:
            return x
        return np.clip(x.astype(np.int16) + int(zero), info.min, info.max).astype(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def from_output(y: np.ndarray, detail: dict) -> np.ndarray:
    """An output tensor as float32, dequantized when the model's output is integer."""
    if detail["dtype"] in _INTEGER:
        scale, zero = detail["quantization"]
        return (y.astype(np.float32) - zero) * scale
    return y.astype(np.float32)
