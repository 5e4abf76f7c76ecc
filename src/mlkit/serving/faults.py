"""Fault injection for testing clients against a slow cloud: real added latency on inference answers."""

from __future__ import annotations

import asyncio


class ResponseDelay:
    """ASGI middleware that holds every inference request (v1 ``:predict``, v2 ``/infer``) for ``delay_ms``.

    Health, metadata and metrics answer at once, so readiness checks stay fast while inference behaves
    like a far-away or overloaded cloud. Off unless the server is started with ``--response-delay-ms``.
    """

    def __init__(self, app, delay_ms: float) -> None:
        self.app = app
        self.delay_s = delay_ms / 1000.0

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].endswith(("/infer", ":predict")):
            await asyncio.sleep(self.delay_s)
        await self.app(scope, receive, send)
