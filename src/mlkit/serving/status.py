"""How the server's exceptions reach a client: HTTP status and gRPC status code, the same on REST and gRPC."""

from __future__ import annotations

from kserve.errors import InvalidInput, ModelNotFound

from mlkit.serving.options import ModelControlDisabled

# The client's mistakes, as (exception, HTTP status, gRPC status name): KServe's own codes for them, logged as one
# WARNING line by REST and gRPC alike. A busy server (mlkit.serving.overload.ServerBusy) is 503 / UNAVAILABLE.
CLIENT_ERRORS: tuple[tuple[type[Exception], int, str], ...] = (
    (InvalidInput, 400, "INVALID_ARGUMENT"), (ModelNotFound, 404, "NOT_FOUND"),
    (ModelControlDisabled, 403, "PERMISSION_DENIED"))
