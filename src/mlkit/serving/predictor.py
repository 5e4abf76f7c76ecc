"""KServe predictors for mlkit TFLite models (ai_edge_litert), with dynamic batching.

``TFLiteDetectorModel`` serves one version folder (``model.tflite`` + ``metadata.json``):

- ``preprocess`` decodes the payload (v1 JSON, v2 REST or gRPC; see ``mlkit.serving.payload``) and
  letterboxes the images in a worker thread;
- ``predict`` queues the letterboxed batch on the model's ``DynamicBatcher``, which merges concurrent
  requests and runs the interpreter once per merged batch on its own thread;
- ``postprocess`` answers exactly one prediction per instance: v1 ``{"predictions": [[{label,
  class_id, score, box}, ...], ...]}`` (boxes in original-image pixels), v2 tensors ``boxes`` FP32
  [N, max_det, 4], ``scores`` FP32 [N, max_det], ``classes`` INT32 [N, max_det] and
  ``num_detections`` INT32 [N] (zero padded).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from kserve import Model
from kserve.errors import InvalidInput, ModelNotReady
from kserve.model import InferenceVerb
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from mlkit.detections import Detections
from mlkit.errors import MlkitError
from mlkit.serving.batcher import DynamicBatcher
from mlkit.serving.options import DEFAULT_INSTANCES, DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_LATENCY_MS, DEFAULT_THREADS
from mlkit.serving.overload import DEFAULT_MAX_QUEUE, DEFAULT_QUEUE_TIMEOUT_MS, check_limits, queue_depth
from mlkit.serving.payload import (
    Thresholds,
    only_requested,
    parse_v1,
    parse_v2,
    requested_output_names,
    thresholds,
)
from mlkit.v2codec import detection_arrays

log = logging.getLogger(__name__)

MODEL_FILE = "model.tflite"
METADATA_FILE = "metadata.json"
MAX_DETECTIONS = 100  # mlkit.models.postprocess keeps at most 100 boxes per image
READY_PIXELS_MAX_IMAGES = 8  # model-sized pixel tensors up to this many images are checked on the event loop
# Loop iterations a seemingly lone request yields before it runs inline: requests that reached the sockets while
# the loop was busy need one to be read and one to start their tasks, which then run up to the model.
LONE_CHECK_YIELDS = 3


@dataclasses.dataclass(kw_only=True)
class Job:
    """One request, ready for the interpreter."""

    protocol: str  # "v1" or "v2"
    batch: np.ndarray  # uint8 [n, H, W, 3], letterboxed
    extra: list  # per-image data the model needs after inference (letterboxes)
    thresholds: Thresholds
    request_id: str | None = None
    binary_outputs: bool = False
    from_grpc: bool = False
    outputs: tuple[str, ...] | None = None  # the v2 outputs asked for (None: all)

    @property
    def n(self) -> int:
        return len(self.batch)


def read_metadata(model_dir: Path) -> dict:
    """The raw ``metadata.json`` of a version folder; raises ``MlkitError`` naming the file."""
    path = model_dir / METADATA_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise MlkitError(f"{path} not found: a model version folder needs {METADATA_FILE} and {MODEL_FILE}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MlkitError(f"{path}: invalid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise MlkitError(f"{path}: expected a JSON object")
    return data


class TFLiteModel(Model):
    """Common part of the TFLite predictors: load, batching, payload decoding, in-flight counting."""

    task = "?"
    requests_in_process = 0  # requests inside any TFLiteModel in this server process (all models, versions)

    def __init__(self, name: str, model_dir: str | Path, *, version: int | None = None,
                 num_threads: int = DEFAULT_THREADS,
                 max_batch_size: int = DEFAULT_MAX_BATCH_SIZE, max_latency_ms: float = DEFAULT_MAX_LATENCY_MS,
                 instances: int = DEFAULT_INSTANCES,
                 max_queue: int = DEFAULT_MAX_QUEUE, queue_timeout_ms: float = DEFAULT_QUEUE_TIMEOUT_MS) -> None:
        super().__init__(name)
        if instances < 1 or num_threads < 1:
            raise ValueError(f"instances and num_threads must be >= 1, got {instances} and {num_threads}")
        check_limits(max_queue, queue_timeout_ms)
        self.model_dir = Path(model_dir)
        self.version = version
        self.num_threads = num_threads  # per instance
        self.instances = instances
        self.max_batch_size = max_batch_size
        self.max_latency_ms = max_latency_ms
        self.max_queue, self.queue_timeout_ms = max_queue, queue_timeout_ms
        self.runtime: Any = None  # the first instance: decoding, letterboxing and metadata use it
        self.batcher: DynamicBatcher | None = None
        self.load_error: str | None = None
        self.inflight = 0
        self.preparing = 0  # requests decoding their payload: they will reach the batcher next

    @property
    def label(self) -> str:
        return self.name if self.version is None else f"{self.name} version {self.version}"

    # --- loading -------------------------------------------------------------------------------
    def _open(self, raw_meta: dict) -> Any:
        raise NotImplementedError

    def _warm_up(self, runtime: Any) -> None:
        """One inference on zeros: proves the model runs before it is marked ready."""
        runtime.predict_batch(np.zeros((1, *self.input_hw(runtime), 3), np.uint8))

    def load(self) -> bool:
        if self.ready:
            return True
        try:
            raw_meta = read_metadata(self.model_dir)
            model_path = self.model_dir / MODEL_FILE
            if not model_path.is_file():
                raise MlkitError(f"{model_path} not found: a model version folder needs {MODEL_FILE}")
            runtimes = [self._open(raw_meta) for _ in range(self.instances)]
            for runtime in runtimes:
                self._warm_up(runtime)
            max_bs = int(raw_meta.get("max_batch_size", self.max_batch_size))
            max_lat = float(raw_meta.get("max_latency_ms", self.max_latency_ms))
            for key, ours, theirs in (("max_batch_size", self.max_batch_size, max_bs),
                                      ("max_latency_ms", self.max_latency_ms, max_lat)):
                if theirs != ours:  # the model's own setting wins; say so, or the server flag seems ignored
                    log.info("model %s: %s %g from %s overrides the server's %g", self.label, key, theirs,
                             self.model_dir / METADATA_FILE, ours)
        except (MlkitError, ValueError, RuntimeError, OSError, TypeError, KeyError) as exc:
            self.load_error = f"{type(exc).__name__}: {exc}"
            self.ready = False
            log.error("cannot load model %s from %s: %s", self.label, self.model_dir, exc)
            return False
        self.runtime = runtimes[0]
        self.max_batch_size, self.max_latency_ms = max_bs, max_lat
        runners = [functools.partial(self._run_batch, runtime=r) for r in runtimes]  # one batcher thread each
        self.batcher = DynamicBatcher(runners, model=self.name, max_batch_size=max_bs,
                                      max_latency_ms=max_lat, size=lambda job: job.n,
                                      arriving=lambda: self.preparing, max_queue=self.max_queue,
                                      queue_timeout_ms=self.queue_timeout_ms)
        self.load_error = None
        self.ready = True
        log.info("loaded model %s from %s (%s, max_batch_size=%d, max_latency_ms=%g, instances=%d x %d threads)",
                 self.label, self.model_dir, self.task, max_bs, max_lat, self.instances, self.num_threads)
        return True

    def stop(self) -> None:
        if self.batcher is not None:
            self.batcher.close_now()
        self.ready = False

    async def retire(self, grace_seconds: float = 0.5, timeout: float = 120.0) -> None:
        """Wait until requests in flight on this version finished, then free its batcher."""
        await asyncio.sleep(grace_seconds)
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while self.inflight and loop.time() < end:
            await asyncio.sleep(0.02)
        self.ready = False
        if self.batcher is not None:
            await self.batcher.close()
        # The batcher's runners hold this model: without breaking the cycle, the interpreters wait for a full
        # garbage collection, and a server that keeps receiving versions grows meanwhile.
        self.batcher = self.runtime = None

    @staticmethod
    def input_hw(runtime: Any) -> tuple[int, int]:
        return runtime.meta.input_height, runtime.meta.input_width

    async def __call__(self, body, headers=None, verb=InferenceVerb.PREDICT):
        self.check_room()  # before decoding: a busy server refuses at once
        with self.running():
            return await super().__call__(body, headers, verb)

    def check_room(self) -> None:
        """Raise ``ServerBusy`` (503) when ``max_queue`` requests already wait for this version, decoding included."""
        if self.batcher is not None:
            self.batcher.check_room(also_waiting=self.preparing)

    @contextlib.contextmanager
    def running(self):
        """Count a request on this version (a hot swap retires it only when none runs) and in the process."""
        self.inflight += 1
        TFLiteModel.requests_in_process += 1
        try:
            yield
        finally:
            self.inflight -= 1
            TFLiteModel.requests_in_process -= 1

    @property
    def alone(self) -> bool:
        """True when the request being served is the only one in this process: it may run inline."""
        return TFLiteModel.requests_in_process == 1

    async def submit(self, job: Any) -> Any:
        """Queue ``job`` on the batcher and wait for its result; a truly lone request runs inline.

        A request that looks alone may only be the first of several that arrived while the event loop was busy:
        it yields a few loop iterations so they reach the model, and runs inline only if it is still alone.
        """
        inline = self.alone and self.batcher.idle
        if inline:
            for _ in range(LONE_CHECK_YIELDS):
                await asyncio.sleep(0)
            inline = self.alone and self.batcher.idle
        return await self.batcher.submit(job, inline=inline)

    # --- request path ----------------------------------------------------------------------------
    def _job(self, payload: Any) -> Job:
        if isinstance(payload, InferRequest):
            images, params = parse_v2(payload)
            protocol = "v2"
            rid, from_grpc = payload.id, bool(payload.from_grpc)
            binary = bool(params.get("binary_data_output", False)) and not from_grpc
            outputs = requested_output_names(payload, [o["name"] for o in self.get_output_types()])
        elif isinstance(payload, dict | bytes | bytearray | str):
            images, params = parse_v1(payload)
            protocol, rid, from_grpc, binary, outputs = "v1", None, False, False, None
        else:
            raise InvalidInput(f"unsupported request payload of type {type(payload).__name__}")
        th = thresholds(params)
        try:
            batch, extra = self.runtime.prepare(images)
        except MlkitError as exc:
            raise InvalidInput(str(exc)) from None
        return Job(protocol=protocol, batch=batch, extra=extra, thresholds=th, request_id=rid, binary_outputs=binary,
                   from_grpc=from_grpc, outputs=outputs)

    async def preprocess(self, payload: Any, headers: dict | None = None) -> Job:
        if not self.ready or self.runtime is None:
            raise ModelNotReady(self.name, self.load_error or "")
        if self._ready_pixels(payload):
            return self._job(payload)  # nothing to decode or resize: a thread hop would cost more
        return await self.prepare_in_thread(self._job, payload)

    def _ready_pixels(self, payload: Any) -> bool:
        """A v2 UINT8 tensor of a few images already at the model's input size (a client that letterboxes)."""
        if not isinstance(payload, InferRequest) or len(payload.inputs) != 1:
            return False
        inp = payload.inputs[0]
        shape = list(inp.shape or [])
        return (inp.datatype == "UINT8" and len(shape) == 4 and shape[0] <= READY_PIXELS_MAX_IMAGES
                and shape[1:] == [*self.input_hw(self.runtime), 3])

    async def prepare_in_thread(self, fn, *args):
        """``fn(*args)`` in a worker thread, counted in ``preparing`` so the batcher waits for its request."""
        self.preparing += 1
        depth = queue_depth(self.name)
        depth.inc()
        try:
            return await asyncio.to_thread(fn, *args)
        finally:
            self.preparing -= 1
            depth.dec()

    async def predict(self, payload: Job, headers: dict | None = None, response_headers: dict | None = None):
        return payload, await self.submit(payload)

    def _run_batch(self, jobs: list[Job], runtime: Any) -> list:
        batch = jobs[0].batch if len(jobs) == 1 else np.concatenate([j.batch for j in jobs])
        raw = runtime.predict_batch(batch)
        out, start = [], 0
        for job in jobs:  # the requests were checked when decoded: a failure here is a bug, a 500 with its log
            out.append(runtime.finish(raw, start, job))
            start += job.n
        return out

    async def postprocess(self, result: Any, headers: dict | None = None, response_headers: dict | None = None):
        job, items = result
        if job.protocol == "v1":
            return {"predictions": self.v1_predictions(items)}
        return InferResponse(response_id=job.request_id or "", model_name=self.name,
                             infer_outputs=only_requested(self.v2_outputs(items), job.outputs),
                             model_version=None if self.version is None else str(self.version),
                             use_binary_outputs=job.binary_outputs)

    def v1_predictions(self, items: list) -> list:
        raise NotImplementedError

    def v2_outputs(self, items: list) -> list[InferOutput]:
        raise NotImplementedError


def tensor_output(name: str, arr: np.ndarray, datatype: str) -> InferOutput:
    return InferOutput(name=name, shape=list(arr.shape), datatype=datatype, data=arr)


class _DetectorRuntime:
    """A TFLiteDetector seen through the interface the batching predictor needs."""

    def __init__(self, model_path: Path, num_threads: int) -> None:
        from mlkit.models.predict import TFLiteDetector

        self.detector = TFLiteDetector(model_path, num_threads=num_threads)
        self.meta = self.detector.meta

    def prepare(self, images):
        return self.detector.prepare(images)

    def predict_batch(self, batch: np.ndarray):
        return self.detector.raw(batch)

    def finish(self, raw, start: int, job: Job) -> Detections:
        reg, scores = raw
        sl = slice(start, start + job.n)
        th = job.thresholds
        return self.detector.finish(reg[sl], scores[sl], job.extra, th.score_threshold, th.iou_threshold)


class TFLiteDetectorModel(TFLiteModel):
    """A TFLite detector exported by ``mlkit.models.export`` (metadata task "detection")."""

    task = "detection"

    def _open(self, raw_meta: dict) -> _DetectorRuntime:
        task = raw_meta.get("task", "detection")
        if task != "detection":
            raise MlkitError(f"{self.model_dir / METADATA_FILE}: task is {task!r}; this predictor serves 'detection'")
        return _DetectorRuntime(self.model_dir / MODEL_FILE, self.num_threads)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.runtime.meta.class_names

    def v1_predictions(self, items: list[Detections]) -> list:
        names = self.class_names
        return [det.to_list(names) for det in items]

    def v2_outputs(self, items: list[Detections]) -> list[InferOutput]:
        arrays = detection_arrays(items, MAX_DETECTIONS)
        return [tensor_output(name, arr, datatype) for name, (arr, datatype) in arrays.items()]

    def get_input_types(self) -> list[dict]:
        return [{"name": "image", "datatype": "BYTES", "shape": [-1]}]

    def get_output_types(self) -> list[dict]:
        return [{"name": "boxes", "datatype": "FP32", "shape": [-1, MAX_DETECTIONS, 4]},
                {"name": "scores", "datatype": "FP32", "shape": [-1, MAX_DETECTIONS]},
                {"name": "classes", "datatype": "INT32", "shape": [-1, MAX_DETECTIONS]},
                {"name": "num_detections", "datatype": "INT32", "shape": [-1]}]
