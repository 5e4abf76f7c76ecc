"""The gRPC side of the model server: KServe's v2 service bound to a host, with versions honoured, a repository API
that answers, one-line client errors and the bearer token (see ``mlkit.serving.server``)."""

from __future__ import annotations

import logging
from concurrent import futures

import grpc
from grpc import StatusCode, aio
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor, LoggingInterceptor
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.grpc.servicer import InferenceServicer

from mlkit.serving.auth import OPEN_GRPC_METHODS, check_authorization, short_reason
from mlkit.serving.overload import ServerBusy
from mlkit.serving.status import CLIENT_ERRORS

log = logging.getLogger("mlkit.serving.server")  # one logger for the whole server's lines


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


class ClientErrorInterceptor(ExceptionToStatusInterceptor):
    """KServe's interceptor logs a bad gRPC request at ERROR with its traceback; like the REST handlers, a
    client error is one WARNING line here, with KServe's status code and message."""

    async def handle_exception(self, ex, request_or_iterator, context, method_name):
        if isinstance(ex, ServerBusy):  # not logged, as on REST
            await context.abort(StatusCode.UNAVAILABLE, ex.reason)
        for kind, _, code in CLIENT_ERRORS:
            if isinstance(ex, kind):
                log.warning("gRPC %s %s: %s", code, method_name.rsplit("/", 1)[-1], ex.reason)
                await context.abort(StatusCode[code], ex.reason)
        await super().handle_exception(ex, request_or_iterator, context, method_name)


def _refusal(handler, reason: str):
    """A handler that aborts with UNAUTHENTICATED; it keeps the method's deserializer, so the call reads normally
    (every method of KServe's v2 service is unary-unary)."""
    async def abort(request, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)

    return grpc.unary_unary_rpc_method_handler(abort, request_deserializer=handler.request_deserializer,
                                               response_serializer=handler.response_serializer)


class BearerAuthInterceptor(aio.ServerInterceptor):
    """Refuses calls without the token (UNAUTHENTICATED), health calls aside (``mlkit.serving.auth``)."""

    def __init__(self, token: str) -> None:
        self.expected = token.encode()

    async def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method.rsplit("/", 1)[-1]
        handler = await continuation(handler_call_details)
        if handler is None or method in OPEN_GRPC_METHODS:
            return handler
        metadata = dict(handler_call_details.invocation_metadata or ())
        reason = check_authorization(metadata.get("authorization"), self.expected)
        if reason is None:
            return handler
        log.warning("gRPC UNAUTHENTICATED %s: %s", method, short_reason(reason))
        return _refusal(handler, reason)


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
        return (BearerAuthInterceptor(self._auth_token), *interceptors)  # first: a refused call runs nothing

    async def start(self, max_workers):
        servicer = VersionedServicer(self._data_plane, self._model_repository_extension)
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
