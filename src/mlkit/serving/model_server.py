"""KServe's ModelServer as mlkit runs it: bound to a host, with versions, model control, mlkit's REST routes and
gRPC server, and the repository watcher (what each adds to KServe, and why: ``mlkit.serving.server``).

Importing this module imports KServe; ``mlkit.serving.server.build_server`` does it only when a server is built.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import warnings

from kserve import ModelServer
from kserve import model_server as kms
from kserve.errors import ModelNotFound, ModelNotReady
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.model_repository_extension import ModelRepositoryExtension

from mlkit.serving.grpc_server import HostGRPCServer
from mlkit.serving.options import DEFAULT_MODEL_CONTROL, ModelControlDisabled
from mlkit.serving.rest import MlkitRESTServer, QuietRESTServer, install_routes, quiet_access_log

log = logging.getLogger("mlkit.serving.server")  # one logger for the whole server's lines


def enable_mlkit_loggers() -> None:
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


class VersionedDataPlane(DataPlane):
    """Resolves a request's ``model_version`` (gRPC field or REST path) to ``<name>@<version>``."""

    async def infer(self, model_name, request, headers=None):
        version = getattr(request, "model_version", None)
        if version:
            model_name = self._model_registry.version_key(model_name, version)
        return await super().infer(model_name, request, headers)


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
        self.model_repository_extension = ControlledRepositoryExtension(repository, model_control)
        self.response_delay_ms = response_delay_ms
        self.access_log = access_log
        self.auth_token = auth_token
        self.dataplane = VersionedDataPlane(model_registry=repository)
        enable_mlkit_loggers()

    def start(self, models=None) -> None:  # noqa: D102 - mirrors ModelServer.start, single worker
        for model in models or []:
            self.register_model(model)
        ready = [n for n, m in self.repository.get_models().items() if m.ready]
        if not ready:
            log.warning("no model is ready under %s; serving anyway (load models later)", self.repository.root)
        install_routes(kms.app, self.dataplane, self.model_repository_extension, self.max_payload_bytes,
                       self.response_delay_ms, self.auth_token)
        rest_class = MlkitRESTServer if self.access_log else QuietRESTServer
        self._rest_server = rest_class(kms.FASTAPI_APP_IMPORT_STRING, self.dataplane,
                                       self.model_repository_extension, self.http_port,
                                       grace_period=self.grace_period, event_loop="asyncio",
                                       timeout_keep_alive=self.timeout_keep_alive)
        self._rest_server.config.host = self.host  # uvicorn.Server reads it when it binds
        if not self.access_log:
            quiet_access_log()
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
