"""Bearer-token authentication for the model server, and the token file its clients read.

A server started with ``--auth-token-file FILE`` (or ``$MLKIT_AUTH_TOKEN_FILE``, read in ``token_file_option``
only) answers every route except health, readiness and metrics only to requests carrying
``Authorization: Bearer <token>`` (gRPC: metadata ``authorization`` with the same value). Anything else gets
401 with a JSON error and ``WWW-Authenticate: Bearer`` (gRPC: UNAUTHENTICATED). Tokens are compared in constant
time and never logged; the refusal's log line names the method and path only.

Open routes: Kubernetes probes and Prometheus scrape them without credentials, and they say nothing about the
models. Model listing, model readiness (its 404 would reveal which names exist), metadata, inference and the
repository API need the token.
"""

from __future__ import annotations

import hmac
import logging
import os
from pathlib import Path

from mlkit.errors import MlkitError

log = logging.getLogger("mlkit.serving.server")  # the server's logger: the refusals belong with its other lines

TOKEN_FILE_ENV = "MLKIT_AUTH_TOKEN_FILE"
OPEN_PATHS = frozenset({"/", "/v2/health/live", "/v2/health/ready", "/metrics"})
OPEN_GRPC_METHODS = frozenset({"ServerLive", "ServerReady"})
_SCHEME = "bearer"

MISSING = ("this server requires a bearer token: send the header 'Authorization: Bearer <token>' with the token "
           "in the server's --auth-token-file (mlkit clients: token=... or --auth-token-file FILE)")
WRONG = "the bearer token was refused: it is not the one in the server's --auth-token-file"
MALFORMED = "the Authorization header must be 'Bearer <token>' (one space, no other scheme)"


def token_file_option(value: str | Path | None) -> Path | None:
    """The ``--auth-token-file`` given, else ``$MLKIT_AUTH_TOKEN_FILE`` (the one place it is read), else None."""
    if value:
        return Path(value)
    env = os.environ.get(TOKEN_FILE_ENV, "").strip()
    return Path(env) if env else None


def read_token_file(path: str | Path) -> str:
    """The token in ``path``, surrounding whitespace stripped; ``MlkitError`` naming the file when there is none."""
    path = Path(path)
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise MlkitError(f"cannot read the auth token file {path}: {why}; give a readable file holding the token "
                         f"(e.g. made with: openssl rand -hex 32 > {path})") from None
    if not token:
        raise MlkitError(f"the auth token file {path} is empty; write the token into it "
                         f"(e.g. openssl rand -hex 32 > {path})")
    if not token.isascii() or not token.isprintable() or any(c.isspace() for c in token):
        raise MlkitError(f"the auth token in {path} must be one word of printable ASCII (no spaces or line breaks), "
                         f"as an HTTP header carries it")
    return token


def bearer(token: str) -> str:
    """The ``Authorization`` header value for ``token``."""
    return f"Bearer {token}"


def check_authorization(header: bytes | str | None, token: bytes) -> str | None:
    """None when ``header`` carries ``token``, else the reason for the 401 (the token itself never appears)."""
    if not header:
        return MISSING
    if isinstance(header, str):
        header = header.encode("latin-1", "replace")
    scheme, _, presented = header.partition(b" ")
    if scheme.decode("latin-1").lower() != _SCHEME or not presented:
        return MALFORMED
    return None if hmac.compare_digest(presented.strip(), token) else WRONG


class BearerAuth:
    """ASGI middleware: the token on every HTTP route but ``OPEN_PATHS``, else 401 before the app sees the request."""

    def __init__(self, app, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        headers = scope.get("headers") or []
        header = next((value for name, value in headers if name == b"authorization"), None)
        reason = check_authorization(header, self.token)
        if reason is not None:
            log.warning("401 %s %s: %s", scope.get("method", ""), scope["path"], short_reason(reason))
            return await _refuse(send, reason)
        # The app and the models get the request without the credential (nothing downstream can log it).
        scope = {**scope, "headers": [(n, v) for n, v in headers if n != b"authorization"]}
        return await self.app(scope, receive, send)


def short_reason(reason: str) -> str:
    return reason.split(":", 1)[0]


async def _refuse(send, reason: str) -> None:
    import orjson

    body = orjson.dumps({"error": reason})
    challenge = b'Bearer error="invalid_token"' if reason == WRONG else b"Bearer"
    await send({"type": "http.response.start", "status": 401,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"www-authenticate", challenge)]})
    await send({"type": "http.response.body", "body": body})
