"""A server started with a bearer token (``--auth-token-file``): REST and gRPC refuse requests without it (401 /
UNAUTHENTICATED), health, readiness and metrics stay open, the token never reaches the log, and mlkit's own clients
pass it. Real servers on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
import time

import grpc
import httpx
import pytest
from click.testing import CliRunner

from mlkit.errors import MlkitError

TOKEN = "s3cret-Token_0123456789abcdef"
WRONG = "not-the-token"


@pytest.fixture(scope="module")
def token_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("auth") / "token"
    path.write_text(f"  {TOKEN}\n")  # surrounding whitespace is not part of the token
    return path


@pytest.fixture(scope="module")
def auth_server(model_repo, token_file, tmp_path_factory):
    from mlkit.serving.server import start_background_server

    # the access log on: the most a server writes per request, none of which may carry the token
    handle = start_background_server(model_repo, auth_token_file=token_file, access_log=True,
                                     log_path=tmp_path_factory.mktemp("log") / "server.log")
    yield handle
    handle.stop()


def bearer(token: str = TOKEN) -> dict:
    return {"Authorization": f"Bearer {token}"}


PROTECTED = [("POST", "/v2/models/helmet/infer"), ("POST", "/v2/models/helmet/versions/1/infer"),
             ("POST", "/v1/models/helmet:predict"), ("GET", "/v2/models/helmet"), ("GET", "/v2/models/helmet/ready"),
             ("GET", "/v2/models"), ("GET", "/v1/models"), ("GET", "/v1/models/helmet"), ("GET", "/v2"),
             ("POST", "/v2/repository/models/helmet/load"), ("POST", "/v2/repository/models/helmet/unload")]


@pytest.mark.parametrize("method, path", PROTECTED)
def test_protected_routes_answer_401_without_the_token(auth_server, method, path):
    r = httpx.request(method, auth_server.url + path, json={}, timeout=10)
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"] == "Bearer"
    assert "requires a bearer token" in r.json()["error"] and "--auth-token-file" in r.json()["error"]


@pytest.mark.parametrize("header, message", [
    (f"Bearer {WRONG}", "token was refused"), (f"Bearer {TOKEN}x", "token was refused"),
    (f"Basic {TOKEN}", "must be 'Bearer <token>'"), ("Bearer", "must be 'Bearer <token>'")])
def test_a_wrong_or_malformed_token_is_401(auth_server, images, h, header, message):
    body, headers = h.v2_binary(images[:1])
    r = httpx.post(f"{auth_server.url}/v2/models/helmet/infer", content=body,
                   headers={**headers, "Authorization": header}, timeout=10)
    assert r.status_code == 401 and message in r.json()["error"]
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_the_token_opens_every_route(auth_server, images, h):
    body, headers = h.v2_binary(images[:2], {"score_threshold": h.SCORE})
    r = httpx.post(f"{auth_server.url}/v2/models/helmet/infer", content=body, headers={**headers, **bearer()},
                   timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["shape"][0] == 2
    lower = {"authorization": f"bearer {TOKEN}"}  # the scheme is case-insensitive (RFC 7235)
    for path in ("/v2/models/helmet", "/v2/models/helmet/ready", "/v2/models", "/v1/models/helmet"):
        assert httpx.get(auth_server.url + path, headers=lower, timeout=10).status_code == 200, path
    # the repository API answers as without authentication: refused by the model control, not by the token
    assert httpx.post(f"{auth_server.url}/v2/repository/models/helmet/load", headers=bearer()).status_code == 403


@pytest.mark.parametrize("path", ["/", "/v2/health/live", "/v2/health/ready", "/metrics"])
def test_health_readiness_and_metrics_stay_open(auth_server, path):
    assert httpx.get(auth_server.url + path, timeout=10).status_code == 200


def _grpc_call(server, method: str, request, metadata=()):
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc

    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)
        return getattr(stub, method)(request, timeout=10, metadata=metadata)


def test_grpc_refuses_calls_without_the_token_but_not_health(auth_server):
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    calls = [("ModelInfer", pb.ModelInferRequest(model_name="helmet")),
             ("ModelMetadata", pb.ModelMetadataRequest(name="helmet")),
             ("ModelReady", pb.ModelReadyRequest(name="helmet")),
             ("ServerMetadata", pb.ServerMetadataRequest()),
             ("RepositoryModelLoad", pb.RepositoryModelLoadRequest(model_name="helmet"))]
    for metadata, reason in (((), "requires a bearer token"), ((("authorization", f"Bearer {WRONG}"),), "refused")):
        for method, request in calls:
            with pytest.raises(grpc.RpcError) as info:
                _grpc_call(auth_server, method, request, metadata)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, method
            assert reason in info.value.details()
    assert _grpc_call(auth_server, "ServerLive", pb.ServerLiveRequest()).live
    assert _grpc_call(auth_server, "ServerReady", pb.ServerReadyRequest()).ready
    ok = (("authorization", f"Bearer {TOKEN}"),)
    assert _grpc_call(auth_server, "ModelReady", pb.ModelReadyRequest(name="helmet"), ok).ready
    assert _grpc_call(auth_server, "ModelMetadata", pb.ModelMetadataRequest(name="helmet"), ok).name == "helmet"


def test_the_token_never_reaches_the_log(auth_server, images, h):
    """Refusals are one WARNING line naming the route; client errors with the right token log no header."""
    body, headers = h.v2_binary(images[:1])
    url = f"{auth_server.url}/v2/models/helmet/infer"
    assert httpx.post(url, content=body, headers={**headers, **bearer(WRONG)}).status_code == 401
    assert httpx.post(url, content=b"{not json", headers=bearer()).status_code == 400  # the client-error line
    assert httpx.get(f"{auth_server.url}/v2/models/helmet/versions/x", headers=bearer()).status_code == 400
    assert httpx.post(url, content=body, headers={**headers, **bearer()}).status_code == 200
    for _ in range(50):  # the server writes its log asynchronously
        if "400 GET /v2/models/helmet/versions/x" in auth_server.log_text():
            break
        time.sleep(0.1)
    log = auth_server.log_text()
    assert "401 POST /v2/models/helmet/infer: the bearer token was refused" in log
    assert "400 POST /v2/models/helmet/infer" in log
    assert TOKEN not in log and WRONG not in log
    assert "Traceback" not in log


# --------------------------------------------------------------------------- mlkit's clients
def test_serving_client_passes_the_token(auth_server, images, h):
    from mlkit.client.http import ServingClient, ServingError

    with ServingClient(auth_server.url, "helmet", token=TOKEN, timeout=30) as client:
        client.wait_ready(timeout=10)
        assert len(client.predict(images[:2], score_threshold=h.SCORE)) == 2
    for token, message in ((None, "requires a bearer token"), (WRONG, "token was refused")):
        with ServingClient(auth_server.url, "helmet", token=token, retries=0) as client:
            with pytest.raises(ServingError, match=message) as info:
                client.predict(images[:1])
            assert info.value.status == 401
            started = time.monotonic()
            with pytest.raises(ServingError, match="401"):  # at once: a token does not get better by waiting
                client.wait_ready(timeout=30)
            assert time.monotonic() - started < 5


def test_async_serving_client_passes_the_token(auth_server, images):
    import asyncio

    from mlkit.client.http import AsyncServingClient, ServingError

    async def run():
        async with AsyncServingClient(auth_server.url, "helmet", token=TOKEN) as client:
            assert await client.ready() and len(await client.predict(images[:1])) == 1
        async with AsyncServingClient(auth_server.url, "helmet", retries=0) as client:
            with pytest.raises(ServingError, match="401: this server requires a bearer token"):
                await client.predict(images[:1])

    asyncio.run(run())


def test_grpc_client_passes_the_token(auth_server, images):
    from mlkit.client.grpc import GRPCServingClient
    from mlkit.client.http import ServingError

    with GRPCServingClient(auth_server.grpc_url, "helmet", token=TOKEN, timeout=30) as client:
        assert len(client.predict(images[:2])) == 2
    with GRPCServingClient(auth_server.grpc_url, "helmet", retries=0) as client:
        with pytest.raises(ServingError, match="UNAUTHENTICATED: this server requires a bearer token") as info:
            client.predict(images[:1])
        assert info.value.status == 401


def test_a_token_no_header_can_carry_is_refused_by_the_clients():
    from mlkit.client.http import ServingClient

    with pytest.raises(MlkitError, match="without spaces"):
        ServingClient("http://127.0.0.1:1", "m", token="two words")


# --------------------------------------------------------------------------- starting a server with a token
@pytest.mark.parametrize("content, message", [("", "is empty"), ("  \n", "is empty"), (None, "cannot read"),
                                              ("two words", "one word")])
def test_a_bad_token_file_is_a_startup_error_naming_it(model_repo, tmp_path, content, message):
    from mlkit.serving.server import build_server

    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    with pytest.raises(MlkitError, match=message) as info:
        build_server(model_repo, auth_token_file=path)
    assert str(path) in str(info.value)


def test_the_entrypoint_reports_a_bad_token_file_and_reads_the_environment(model_repo, tmp_path, monkeypatch):
    from mlkit.serving.__main__ import parse_args
    from mlkit.serving.auth import TOKEN_FILE_ENV, token_file_option
    from mlkit.serving.server import entrypoint_command

    empty = tmp_path / "empty"
    empty.write_text("\n")
    proc = subprocess.run([sys.executable, "-m", "mlkit.serving", "--model-dir", str(model_repo),
                           "--auth-token-file", str(empty)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and f"the auth token file {empty} is empty" in proc.stderr
    assert "Traceback" not in proc.stderr
    cmd = entrypoint_command("127.0.0.1", 1, 2, max_batch_size=1, max_latency_ms=5, threads=1, instances=1,
                             auth_token_file=empty)
    assert parse_args(cmd[3:]).auth_token_file == str(empty.resolve())
    monkeypatch.delenv(TOKEN_FILE_ENV, raising=False)
    assert token_file_option(None) is None
    monkeypatch.setenv(TOKEN_FILE_ENV, str(empty))
    assert token_file_option(None) == empty
    assert token_file_option("given") == type(empty)("given")  # the option wins


def test_serve_start_with_a_token_file(model_repo, token_file, tmp_path, monkeypatch):
    """`mlkit serve start --auth-token-file` threads the file to the detached server, which then requires it."""
    from mlkit.cli import main
    from mlkit.serving import lifecycle

    monkeypatch.setenv("MLKIT_STATE_DIR", str(tmp_path / "state"))
    runner = CliRunner()
    empty = tmp_path / "empty"
    empty.write_text("")
    result = runner.invoke(main, ["serve", "start", "locked", "--model-dir", str(model_repo), "--port", "0",
                                  "--grpc-port", "0", "--auth-token-file", str(empty)])
    assert result.exit_code != 0 and f"the auth token file {empty} is empty" in result.output
    assert lifecycle.get("locked") is None
    result = runner.invoke(main, ["serve", "start", "locked", "--model-dir", str(model_repo), "--port", "0",
                                  "--grpc-port", "0", "--auth-token-file", str(token_file)])
    try:
        assert result.exit_code == 0, result.output
        assert "models: helmet" in result.output  # listed with the token
        state = lifecycle.get("locked")
        assert state.auth_token_file == str(token_file)
        assert TOKEN not in (tmp_path / "state" / "locked.json").read_text()
        assert httpx.get(f"{state.url}/v2/models").status_code == 401
        assert httpx.get(f"{state.url}/v2/models", headers=bearer()).status_code == 200
    finally:
        lifecycle.stop("locked")
