"""Turn request payloads (v1 JSON, v2 REST, v2 gRPC) into RGB images and per-request parameters.

Every problem a client can cause raises ``kserve.errors.InvalidInput`` (HTTP 400, gRPC
INVALID_ARGUMENT) with a message that says what was wrong; nothing here may raise anything else.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import (
    InferInput,
    InferRequest,
    InferResponse,
    RequestedOutput,
    to_http_parameters,
)

from mlkit.errors import MlkitError
from mlkit.v2codec import split_bytes

# Largest image side accepted (pixels); bigger images are almost certainly a client bug.
MAX_IMAGE_SIDE = 8192
IMAGE_DTYPES = ("BYTES", "UINT8", "FP32")


@dataclasses.dataclass(frozen=True)
class Thresholds:
    score_threshold: float | None = None
    iou_threshold: float | None = None


def decode_image(data: bytes, where: str = "image") -> np.ndarray:
    """Encoded JPEG/PNG/... bytes -> RGB uint8 [H, W, 3]."""
    import cv2

    if not data:
        raise InvalidInput(f"{where} is empty: send JPEG or PNG bytes")
    # A 1 MB PNG can claim 30000x30000 pixels: check the header's size before decoding allocates it.
    _check_sides(*_header_size(data, where), where)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB)  # decoded straight to RGB: no cvtColor pass
    if img is None:
        raise InvalidInput(f"{where} could not be decoded: send a JPEG or PNG image ({len(data)} bytes received)")
    return img


def _check_sides(width: int, height: int, where: str) -> None:
    if min(width, height) < 1 or max(width, height) > MAX_IMAGE_SIDE:
        raise InvalidInput(f"{where} has size {width}x{height}; sides must be 1..{MAX_IMAGE_SIDE}: resize it before "
                           f"sending")


def _header_size(data: bytes, where: str) -> tuple[int, int]:
    """(width, height) from the image's header, without decoding its pixels."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:  # lazy: reads the header only
            return im.size
    except Image.DecompressionBombError:  # Pillow's own limit (about 179 Mpx), far above ours
        raise InvalidInput(f"{where} claims over 179 million pixels; sides must be 1..{MAX_IMAGE_SIDE}: resize it "
                           f"before sending") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:  # SyntaxError: Pillow's broken-header
        raise InvalidInput(f"{where} could not be decoded: send a JPEG or PNG image ({len(data)} bytes received; "
                           f"{type(exc).__name__}: {str(exc)[:80]})") from None


def decode_b64(text: Any, where: str) -> bytes:
    if not isinstance(text, str | bytes):
        raise InvalidInput(f"{where}: 'b64' must be a base64 string, got {type(text).__name__}")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"{where}: invalid base64 ({exc})") from None


def pixel_array(value: Any, where: str) -> np.ndarray:
    """A nested list or array of pixel values -> uint8 [H, W, 3]; values must lie in 0..255."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"{where}: not a rectangular pixel array ({exc})") from None
    return check_pixels(arr, where)


def check_pixels(arr: np.ndarray, where: str) -> np.ndarray:
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise InvalidInput(f"{where} has shape {list(arr.shape)}; expected [H, W, 3] RGB pixels")
    _check_sides(arr.shape[1], arr.shape[0], where)
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind not in "iuf":
        raise InvalidInput(f"{where} has values of type {arr.dtype}; expected numbers 0..255")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise InvalidInput(f"{where} holds NaN or infinite values")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise InvalidInput(f"{where} has values outside 0..255")
    return np.round(arr).astype(np.uint8) if arr.dtype.kind == "f" else arr.astype(np.uint8)


def _instance_image(inst: Any, i: int) -> np.ndarray:
    where = f"instance {i}"
    if isinstance(inst, Mapping):
        if "b64" in inst:
            return decode_image(decode_b64(inst["b64"], where), where)
        if isinstance(inst.get("image_bytes"), Mapping) and "b64" in inst["image_bytes"]:
            return decode_image(decode_b64(inst["image_bytes"]["b64"], where), where)
        raise InvalidInput(f"{where}: expected {{\"b64\": \"<base64 JPEG/PNG>\"}} or an [H, W, 3] pixel array; "
                           f"got keys {sorted(inst)[:5]}")
    if isinstance(inst, list):
        return pixel_array(inst, where)
    raise InvalidInput(f"{where}: expected {{\"b64\": ...}} or an [H, W, 3] pixel array, got {type(inst).__name__}")


def parse_v1(body: Any) -> tuple[list[np.ndarray], dict]:
    """``{"instances": [...], "parameters": {...}}`` -> (images, parameters)."""
    if isinstance(body, bytes | bytearray | str):
        import orjson

        try:
            body = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            if isinstance(body, str):  # KServe already decoded the body: it was a JSON string
                raise InvalidInput("request body must be a JSON object with 'instances', got a string") from None
            raise InvalidInput(f"request body is not valid JSON ({exc})") from None
    if not isinstance(body, Mapping):
        raise InvalidInput(f"request body must be a JSON object with 'instances', got {type(body).__name__}")
    if "instances" not in body:
        raise InvalidInput("request body needs an 'instances' list (v1 protocol)")
    instances = body["instances"]
    if not isinstance(instances, list):
        raise InvalidInput("'instances' must be a list")
    if not instances:
        raise InvalidInput("'instances' is empty: send at least one image")
    params = body.get("parameters") or {}
    if not isinstance(params, Mapping):
        raise InvalidInput("'parameters' must be a JSON object")
    return [_instance_image(inst, i) for i, inst in enumerate(instances)], dict(params)


def _image_input(request: InferRequest) -> InferInput:
    if not request.inputs:
        raise InvalidInput("the request has no inputs: send one BYTES, UINT8 or FP32 image tensor")
    if len(request.inputs) > 1:
        names = [i.name for i in request.inputs]
        raise InvalidInput(f"expected exactly one image input, got {len(names)}: {names}")
    return request.inputs[0]


def parse_v2(request: InferRequest) -> tuple[list[np.ndarray], dict]:
    """A v2 request (REST or gRPC) -> (images, parameters).

    Accepts a BYTES tensor [N] of encoded images (base64 strings when sent as JSON data) or a
    UINT8/FP32 tensor [N, H, W, 3] (or [H, W, 3]) of RGB pixels.
    """
    inp = _image_input(request)
    dtype, shape = inp.datatype, list(inp.shape or [])
    where = f"input '{inp.name}'"
    if dtype not in IMAGE_DTYPES:
        raise InvalidInput(f"{where} has datatype {dtype}; expected one of {list(IMAGE_DTYPES)}")
    try:
        arr = inp.as_numpy()
    except InvalidInput:
        raise
    except (ValueError, TypeError, struct.error) as exc:
        raise InvalidInput(f"{where}: data does not match shape {shape} and datatype {dtype} ({exc})") from None
    params = to_http_parameters(request.parameters) if request.parameters else {}
    if dtype == "BYTES":
        items = arr.reshape(-1)
        if items.size == 0:
            raise InvalidInput(f"{where} is empty: send at least one image")
        images = []
        for i, item in enumerate(items):
            w = f"{where} element {i}"
            data = item if isinstance(item, bytes) else decode_b64(item, w)
            images.append(decode_image(data, w))
        return images, params
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise InvalidInput(f"{where} has shape {list(arr.shape)}; expected [N, H, W, 3] RGB pixels")
    if arr.shape[0] == 0:
        raise InvalidInput(f"{where} is empty: send at least one image")
    return [check_pixels(a, f"{where} image {i}") for i, a in enumerate(arr)], params


def _threshold(params: Mapping, key: str) -> float | None:
    if key not in params or params[key] is None:
        return None
    value = params[key]
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"parameter {key} must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= x <= 1.0:
        raise InvalidInput(f"parameter {key} must be in [0, 1], got {x}")
    return x


def thresholds(params: Mapping | None) -> Thresholds:
    params = params or {}
    return Thresholds(_threshold(params, "score_threshold"), _threshold(params, "iou_threshold"))


# --- v2 REST bodies, parsed here so binary BYTES tensors survive (kserve 0.21 UTF-8-decodes them) ---

def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def parse_v2_rest(body: bytes, headers: Mapping[str, str], model_name: str,
                  model_version: str | None = None) -> InferRequest:
    """A v2 REST body (JSON, or JSON + binary tensors with ``inference-header-content-length``)."""
    import orjson

    header_len = headers.get("inference-header-content-length")
    if header_len is not None:
        try:
            json_len = int(header_len)
        except ValueError:
            raise InvalidInput(f"inference-header-content-length must be an integer, got {header_len!r}") from None
        if not 0 < json_len <= len(body):
            raise InvalidInput(f"inference-header-content-length {json_len} does not fit a {len(body)}-byte body")
        head, tail = body[:json_len], body[json_len:]
    else:
        head, tail = body, b""
    try:
        doc = orjson.loads(head)
    except orjson.JSONDecodeError as exc:
        if header_len is not None:
            raise InvalidInput(f"the first {len(head)} bytes (inference-header-content-length) are not valid JSON "
                               f"({exc}); the header must be the exact length of the JSON part") from None
        if b"\x00" in body or not _is_utf8(body):
            raise InvalidInput("request body is not JSON; a body with binary tensor data needs the "
                               "inference-header-content-length header (the length of its JSON part)") from None
        raise InvalidInput(f"request body is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise InvalidInput("a v2 request body must be a JSON object with 'inputs'")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list):
        raise InvalidInput("a v2 request needs an 'inputs' list")
    params = doc.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidInput("'parameters' must be a JSON object")
    inputs, offset = [], 0
    for i, spec in enumerate(raw_inputs):
        if not isinstance(spec, dict):
            raise InvalidInput(f"input {i} must be a JSON object")
        name, shape, dtype = spec.get("name"), spec.get("shape"), spec.get("datatype")
        if not isinstance(name, str) or not isinstance(dtype, str):
            raise InvalidInput(f"input {i} needs a 'name' and a 'datatype'")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise InvalidInput(f"input '{name}' needs a 'shape' list of non-negative integers")
        if dtype not in IMAGE_DTYPES:
            raise InvalidInput(f"input '{name}' has datatype {dtype}; expected one of {list(IMAGE_DTYPES)}")
        in_params = spec.get("parameters") or {}
        count = int(np.prod(shape)) if shape else 1
        if "data" in spec:
            data = spec["data"]
            if dtype == "BYTES":
                flat = np.asarray(data, dtype=object).reshape(-1)
                if flat.size != count:
                    raise InvalidInput(f"input '{name}' has {flat.size} elements; shape {shape} needs {count}")
                value: Any = flat.reshape(shape)
            else:
                np_dtype = np.uint8 if dtype == "UINT8" else np.float32
                try:
                    value = np.asarray(data, dtype=np.float64).reshape(-1)
                except (TypeError, ValueError) as exc:
                    raise InvalidInput(f"input '{name}': data must be numbers ({exc})") from None
                if value.size != count:
                    raise InvalidInput(f"input '{name}' has {value.size} values; shape {shape} needs {count}")
                if dtype == "UINT8" and value.size and (value.min() < 0 or value.max() > 255):
                    raise InvalidInput(f"input '{name}' has values outside 0..255")
                value = value.astype(np_dtype).reshape(shape)
        elif isinstance(in_params, dict) and "binary_data_size" in in_params:
            size = in_params["binary_data_size"]
            if not isinstance(size, int) or size < 0 or offset + size > len(tail):
                raise InvalidInput(f"input '{name}': binary_data_size {size!r} does not fit the binary part "
                                   f"({len(tail) - offset} bytes left)")
            raw = tail[offset:offset + size]
            offset += size
            if dtype == "BYTES":
                value = _split_bytes(raw, name)
                if value.size != count:
                    raise InvalidInput(f"input '{name}' has {value.size} elements; shape {shape} needs {count}")
                value = value.reshape(shape)
            else:
                np_dtype = np.uint8 if dtype == "UINT8" else np.float32
                if len(raw) != count * np.dtype(np_dtype).itemsize:
                    raise InvalidInput(f"input '{name}' has {len(raw)} bytes; shape {shape} of {dtype} needs "
                                       f"{count * np.dtype(np_dtype).itemsize}")
                value = np.frombuffer(raw, np_dtype).reshape(shape)
        else:
            raise InvalidInput(f"input '{name}' has neither 'data' nor a binary_data_size parameter")
        inputs.append(InferInput(name=name, shape=shape, datatype=dtype, data=value))
    return InferRequest(model_name=model_name, infer_inputs=inputs, request_id=doc.get("id"),
                        parameters=params, model_version=model_version,
                        request_outputs=_requested_outputs(doc.get("outputs")))


def _requested_outputs(raw) -> list[RequestedOutput] | None:
    """The body's ``outputs`` list (names of the outputs wanted), checked for shape only."""
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in raw):
        raise InvalidInput("'outputs' must be a list of objects with a 'name', such as [{\"name\": \"boxes\"}]")
    return [RequestedOutput(o["name"], o.get("parameters")) for o in raw] or None


def requested_output_names(request: InferRequest, known: Sequence[str]) -> tuple[str, ...] | None:
    """The outputs a v2 request asks for (None: all of them); an unknown name is a 400 naming the known ones."""
    wanted = tuple(o.name for o in request.request_outputs or ())
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise InvalidInput(f"unknown output {', '.join(map(repr, unknown))}: this model's outputs are "
                           f"{', '.join(known)}")
    return wanted or None


def only_requested(outputs: list, wanted: tuple[str, ...] | None) -> list:
    """The ``InferOutput``s a request asked for (``requested_output_names``), in the model's order."""
    return outputs if wanted is None else [o for o in outputs if o.name in wanted]


def _split_bytes(raw: bytes, name: str) -> np.ndarray:
    """The v2 binary BYTES layout as an object array (``mlkit.v2codec.split_bytes``); a broken one is a 400."""
    try:
        items = split_bytes(raw, name)
    except MlkitError as exc:
        raise InvalidInput(str(exc)) from None
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


# numpy dtypes whose tolist() gives exactly the JSON values KServe's per-element encoder gives
_JSON_DTYPES = {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP32", "FP64"}


def v2_rest_response(response: InferResponse) -> dict | None:
    """The REST JSON of a v2 answer, or None when KServe's own encoder must write it.

    KServe's ``InferResponse.to_rest`` converts every output element with ``.item()`` in a Python loop,
    which costs about 0.3 ms for a detector's 600 numbers: a tenth of a small model's whole request.
    ``ndarray.tolist`` writes the same values in C. Binary outputs, requested outputs, BYTES and FP16 go
    to KServe (None).
    """
    # KServe keeps these two private; getattr keeps us on its encoder if a release renames them
    if getattr(response, "_use_binary_outputs", True) or getattr(response, "_requested_outputs", True):
        return None
    outputs = []
    for out in response.outputs:
        data = out.data
        if out.parameters or not isinstance(data, np.ndarray) or out.datatype not in _JSON_DTYPES:
            return None
        outputs.append({"name": out.name, "shape": list(out.shape), "datatype": out.datatype,
                        "data": data.ravel().tolist()})
    doc = {"id": response.id, "model_name": response.model_name, "model_version": response.model_version,
           "outputs": outputs}
    if response.parameters:
        doc["parameters"] = to_http_parameters(response.parameters)
    return doc
