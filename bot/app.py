"""The ASGI application: REST channel, action webhook, health."""

from __future__ import annotations

import html
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from bot import LANGUAGES, RTL_LANGUAGES
from bot.bootstrap import Services
from bot.channels.rest import RestChannel
from bot.scheduler import build_scheduler, schedule_retention
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
        scheduler = None
        if services.settings.scheduler:
            # One scheduler owner: replicas other than the owner run with LOTSE_SCHEDULER=off.
            scheduler = build_scheduler(services.settings)
            schedule_retention(scheduler, services.settings, days=services.content.consent.retention_days)
            scheduler.start()
        yield
        if scheduler is not None:
            scheduler.shutdown(wait=False)
        await services.close()

    expected_model = fingerprint()

    async def privacy_notice(request: Request) -> HTMLResponse:
        lang = request.query_params.get("lang", services.settings.default_language)
        if lang not in LANGUAGES:
            lang = services.settings.default_language
        text, _machine = await services.texts.text(
            "privacy.notice", lang, {"days": services.content.consent.retention_days}
        )
        title, *paragraphs = text.split("\n")
        body = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs if p.strip())
        names = {code: html.escape(services.texts.language_name(code)) for code in LANGUAGES}
        links = " · ".join(f'<a href="/privacy?lang={c}" lang="{c}">{n}</a>' for c, n in names.items())
        direction = "rtl" if lang in RTL_LANGUAGES else "ltr"
        page = (
            f'<!doctype html><html lang="{lang}" dir="{direction}"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>body{{font:16px/1.5 system-ui,sans-serif;"
            "max-width:42rem;margin:1rem auto;padding:0 1rem;color:#1a1a1a}a{color:#0b57d0}</style>"
            f"</head><body><nav>{links}</nav><h1>{html.escape(title)}</h1>{body}</body></html>"
        )
        return HTMLResponse(page)

    rest = RestChannel(services.router, max_chars=services.settings.max_message_chars)
    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/privacy", privacy_notice, methods=["GET"]),
        Route("/webhooks/rest/webhook", rest.handle, methods=["POST"]),
        Route("/webhook", services.actions.handle, methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.services = services
    return app
