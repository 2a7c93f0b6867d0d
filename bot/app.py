"""The ASGI application: REST channel, action webhook, health."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot.bootstrap import Services
from bot.channels.rest import RestChannel
from bot.training import fingerprint

log = logging.getLogger(__name__)


def create_app(services: Services) -> Starlette:
    """Wire the entry points to already-built services."""

    async def health(_request: Request) -> JSONResponse:
        status = await services.engine.status()
        database_up = await services.database.ping()
        engine_state = {
            "state": "up" if status else "down",
            "url": services.settings.engine_url,
            "model": (status or {}).get("model_file"),
            "expected_fingerprint": expected_model,
        }
        return JSONResponse(
            {
                "status": "ok" if status and database_up else "degraded",
                "engine": engine_state,
                "database": {"state": "up" if database_up else "down"},
            }
        )

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await services.close()

    expected_model = fingerprint()
    rest = RestChannel(services.router, max_chars=services.settings.max_message_chars)
    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/webhooks/rest/webhook", rest.handle, methods=["POST"]),
        Route("/webhook", services.actions.handle, methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.services = services
    return app
