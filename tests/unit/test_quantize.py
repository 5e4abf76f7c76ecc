"""Array <-> TFLite tensor conversion: the integer fast path must equal the float formula."""

from __future__ import annotations

import numpy as np
import pytest

from mlkit.models.quantize import from_output, to_input

PIXELS = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)


def _float_formula(x, scale, zero, dtype):
    info = np.iinfo(dtype)
    return np.clip(np.round(x.astype(np.float64) / scale + zero), info.min, info.max).astype(dtype)


@pytest.mark.parametrize(("dtype", "scale", "zero"), [
    (np.uint8, 1.0, 0),  # mlkit's exports: pixels as they are
    (np.int8, 1.0, -128),  # shifted into int8
    (np.uint8, 1.0, 5),  # shifted and saturated at 255
    (np.int8, 1 / 255, -128),  # a normalised input: the float formula
    (np.uint8, 0.5, 3),
])
def test_integer_inputs_match_the_quantization_formula(dtype, scale, zero):
    got = to_input(PIXELS, {"dtype": dtype, "quantization": (scale, zero)})
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, _float_formula(PIXELS, scale, zero, dtype))


def test_uint8_identity_input_is_not_copied_and_float_inputs_are_cast():
    assert to_input(PIXELS, {"dtype": np.uint8, "quantization": (1.0, 0)}) is PIXELS
    got = to_input(PIXELS, {"dtype": np.float32, "quantization": (0.0, 0)})
    assert got.dtype == np.float32 and got[0, 15, 15, 0] == 255.0


def test_outputs_are_dequantized_to_float32():
    y = np.array([[0, 128, 255]], np.uint8)
    got = from_output(y, {"dtype": np.uint8, "quantization": (0.5, 128)})
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, [[-64.0, 0.0, 63.5]])
    f = from_output(np.array([1.5], np.float64), {"dtype": np.float64, "quantization": (0.0, 0)})
    assert f.dtype == np.float32 and f[0] == 1.5
