"""The REST side of the model server: mlkit's v2 routes (ahead of KServe's), the payload limit, and how errors
and a busy model are answered (see ``mlkit.serving.server`` for what each adds to KServe, and why)."""

from __future__ import annotations

import asyncio
import logging

import orjson
from cloudevents.sdk.converters.util import has_binary_headers
from fastapi import Request, Response  # at module level: FastAPI resolves the handlers' string annotations here
from fastapi.responses import JSONResponse
from kserve.errors import ModelNotFound, ModelNotReady
from kserve.protocol.rest.server import RESTServer
from kserve.protocol.rest.v2_endpoints import V2Endpoints

from mlkit.serving.auth import BearerAuth
from mlkit.serving.faults import ResponseDelay
from mlkit.serving.overload import ServerBusy
from mlkit.serving.payload import parse_v2_rest, v2_rest_response
from mlkit.serving.status import CLIENT_ERRORS

log = logging.getLogger("mlkit.serving.server")  # one logger for the whole server's lines


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


SMALL_JSON_HEAD = 16 * 1024  # bytes of JSON parsed on the event loop (tens of microseconds)


def small_json_head(headers) -> bool:
    length = headers.get("inference-header-content-length", "")
    return length.isdigit() and int(length) <= SMALL_JSON_HEAD


def add_client_error_handlers(app) -> None:
    """KServe's handlers log every client error at ERROR with a 30-line traceback; a bad request is the client's
    problem: one WARNING line, and the same status and message as KServe's."""
    def handler_for(status: int):
        async def handler(request: Request, exc: Exception):
            log.warning("%d %s %s: %s", status, request.method, request.url.path, exc)
            return JSONResponse(status_code=status, content={"error": str(exc)})

        return handler

    for exc_type, status, _ in CLIENT_ERRORS:
        app.add_exception_handler(exc_type, handler_for(status))

    async def busy(request: Request, exc: ServerBusy):
        # not logged: a shedding server would flood its log (mlkit_requests_rejected_total counts them)
        return JSONResponse(status_code=503, content={"error": str(exc)},
                            headers={"Retry-After": str(exc.retry_after)})

    app.add_exception_handler(ServerBusy, busy)


def _json_response(doc, headers=None) -> Response:
    # what FastAPI's ORJSONResponse did, without its per-response deprecation warning
    return Response(content=orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY),
                    headers=headers, media_type="application/json")


class V2Routes:
    """mlkit's v2 infer, ready, metadata and load routes over KServe's dataplane; ``install`` registers them ahead of
    KServe's own (the first registered route wins) with the middlewares."""

    def __init__(self, dataplane, extension) -> None:
        self.dataplane = dataplane
        self.extension = extension
        self.kserve_v2 = V2Endpoints(dataplane, extension)

    @property
    def registry(self):
        return self.dataplane.model_registry

    async def ready_key(self, model_name: str, model_version: str | None) -> str:
        """The registry key of a ready model (``name`` or ``name@version``); 400, 404 or 503 otherwise."""
        key = model_name if not model_version else self.registry.version_key(model_name, model_version)
        if self.registry.get_model(key) is None:
            raise ModelNotFound(model_name)
        if not await self.registry.is_model_ready(key):
            model = self.registry.get_model(key)
            raise ModelNotReady(key, getattr(model, "load_error", None) or "")
        return key

    async def infer(self, request: Request, model_name: str, model_version: str | None = None):
        key = await self.ready_key(model_name, model_version)
        check_room = getattr(self.registry.get_model(key), "check_room", None)
        if check_room is not None:
            check_room()  # a busy model refuses before the body is even read
        body = await request.body()
        headers = dict(request.headers.items())
        if small_json_head(headers):  # binary tensors: only a small JSON head to parse, no thread hop
            infer_request = parse_v2_rest(body, headers, model_name, model_version)
        else:
            infer_request = await asyncio.to_thread(parse_v2_rest, body, headers, model_name, model_version)
        response, response_headers = await self.dataplane.infer(model_name=model_name, request=infer_request,
                                                               headers=headers)
        cloudevent = has_binary_headers(headers) or headers.get("content-type") == "application/cloudevents+json"
        fast = None if cloudevent else v2_rest_response(response)  # KServe wraps cloud events itself
        if fast is not None:
            return _json_response(fast)
        response, res_headers = self.dataplane.encode(model_name=model_name, response=response, headers=headers,
                                                      req_attributes={})
        response_headers = {k: v for k, v in {**response_headers, **res_headers}.items()
                            if k.lower() in ("inference-header-content-length",)}
        if isinstance(response, bytes):
            return Response(content=response, headers=response_headers, media_type="application/octet-stream")
        return _json_response(response, response_headers)

    async def infer_route(self, request: Request):
        params = request.path_params
        version = params.get("model_version")
        if version is None and request.scope.get("query_string"):
            version = request.query_params.get("model_version")
        return await self.infer(request, params["model_name"], version)

    def _version_of(self, key: str) -> str:
        return str(self.registry.get_model(key).version)  # "01" was asked: "1" is the answer

    async def versioned_ready(self, model_name: str, model_version: str):
        key = await self.ready_key(model_name, model_version)
        return {"name": model_name, "version": self._version_of(key), "ready": True}

    async def versioned_metadata(self, model_name: str, model_version: str):
        key = await self.ready_key(model_name, model_version)
        meta = await self.dataplane.model_metadata(key)
        return {**meta, "name": model_name, "versions": [self._version_of(key)]}

    # KServe's routes read ?model_version= and answer 501 "Model versioning not supported yet"
    async def ready_route(self, model_name: str, model_version: str | None = None):
        if model_version:
            return await self.versioned_ready(model_name, model_version)
        return await self.kserve_v2.model_ready(model_name)

    async def metadata_route(self, model_name: str, model_version: str | None = None):
        if model_version:
            return await self.versioned_metadata(model_name, model_version)
        return await self.kserve_v2.model_metadata(model_name)

    async def load_route(self, model_name: str):
        await self.extension.load(model_name)
        return {"name": model_name, "load": True}

    def install(self, app, max_payload_bytes: int, response_delay_ms: float = 0.0,
                auth_token: str | None = None) -> None:
        # plain Starlette routes for infer: FastAPI's per-request dependency solving costs more than the route
        app.router.add_route("/v2/models/{model_name}/infer", self.infer_route, methods=["POST"])
        app.router.add_route("/v2/models/{model_name}/versions/{model_version}/infer", self.infer_route,
                             methods=["POST"])
        for path, endpoint, method in (
                ("/v2/models/{model_name}/versions/{model_version}/ready", self.versioned_ready, "GET"),
                ("/v2/models/{model_name}/versions/{model_version}", self.versioned_metadata, "GET"),
                ("/v2/models/{model_name}/ready", self.ready_route, "GET"),
                ("/v2/models/{model_name}", self.metadata_route, "GET"),
                ("/v2/repository/models/{model_name}/load", self.load_route, "POST")):
            app.add_api_route(path, endpoint, methods=[method], response_model=None)
        app.add_middleware(PayloadLimit, max_bytes=max_payload_bytes)
        if response_delay_ms > 0:
            app.add_middleware(ResponseDelay, delay_ms=response_delay_ms)
        if auth_token is not None:  # added last, so outermost: a request without the token is not even read
            app.add_middleware(BearerAuth, token=auth_token)


def install_routes(app, dataplane, extension, max_payload_bytes: int, response_delay_ms: float = 0.0,
                   auth_token: str | None = None) -> None:
    """mlkit's v2 routes and middlewares on ``app`` (``V2Routes``)."""
    V2Routes(dataplane, extension).install(app, max_payload_bytes, response_delay_ms, auth_token)


def quiet_access_log() -> None:
    access = logging.getLogger("uvicorn.access")  # uvicorn's HTTP protocol logs whenever it has handlers
    access.handlers = []
    access.propagate = False


class MlkitRESTServer(RESTServer):
    """KServe's REST server; client errors are logged as one line."""

    def _add_exception_handlers(self, app) -> None:
        super()._add_exception_handlers(app)
        add_client_error_handlers(app)  # after KServe's, which they replace


class QuietRESTServer(MlkitRESTServer):
    """KServe's REST server without per-request log lines.

    KServe's only middlewares log: two timing lines per request (wall and CPU) and an optional access
    log. With uvicorn's access line that is three synchronous writes per request, about 0.2 ms of the
    event loop: a tenth of a small model's whole request. Prometheus on /metrics keeps the counts and
    latencies.
    """

    def _add_middlewares(self, app) -> None:
        pass
