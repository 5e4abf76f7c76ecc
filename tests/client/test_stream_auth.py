"""``mlkit stream --auth-token-file`` against a real server that requires a bearer token."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mlkit.cli import main


@pytest.fixture(scope="module")
def auth_server(model_repo, start_protected):
    return start_protected(model_repo)


def run(*args):
    result = CliRunner().invoke(main, ["stream", *map(str, args)])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_stream_with_the_token_file(auth_server, token_file, auth_token, clip, tmp_path):
    out = tmp_path / "out"
    r = run("--source", clip, "--endpoint", auth_server.url, "--model", "little", "--fast", "--no-progress",
            "--output", out, "--auth-token-file", token_file)
    assert r.exit_code == 0, r.output
    assert len((out / "results.jsonl").read_text().splitlines()) == 36
    summary = (out / "summary.json").read_text()
    assert auth_token not in summary and "token" not in json.loads(summary)["config"]  # results are not secret


def test_stream_without_or_with_a_wrong_token_is_one_clear_line(auth_server, clip, tmp_path):
    r = run("--source", clip, "--endpoint", auth_server.url, "--model", "little", "--fast")
    assert r.exit_code != 0 and "requires a bearer token: pass --auth-token-file FILE" in r.output, r.output
    wrong = tmp_path / "wrong"
    wrong.write_text("not-it")
    r = run("--source", clip, "--endpoint", auth_server.url, "--model", "little", "--fast",
            "--auth-token-file", wrong)
    assert r.exit_code != 0 and "refused the token" in r.output, r.output
    empty = tmp_path / "empty"
    empty.write_text("")
    r = run("--source", clip, "--endpoint", auth_server.url, "--model", "little", "--auth-token-file", empty)
    assert r.exit_code != 0 and f"the auth token file {empty} is empty" in r.output, r.output
