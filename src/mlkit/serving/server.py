"""The mlkit model server: KServe's ModelServer over a ``TFLiteModelRepository``.

What this adds to ``kserve.ModelServer`` (0.21), and why:

- **Host binding.** KServe hard-codes ``0.0.0.0`` (uvicorn) and ``[::]`` (gRPC); ``start`` here builds
  the same REST and gRPC servers but binds ``host`` (default ``127.0.0.1``).
- **v2 REST infer routes.** KServe's own route turns binary BYTES tensors into UTF-8 strings (JPEG
  bytes fail with a 500), answers 422 for malformed JSON and 501 for ``/versions/{v}/infer``. The
  routes registered here (ahead of KServe's) parse the body with ``mlkit.serving.payload``, answer
  400 for every malformed body and resolve versions to ``<name>@<version>``.
- **Payload limit.** Bodies over ``max_payload_mb`` are refused with 400 before they are read
  (gRPC: ``grpc.max_receive_message_length``, which answers RESOURCE_EXHAUSTED).
- **Model control** (Triton's ``--model-control-mode``): ``poll`` (default) runs the repository watcher as one
  more task next to the REST and gRPC servers (hot reload); ``none`` and ``explicit`` run no watcher. Only
  ``explicit`` lets clients load and unload models (REST ``/v2/repository/models/{name}/load|unload``, gRPC
  RepositoryModelLoad/Unload); otherwise they get 403 / PERMISSION_DENIED naming the flag.
- **Versions.** A version in a REST path, a ``?model_version=`` query (KServe answers 501 to it) or gRPC's
  ``version``/``model_version`` fields resolves to ``<name>@<version>``; a malformed one is a 400, an unknown
  one a 404 naming the versions there are.
- **Overload** (``max_queue``, ``queue_timeout_ms``): a model whose queue is full answers 503 with ``Retry-After``
  (gRPC UNAVAILABLE) before the request body is read (``mlkit.serving.overload``).
- **Authentication** (``auth_token_file``): a bearer token on every route but health, readiness and
  /metrics, REST and gRPC alike (``mlkit.serving.auth``).
- A repository without a ready model still starts (KServe would refuse), so models can arrive later.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from fastapi import Request  # at module level: FastAPI resolves the handlers' string annotations here

from mlkit.errors import MlkitError
from mlkit.serving.overload import (
    DEFAULT_KEEP_VERSIONS,
    DEFAULT_MAX_QUEUE,
    DEFAULT_QUEUE_TIMEOUT_MS,
    ServerBusy,
    check_limits,
)

log = logging.getLogger(__name__)

DEFAULT_MAX_PAYLOAD_MB = 16.0
MODEL_CONTROL_MODES = ("none", "poll", "explicit")
DEFAULT_MODEL_CONTROL = "poll"  # incremental learning drops new version folders in and expects them served
_CONTROL_EFFECT = {"none": "with 'none' the server serves what the repository held at start",
                   "poll": "with 'poll' the server loads new version folders by itself"}


class ModelControlDisabled(Exception):
    """A load or unload request while the server's model control is not ``explicit`` (403, PERMISSION_DENIED)."""

    def __init__(self, mode: str) -> None:
        super().__init__(mode)
        self.reason = (f"model control is {mode!r}: loading and unloading through the API needs --model-control "
                       f"explicit (a server option); {_CONTROL_EFFECT[mode]}")

    def __str__(self) -> str:
        return self.reason


def check_model_control(mode: str) -> None:
    if mode not in MODEL_CONTROL_MODES:
        raise MlkitError(f"model control {mode!r} is not one of {', '.join(MODEL_CONTROL_MODES)}")


def _enable_mlkit_loggers() -> None:
    """KServe's logging dictConfig disables loggers created before it; keep ours alive."""
    for name, logger in logging.root.manager.loggerDict.items():
        if name.startswith("mlkit") and isinstance(logger, logging.Logger):
            logger.disabled = False
    mlkit_log = logging.getLogger("mlkit")
    if not mlkit_log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        mlkit_log.addHandler(handler)
        mlkit_log.setLevel(logging.INFO)
        mlkit_log.propagate = False
    # KServe's own v1 routes still use ORJSONResponse: FastAPI warns on the first request, into the server log.
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")


class PayloadLimit:
    """ASGI middleware: refuse request bodies larger than ``max_bytes`` with 400 (not 413, see module doc)."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self._refuse(send, int(length))
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    from kserve.errors import InvalidInput

                    raise InvalidInput(self._message(seen))
            return message

        return await self.app(scope, limited_receive, send)

    def _message(self, size: int) -> str:
        return (f"request body of {size} bytes exceeds the limit of {self.max_bytes} bytes "
                f"(server option --max-payload-mb); send fewer or smaller images")

    async def _refuse(self, send, size: int) -> None:
        import orjson

        body = orjson.dumps({"error": self._message(size)})
        await send({"type": "http.response.start", "status": 400,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _make_dataplane_class():
    from kserve.protocol.dataplane import DataPlane

    class VersionedDataPlane(DataPlane):
        """Resolves a request's ``model_version`` (gRPC field or REST path) to ``<name>@<version>``."""

        async def infer(self, model_name, request, headers=None):
            version = getattr(request, "model_version", None)
            if version:
                model_name = self._model_registry.version_key(model_name, version)
            return await super().infer(model_name, request, headers)

    return VersionedDataPlane


SMALL_JSON_HEAD = 16 * 1024  # bytes of JSON parsed on the event loop (tens of microseconds)


def _small_json_head(headers) -> bool:
    length = headers.get("inference-header-content-length", "")
    return length.isdigit() and int(length) <= SMALL_JSON_HEAD


def _client_errors() -> list[tuple[type, int, str]]:
    """The client's mistakes, as (KServe exception, HTTP status, gRPC status name): KServe's own codes for them,
    logged as one WARNING line by REST and gRPC alike."""
    from kserve.errors import InvalidInput, ModelNotFound

    return [(InvalidInput, 400, "INVALID_ARGUMENT"), (ModelNotFound, 404, "NOT_FOUND"),
            (ModelControlDisabled, 403, "PERMISSION_DENIED")]


def _add_client_error_handlers(app) -> None:
    """KServe's handlers log every client error at ERROR with a 30-line traceback; a bad request is the client's
    problem: one WARNING line, and the same status and message as KServe's."""
    from fastapi.responses import JSONResponse

    def handler_for(status: int):
        async def handler(request: Request, exc: Exception):
            log.warning("%d %s %s: %s", status, request.method, request.url.path, exc)
            return JSONResponse(status_code=status, content={"error": str(exc)})

        return handler

    for exc_type, status, _ in _client_errors():
        app.add_exception_handler(exc_type, handler_for(status))

    async def busy(request: Request, exc: ServerBusy):
        # not logged: a shedding server would flood its log (mlkit_requests_rejected_total counts them)
        return JSONResponse(status_code=503, content={"error": str(exc)},
                            headers={"Retry-After": str(exc.retry_after)})

    app.add_exception_handler(ServerBusy, busy)


def _install_routes(app, dataplane, extension, max_payload_bytes: int, response_delay_ms: float = 0.0,
                    auth_token: str | None = None) -> None:
    """v2 infer/ready/metadata/load routes that run before KServe's own (first registered route wins)."""
    import orjson
    from cloudevents.sdk.converters.util import has_binary_headers
    from fastapi import Response
    from kserve.errors import ModelNotFound, ModelNotReady
    from kserve.protocol.rest.v2_endpoints import V2Endpoints

    from mlkit.serving.payload import parse_v2_rest, v2_rest_response

    kserve_v2 = V2Endpoints(dataplane, extension)

    async def _ready_key(model_name: str, model_version: str | None) -> str:
        key = model_name if not model_version else dataplane.model_registry.version_key(model_name, model_version)
        if dataplane.model_registry.get_model(key) is None:
            raise ModelNotFound(model_name)
        if not await dataplane.model_registry.is_model_ready(key):
            model = dataplane.model_registry.get_model(key)
            raise ModelNotReady(key, getattr(model, "load_error", None) or "")
        return key

    async def infer(request: Request, model_name: str, model_version: str | None = None):
        key = await _ready_key(model_name, model_version)
        check_room = getattr(dataplane.model_registry.get_model(key), "check_room", None)
        if check_room is not None:
            check_room()  # a busy model refuses before the body is even read
        body = await request.body()
        headers = dict(request.headers.items())
        if _small_json_head(headers):  # binary tensors: only a small JSON head to parse, no thread hop
            infer_request = parse_v2_rest(body, headers, model_name, model_version)
        else:
            infer_request = await asyncio.to_thread(parse_v2_rest, body, headers, model_name, model_version)
        response, response_headers = await dataplane.infer(model_name=model_name, request=infer_request,
                                                          headers=headers)
        cloudevent = has_binary_headers(headers) or headers.get("content-type") == "application/cloudevents+json"
        fast = None if cloudevent else v2_rest_response(response)  # KServe wraps cloud events itself
        if fast is not None:
            return _json_response(fast)
        response, res_headers = dataplane.encode(model_name=model_name, response=response, headers=headers,
                                                 req_attributes={})
        response_headers = {k: v for k, v in {**response_headers, **res_headers}.items()
                            if k.lower() in ("inference-header-content-length",)}
        if isinstance(response, bytes):
            return Response(content=response, headers=response_headers, media_type="application/octet-stream")
        return _json_response(response, response_headers)

    def _json_response(doc, headers=None):
        # what FastAPI's ORJSONResponse did, without its per-response deprecation warning
        return Response(content=orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY),
                        headers=headers, media_type="application/json")

    async def infer_route(request: Request):
        params = request.path_params
        version = params.get("model_version")
        if version is None and request.scope.get("query_string"):
            version = request.query_params.get("model_version")
        return await infer(request, params["model_name"], version)

    def _version_of(key: str) -> str:
        return str(dataplane.model_registry.get_model(key).version)  # "01" was asked: "1" is the answer

    async def versioned_ready(model_name: str, model_version: str):
        key = await _ready_key(model_name, model_version)
        return {"name": model_name, "version": _version_of(key), "ready": True}

    async def versioned_metadata(model_name: str, model_version: str):
        key = await _ready_key(model_name, model_version)
        meta = await dataplane.model_metadata(key)
        return {**meta, "name": model_name, "versions": [_version_of(key)]}

    # KServe's routes read ?model_version= and answer 501 "Model versioning not supported yet"
    async def ready_route(model_name: str, model_version: str | None = None):
        if model_version:
            return await versioned_ready(model_name, model_version)
        return await kserve_v2.model_ready(model_name)

    async def metadata_route(model_name: str, model_version: str | None = None):
        if model_version:
            return await versioned_metadata(model_name, model_version)
        return await kserve_v2.model_metadata(model_name)

    async def load_route(model_name: str):
        await extension.load(model_name)
        return {"name": model_name, "load": True}

    # plain Starlette routes: FastAPI's per-request dependency solving costs more than the rest of the route
    app.router.add_route("/v2/models/{model_name}/infer", infer_route, methods=["POST"])
    app.router.add_route("/v2/models/{model_name}/versions/{model_version}/infer", infer_route, methods=["POST"])
    app.add_api_route("/v2/models/{model_name}/versions/{model_version}/ready", versioned_ready,
                      methods=["GET"], response_model=None)
    app.add_api_route("/v2/models/{model_name}/versions/{model_version}", versioned_metadata, methods=["GET"],
                      response_model=None)
    app.add_api_route("/v2/models/{model_name}/ready", ready_route, methods=["GET"], response_model=None)
    app.add_api_route("/v2/models/{model_name}", metadata_route, methods=["GET"], response_model=None)
    app.add_api_route("/v2/repository/models/{model_name}/load", load_route, methods=["POST"], response_model=None)
    app.add_middleware(PayloadLimit, max_bytes=max_payload_bytes)
    if response_delay_ms > 0:
        from mlkit.serving.faults import ResponseDelay

        app.add_middleware(ResponseDelay, delay_ms=response_delay_ms)
    if auth_token is not None:  # added last, so outermost: a request without the token is not even read
        from mlkit.serving.auth import BearerAuth

        app.add_middleware(BearerAuth, token=auth_token)


def _quiet_access_log() -> None:
    access = logging.getLogger("uvicorn.access")  # uvicorn's HTTP protocol logs whenever it has handlers
    access.handlers = []
    access.propagate = False


def _make_extension_class():
    from kserve.errors import ModelNotFound, ModelNotReady
    from kserve.protocol.model_repository_extension import ModelRepositoryExtension

    class ControlledRepositoryExtension(ModelRepositoryExtension):
        """KServe's load/unload (its REST unload route, gRPC RepositoryModelLoad/Unload), refused unless the
        model control is ``explicit``: with ``poll`` the watcher and an API client would fight over the models."""

        def __init__(self, model_registry, model_control: str) -> None:
            super().__init__(model_registry)
            self.model_control = model_control

        def check_control(self) -> None:
            if self.model_control != "explicit":
                raise ModelControlDisabled(self.model_control)

        async def load(self, model_name: str) -> None:
            self.check_control()
            # KServe's own load turns every failure, an unknown name included, into 503 "not ready".
            try:
                ready = await self._model_registry.load(model_name)
            except ModelNotFound:
                raise
            except Exception as exc:  # a broken folder: the log has the details
                raise ModelNotReady(model_name, f"{type(exc).__name__}: {exc}") from None
            if not ready:
                raise ModelNotReady(model_name, "no version could be loaded; the server log says why")

        async def unload(self, model_name: str) -> None:
            self.check_control()
            await super().unload(model_name)

    return ControlledRepositoryExtension


def _make_servicer_class():
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc.servicer import InferenceServicer

    class VersionedServicer(InferenceServicer):
        """KServe's servicer, with ModelReady and ModelMetadata honouring the request's ``version``, and a
        repository API that answers (KServe's reads a result its extension never returns: always INTERNAL)."""

        def __init__(self, data_plane, model_repository_extension) -> None:
            super().__init__(data_plane, model_repository_extension)
            self._extension = model_repository_extension

        async def RepositoryModelLoad(self, request, context):
            await self._extension.load(request.model_name)
            return pb.RepositoryModelLoadResponse(model_name=request.model_name, isLoaded=True)

        async def RepositoryModelUnload(self, request, context):
            await self._extension.unload(request.model_name)
            return pb.RepositoryModelUnloadResponse(model_name=request.model_name, isUnloaded=True)

        def _key(self, name: str, version: str) -> str:
            return self._data_plane.model_registry.version_key(name, version) if version else name

        async def ModelReady(self, request, context):
            ready = await self._data_plane.model_ready(model_name=self._key(request.name, request.version))
            return pb.ModelReadyResponse(ready=ready)

        async def ModelMetadata(self, request, context):
            key = self._key(request.name, request.version)
            meta = await self._data_plane.model_metadata(model_name=key)
            version = self._data_plane.model_registry.get_model(key).version if request.version else None
            return pb.ModelMetadataResponse(name=request.name, platform=meta["platform"], inputs=meta["inputs"],
                                            outputs=meta["outputs"],
                                            versions=[str(version)] if version is not None else [])

    return VersionedServicer


def _make_server_class():
    from kserve import ModelServer
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
    from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor, LoggingInterceptor
    from kserve.protocol.grpc.server import GRPCServer
    from kserve.protocol.rest.server import RESTServer

    class ClientErrorInterceptor(ExceptionToStatusInterceptor):
        """KServe's interceptor logs a bad gRPC request at ERROR with its traceback; like the REST handlers, a
        client error is one WARNING line here, with KServe's status code and message."""

        async def handle_exception(self, ex, request_or_iterator, context, method_name):
            from grpc import StatusCode

            if isinstance(ex, ServerBusy):  # not logged, as on REST
                await context.abort(StatusCode.UNAVAILABLE, ex.reason)
            for kind, _, code in _client_errors():
                if isinstance(ex, kind):
                    log.warning("gRPC %s %s: %s", code, method_name.rsplit("/", 1)[-1], ex.reason)
                    await context.abort(StatusCode[code], ex.reason)
            await super().handle_exception(ex, request_or_iterator, context, method_name)

    class HostGRPCServer(GRPCServer):
        """KServe's gRPC server, bound to ``host`` instead of ``[::]``."""

        def __init__(self, host: str, *args, auth_token: str | None = None, **kw) -> None:
            super().__init__(*args, **kw)
            self._host = host
            self._auth_token = auth_token

        def _interceptors(self) -> tuple:
            interceptors = (LoggingInterceptor(), ClientErrorInterceptor())
            if self._auth_token is None:
                return interceptors
            from mlkit.serving.auth import make_grpc_interceptor

            return (make_grpc_interceptor(self._auth_token), *interceptors)  # first: a refused call runs nothing

        async def start(self, max_workers):
            from concurrent import futures

            from grpc import aio

            servicer = _make_servicer_class()(self._data_plane, self._model_repository_extension)
            self._server = aio.server(
                futures.ThreadPoolExecutor(max_workers=max_workers),
                interceptors=self._interceptors(),
                options=[("grpc.max_send_message_length", self._kwargs["grpc_max_send_message_length"]),
                         ("grpc.max_receive_message_length", self._kwargs["grpc_max_receive_message_length"])])
            grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, self._server)
            host = f"[{self._host}]" if ":" in self._host else self._host
            self._server.add_insecure_port(f"{host}:{self._port}")
            log.info("gRPC listening on %s:%d", self._host, self._port)
            await self._server.start()
            await self._server.wait_for_termination()

    class MlkitRESTServer(RESTServer):
        """KServe's REST server; client errors are logged as one line."""

        def _add_exception_handlers(self, app) -> None:
            super()._add_exception_handlers(app)
            _add_client_error_handlers(app)  # after KServe's, which they replace

    class QuietRESTServer(MlkitRESTServer):
        """KServe's REST server without per-request log lines.

        KServe's only middlewares log: two timing lines per request (wall and CPU) and an optional access
        log. With uvicorn's access line that is three synchronous writes per request, about 0.2 ms of the
        event loop: a tenth of a small model's whole request. Prometheus on /metrics keeps the counts and
        latencies.
        """

        def _add_middlewares(self, app) -> None:
            pass

    class MlkitModelServer(ModelServer):
        """``kserve.ModelServer`` bound to ``host``, with mlkit's routes, payload limit, model control and watcher."""

        def __init__(self, repository, *, host: str = "127.0.0.1", max_payload_bytes: int,
                     model_control: str = DEFAULT_MODEL_CONTROL, response_delay_ms: float = 0.0,
                     access_log: bool = False, auth_token: str | None = None, **kw) -> None:
            super().__init__(registered_models=repository, **kw)
            self.host = host
            self.repository = repository
            self.max_payload_bytes = max_payload_bytes
            self.model_control = model_control
            # Triton's rule: only 'poll' polls; in 'explicit' the API alone changes what is served.
            self.watch = model_control == "poll"
            self.model_repository_extension = _make_extension_class()(repository, model_control)
            self.response_delay_ms = response_delay_ms
            self.access_log = access_log
            self.auth_token = auth_token
            self.dataplane = _make_dataplane_class()(model_registry=repository)
            _enable_mlkit_loggers()

        def start(self, models=None) -> None:  # noqa: D102 - mirrors ModelServer.start, single worker
            from kserve import model_server as kms

            for model in models or []:
                self.register_model(model)
            ready = [n for n, m in self.repository.get_models().items() if m.ready]
            if not ready:
                log.warning("no model is ready under %s; serving anyway (load models later)", self.repository.root)
            _install_routes(kms.app, self.dataplane, self.model_repository_extension, self.max_payload_bytes,
                            self.response_delay_ms, self.auth_token)
            rest_class = MlkitRESTServer if self.access_log else QuietRESTServer
            self._rest_server = rest_class(kms.FASTAPI_APP_IMPORT_STRING, self.dataplane,
                                           self.model_repository_extension, self.http_port,
                                           grace_period=self.grace_period, event_loop="asyncio",
                                           timeout_keep_alive=self.timeout_keep_alive)
            self._rest_server.config.host = self.host  # uvicorn.Server reads it when it binds
            if not self.access_log:
                _quiet_access_log()
            self.servers.append(self._rest_server.start())
            if self.enable_grpc:
                kwargs = {"grpc_max_send_message_length": kms.args.grpc_max_send_message_length,
                          "grpc_max_receive_message_length": self.max_payload_bytes}
                self._grpc_server = HostGRPCServer(self.host, self.grpc_port, self.dataplane,
                                                   self.model_repository_extension, kwargs=kwargs,
                                                   grace_period=self.grace_period, auth_token=self.auth_token)
                self.servers.append(self._grpc_server.start(self.max_threads))
            if self.watch:
                self.servers.append(self.repository.watch())
            log.info("mlkit model server on http://%s:%d (gRPC %s:%d), model control %s, auth %s, models: %s",
                     self.host, self.http_port, self.host, self.grpc_port, self.model_control,
                     "bearer token" if self.auth_token else "off", ready)
            self.setup_event_loop()
            self.register_signal_handler()
            asyncio.run(self._serve())

        def stop(self, sig: int) -> None:
            self.repository.stop_watching()
            if self._rest_server is not None:
                self._rest_server._server.should_exit = True
            super().stop(sig)

    return MlkitModelServer


def build_server(model_dir: str | Path, http_port: int = 8080, grpc_port: int = 8081, host: str = "127.0.0.1",
                 max_batch_size: int = 1, max_latency_ms: float = 5.0, num_threads: int = 1, instances: int = 1,
                 max_payload_mb: float = DEFAULT_MAX_PAYLOAD_MB, poll_seconds: float = 2.0,
                 watch: bool = True, enable_grpc: bool = True, response_delay_ms: float = 0.0,
                 graph_config: str | Path | None = None, graph_step: str | None = None, access_log: bool = False,
                 model_control: str = DEFAULT_MODEL_CONTROL, auth_token_file: str | Path | None = None,
                 max_queue: int = DEFAULT_MAX_QUEUE, queue_timeout_ms: float = DEFAULT_QUEUE_TIMEOUT_MS,
                 keep_versions: int = DEFAULT_KEEP_VERSIONS):
    """Load every model under ``model_dir`` and return a ready-to-``start()`` server (not started).

    ``model_control`` (one of ``MODEL_CONTROL_MODES``, as Triton's): ``poll`` watches the folder for new
    versions every ``poll_seconds``; ``none`` serves what is there now; ``explicit`` serves what is there now
    and lets clients load and unload models through the repository API, the only mode that does.
    ``watch=False`` (the older switch) makes ``poll`` ``none``.

    ``graph_config``: a pipeline config (``mlkit.serving.graph``) whose models and pipelines are served too
    (``model_dir`` may then be None); ``graph_step`` (``PIPELINE/NODE``): serve only that node, as one step
    of a KServe InferenceGraph. ``access_log``: log a line per request (off by default; see /metrics).
    ``auth_token_file``: a file holding a bearer token that every route but health, readiness and /metrics then
    requires (``mlkit.serving.auth``). ``max_queue`` (0: unbounded) and ``queue_timeout_ms`` (0: none): overload
    protection per model version (``mlkit.serving.overload``). ``keep_versions``: how many of a model's newest
    versions stay loaded (older ones are unloaded when a new one arrives).
    """
    from mlkit.serving.auth import read_token_file
    from mlkit.serving.repository import TFLiteModelRepository

    if graph_step is not None:
        model_dir = None  # a step serves its node only, whatever else the storage holds
    if model_dir is None and graph_config is None:
        raise MlkitError("give a model folder, a pipeline config (graph_config), or both")
    model_dir = Path(model_dir) if model_dir is not None else None
    if model_dir is not None and not model_dir.is_dir():
        raise MlkitError(f"model folder {model_dir} does not exist (expected <name>/<version>/model.tflite)")
    if max_batch_size < 1:
        raise MlkitError(f"max_batch_size must be >= 1, got {max_batch_size}")
    if max_latency_ms < 0 or max_payload_mb <= 0 or num_threads < 1 or poll_seconds <= 0:
        raise MlkitError("max_latency_ms must be >= 0, max_payload_mb and poll_seconds > 0, threads >= 1")
    if instances < 1 or keep_versions < 1:
        raise MlkitError(f"instances and keep_versions must be >= 1, got {instances} and {keep_versions}")
    if response_delay_ms < 0:
        raise MlkitError(f"response_delay_ms must be >= 0, got {response_delay_ms}")
    check_model_control(model_control)
    try:
        check_limits(max_queue, queue_timeout_ms)
    except ValueError as exc:
        raise MlkitError(str(exc)) from None
    auth_token = None if auth_token_file is None else read_token_file(auth_token_file)
    if not watch and model_control == "poll":
        model_control = "none"
    repository = TFLiteModelRepository(model_dir, num_threads=num_threads, max_batch_size=max_batch_size,
                                       max_latency_ms=max_latency_ms, poll_seconds=poll_seconds, instances=instances,
                                       max_queue=max_queue, queue_timeout_ms=queue_timeout_ms,
                                       keep_versions=keep_versions)
    server = _make_server_class()(repository, host=host, max_payload_bytes=int(max_payload_mb * 1024 * 1024),
                                  model_control=model_control, http_port=http_port, grpc_port=grpc_port,
                                  enable_grpc=enable_grpc, grace_period=2, enable_latency_logging=False,
                                  response_delay_ms=response_delay_ms, access_log=access_log,
                                  auth_token=auth_token)
    repository.load_models()
    if graph_config is not None:
        from mlkit.serving.graph.serving import attach_graph

        attach_graph(repository, graph_config, step=graph_step)
    return server


def run_server(model_dir: str | Path | None, **kw) -> None:
    """Build and run the server until SIGINT/SIGTERM (same keywords as ``build_server``)."""
    build_server(model_dir, **kw).start()


# --- a server in a background process (tests, notebooks) ---------------------------------------------

def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class BackgroundServer:
    """A ``python -m mlkit.serving`` subprocess; ``stop()`` (or leaving the ``with`` block) ends it."""

    def __init__(self, proc: subprocess.Popen, url: str, grpc_url: str, log_path: Path) -> None:
        self.proc, self.url, self.grpc_url, self.log_path = proc, url, grpc_url, log_path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def entrypoint_command(host: str, http_port: int, grpc_port: int, *, max_batch_size: int, max_latency_ms: float,
                       threads: int, instances: int, model_control: str = DEFAULT_MODEL_CONTROL,
                       auth_token_file: str | Path | None = None, max_queue: int = DEFAULT_MAX_QUEUE,
                       queue_timeout_ms: float = DEFAULT_QUEUE_TIMEOUT_MS,
                       keep_versions: int = DEFAULT_KEEP_VERSIONS) -> list[str]:
    """``python -m mlkit.serving`` with the options every local launcher passes (add the model folder etc.)."""
    check_model_control(model_control)
    auth = ["--auth-token-file", str(Path(auth_token_file).resolve())] if auth_token_file is not None else []
    return [sys.executable, "-m", "mlkit.serving", "--host", host, "--http-port", str(http_port),
            "--grpc-port", str(grpc_port), "--max-batch-size", str(max_batch_size),
            "--max-latency-ms", str(max_latency_ms), "--threads", str(threads), "--instances", str(instances),
            "--model-control", model_control, "--max-queue", str(max_queue),
            "--queue-timeout-ms", f"{queue_timeout_ms:g}", "--keep-versions", str(keep_versions), *auth]


def start_background_server(model_dir: str | Path | None, *, max_batch_size: int = 1, max_latency_ms: float = 5.0,
                            num_threads: int = 1, instances: int = 1, max_payload_mb: float = DEFAULT_MAX_PAYLOAD_MB,
                            poll_seconds: float = 2.0, timeout: float = 60.0,
                            log_path: str | Path | None = None, http_port: int | None = None,
                            response_delay_ms: float = 0.0,
                            graph_config: str | Path | None = None,
                            cpus: set[int] | None = None, access_log: bool = False,
                            model_control: str = DEFAULT_MODEL_CONTROL,
                            auth_token_file: str | Path | None = None, max_queue: int = DEFAULT_MAX_QUEUE,
                            queue_timeout_ms: float = DEFAULT_QUEUE_TIMEOUT_MS,
                            keep_versions: int = DEFAULT_KEEP_VERSIONS) -> BackgroundServer:
    """Start a server on 127.0.0.1 (free ports) in a subprocess; returns once ``/v2/health/ready`` answers.

    ``cpus`` pins the server (every thread it will start) to those CPU numbers, Linux only: benchmarks use it to
    keep a "remote" server off the cores the client measures on.
    """
    import httpx

    http_port, grpc_port = http_port or free_port(), free_port()
    log_path = Path(log_path) if log_path else Path(tempfile.mkstemp(prefix="mlkit-serve-", suffix=".log")[1])
    cmd = entrypoint_command("127.0.0.1", http_port, grpc_port, max_batch_size=max_batch_size,
                             max_latency_ms=max_latency_ms, threads=num_threads, instances=instances,
                             model_control=model_control, auth_token_file=auth_token_file,
                             max_queue=max_queue, queue_timeout_ms=queue_timeout_ms, keep_versions=keep_versions)
    cmd += ["--max-payload-mb", str(max_payload_mb), "--poll-seconds", str(poll_seconds),
            "--response-delay-ms", str(response_delay_ms)]
    cmd += ["--model-dir", str(model_dir)] if model_dir is not None else []
    cmd += ["--graph-config", str(graph_config)] if graph_config is not None else []
    cmd += ["--access-log"] if access_log else []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if cpus is not None and not hasattr(os, "sched_setaffinity"):
        raise MlkitError("pinning the server to CPUs needs Linux (os.sched_setaffinity)")
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env)
    if cpus is not None:
        # Pinned while the interpreter is still starting: every thread it creates later inherits the mask.
        # (preexec_fn would do it before exec, but is unsafe in a process that has threads.)
        os.sched_setaffinity(proc.pid, cpus)
    handle = BackgroundServer(proc, f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}", log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise MlkitError(f"the model server exited with code {proc.returncode}:\n{handle.log_text()[-3000:]}")
        try:
            if httpx.get(f"{handle.url}/v2/health/ready", timeout=1.0).status_code == 200:
                return handle
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    handle.stop()
    raise MlkitError(f"the model server did not become ready within {timeout}s:\n{handle.log_text()[-3000:]}")
