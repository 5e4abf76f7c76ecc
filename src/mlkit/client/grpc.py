"""v2 gRPC client for the mlkit model server (KServe's generated stubs), with timeouts and retries (UNAVAILABLE:
a server starting or shedding load, retried with jittered exponential backoff)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import grpc
import numpy as np

from mlkit.client.http import ServingError, auth_headers, encode_image, retry_delay
from mlkit.detections import Detections
from mlkit.errors import MlkitError
from mlkit.v2codec import detections_from_arrays, grpc_output_arrays, serialize_bytes

RETRY_CODES = (grpc.StatusCode.UNAVAILABLE,)


class GRPCServingClient:
    """``GRPCServingClient("127.0.0.1:8081", "helmet").predict([image])`` -> ``[Detections]``.

    gRPC parameters have no float type in KServe's proto, so thresholds travel as strings. ``token=`` sends
    metadata ``authorization: Bearer <token>`` with every call (a server started with ``--auth-token-file``).
    """

    def __init__(self, target: str, model: str, *, version: int | str | None = None, encoding: str = "jpeg",
                 jpeg_quality: int = 90, timeout: float = 30.0, retries: int = 3, backoff: float = 0.2,
                 max_message_mb: float = 64.0, token: str | None = None) -> None:
        from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc

        if encoding not in ("jpeg", "png", "raw"):
            raise MlkitError(f"encoding must be 'jpeg', 'png' or 'raw', got {encoding!r}")
        self.target, self.model, self.version = target, model, version
        self.encoding, self.jpeg_quality = encoding, jpeg_quality
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self._metadata = tuple((k.lower(), v) for k, v in auth_headers(token).items())  # gRPC keys are lower case
        size = int(max_message_mb * 1024 * 1024)
        self._channel = grpc.insecure_channel(target, options=[("grpc.max_send_message_length", size),
                                                               ("grpc.max_receive_message_length", size)])
        self._stub = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(self._channel)

    def build(self, images: Sequence[np.ndarray], score_threshold: float | None = None,
              iou_threshold: float | None = None):
        from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

        if not len(images):
            raise MlkitError("no images to send")
        version = "" if self.version is None else str(self.version)
        req = pb.ModelInferRequest(model_name=self.model, model_version=version)
        for key, value in (("score_threshold", score_threshold), ("iou_threshold", iou_threshold)):
            if value is not None:
                req.parameters[key].string_param = repr(float(value))
        tensor = req.inputs.add()
        tensor.name = "image"
        if self.encoding == "raw":
            arr = np.stack([np.asarray(im, np.uint8) for im in images])
            tensor.datatype, tensor.shape[:] = "UINT8", list(arr.shape)
            req.raw_input_contents.append(arr.tobytes())
        else:
            tensor.datatype, tensor.shape[:] = "BYTES", [len(images)]
            req.raw_input_contents.append(serialize_bytes([encode_image(im, self.encoding, self.jpeg_quality)
                                                           for im in images]))
        return req

    def infer(self, request):
        for attempt in range(self.retries + 1):
            try:
                return self._stub.ModelInfer(request, timeout=self.timeout, metadata=self._metadata)
            except grpc.RpcError as exc:
                if exc.code() not in RETRY_CODES or attempt == self.retries:
                    status = 401 if exc.code() == grpc.StatusCode.UNAUTHENTICATED else None
                    raise ServingError(f"gRPC {self.target} {self.model}: {exc.code().name}: {exc.details()}",
                                       status) from exc
            time.sleep(retry_delay(attempt, self.backoff))
        raise AssertionError("unreachable")

    def predict(self, images: Sequence[np.ndarray], score_threshold: float | None = None,
                iou_threshold: float | None = None) -> list[Detections]:
        response = self.infer(self.build(images, score_threshold, iou_threshold))
        try:
            return detections_from_arrays(grpc_output_arrays(response))
        except (ValueError, MlkitError) as exc:
            raise ServingError(f"gRPC {self.target} {self.model}: malformed answer ({exc})") from None

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> GRPCServingClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
