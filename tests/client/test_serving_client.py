"""ServingClient's readiness wait against a real server: a wrong model name or URL is named, not a silent minute."""

from __future__ import annotations

import pytest

from mlkit.client.http import ServingClient, ServingError
from mlkit.errors import MlkitError


def test_a_url_without_a_scheme_is_refused():
    with pytest.raises(MlkitError, match="must start with http:// or https://, got '127.0.0.1:8080'"):
        ServingClient("127.0.0.1:8080", "helmet")


def test_wait_ready_names_an_unknown_model_within_seconds(server):
    client = ServingClient(server.url, "nosuchmodel")
    # No overall timeout: only the persistent 404 can end the wait (pytest-timeout fails the test otherwise).
    with pytest.raises(ServingError, match="does not serve a model named 'nosuchmodel'"):
        client.wait_ready(timeout=float("inf"), unknown_model_s=1.0)


def test_wait_ready_says_why_when_nothing_listens():
    from mlkit.serving.server import free_port

    client = ServingClient(f"http://127.0.0.1:{free_port()}", "helmet")
    with pytest.raises(ServingError, match="cannot reach the server"):
        client.wait_ready(timeout=0.5)
