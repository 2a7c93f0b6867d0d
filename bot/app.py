"""The ASGI application: REST channel, action webhook, health."""

from __future__ import annotations

import asyncio
import hmac
import html
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlparse

import socketio
from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot import LANGUAGES, RTL_LANGUAGES, jobs
from bot.bootstrap import Services
from bot.channels.rest import RestChannel
from bot.channels.widget import WidgetChannel
from bot.console import build_console
from bot.scheduler import build_scheduler, poll_job_store, schedule_reconcile, schedule_retention
from bot.settings import Settings
from bot.training import fingerprint

log = logging.getLogger(__name__)


def create_app(services: Services) -> ASGIApp:
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
        scheduler = poll = None
        await widget.start()
        await services.hub.start()
        jobs.bind(booking=services.booking)
        # One scheduler owner runs the jobs; replicas with LOTSE_SCHEDULER=off start theirs paused, so the
        # reminders they book still land in the shared job store without being run twice.
        scheduler = build_scheduler(services.settings)
        scheduler.add_listener(_missed_reminder(services), EVENT_JOB_MISSED)
        if services.settings.scheduler:
            schedule_retention(scheduler, services.settings, days=services.content.consent.retention_days)
            schedule_reconcile(scheduler)
            scheduler.start()
            poll = poll_job_store(scheduler)
        else:
            scheduler.start(paused=True)
        services.booking.scheduler = scheduler
        if services.telegram is not None:
            await services.telegram.start()
        yield
        if services.telegram is not None:
            await services.telegram.stop()
        if poll is not None:
            poll.cancel()
        services.booking.scheduler = None
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

    widget = WidgetChannel(
        services.router,
        services.database,
        allowed_origins=_origins(services.settings),
        redis_url=services.settings.redis_url,
    )
    services.outbox.register("widget", widget)
    labels = _widget_labels(services)

    async def widget_texts(_request: Request) -> JSONResponse:
        return JSONResponse(labels, headers={"Cache-Control": "public, max-age=300"})

    async def demo(_request: Request) -> FileResponse:
        return FileResponse(STATIC / "demo.html", media_type="text/html; charset=utf-8")

    async def telegram_webhook(request: Request) -> Response:
        if services.telegram is None or services.telegram.polling:
            return JSONResponse({"error": "the Telegram webhook is not configured"}, status_code=404)
        return await services.telegram.webhook(request)

    async def appointment_ics(request: Request) -> Response:
        appointment_id = request.path_params["appointment_id"]
        token = request.query_params.get("token", "")
        if not hmac.compare_digest(token, services.booking.ics_token(appointment_id)):
            return JSONResponse({"error": "not found"}, status_code=404)
        attachment = await services.appointments.attachment(appointment_id)
        if attachment is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        return Response(
            attachment.content,
            media_type="text/calendar; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="termin.ics"', "Cache-Control": "no-store"},
        )

    rest = RestChannel(services.router, max_chars=services.settings.max_message_chars)
    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/privacy", privacy_notice, methods=["GET"]),
        Route("/webhooks/rest/webhook", rest.handle, methods=["POST"]),
        Route("/webhook", services.actions.handle, methods=["POST"]),
        Route("/telegram/webhook", telegram_webhook, methods=["POST"]),
        Route("/", demo, methods=["GET"]),
        Route("/favicon.ico", lambda _request: Response(status_code=204), methods=["GET"]),
        Route("/widget.js", _static("widget.js", "text/javascript; charset=utf-8"), methods=["GET"]),
        Route("/widget.css", _static("widget.css", "text/css; charset=utf-8"), methods=["GET"]),
        Route("/widget/texts", widget_texts, methods=["GET"]),
        Route("/widget/history/{session_id}", widget.history, methods=["GET"]),
        Route("/appointments/{appointment_id}.ics", appointment_ics, methods=["GET"]),
        build_console(services),
    ]
    partners = list(services.settings.partner_origins)
    middleware = [
        Middleware(GZipMiddleware, minimum_size=500),
        Middleware(CORSMiddleware, allow_origins=partners, allow_methods=["GET"], allow_headers=[]),
        Middleware(SecurityHeaders, frame_ancestors=" ".join(["'self'", *partners])),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, middleware=middleware)
    app.state.services = services
    combined: ASGIApp = socketio.ASGIApp(widget.server, other_asgi_app=app, socketio_path="socket.io")
    return combined


def _missed_reminder(services: Services) -> Callable[[JobExecutionEvent], None]:
    """A reminder the scheduler dropped because it was due too long ago is recorded, not lost silently."""

    loop = asyncio.get_running_loop()  # the listener is called in the scheduler's thread

    def listener(event: JobExecutionEvent) -> None:
        if not event.job_id.startswith("reminder-"):
            return
        reminder_id = int(event.job_id.removeprefix("reminder-"))
        late = f"missed: due {event.scheduled_run_time.isoformat()}, app was down beyond the grace time"
        asyncio.run_coroutine_threadsafe(services.booking.mark_missed(reminder_id, late), loop)

    return listener


STATIC = Path(__file__).resolve().parent / "static"
WIDGET_LABELS = {
    "title": "widget.title",
    "placeholder": "widget.placeholder",
    "send": "widget.send",
    "open": "widget.open",
    "close": "widget.close",
    "language": "widget.language",
    "typing": "widget.typing",
    "reconnecting": "widget.reconnecting",
    "machine": "translation.machine",
    "download": "widget.download",
}


def _static(name: str, media_type: str) -> Callable[[Request], Awaitable[Response]]:
    body = (STATIC / name).read_bytes()

    async def serve(_request: Request) -> Response:
        return Response(body, media_type=media_type, headers={"Cache-Control": "public, max-age=3600"})

    return serve


def _widget_labels(services: Services) -> dict[str, dict[str, str]]:
    content = services.content
    return {
        lang: {
            field: content.text(key, lang) or content.reference(key) for field, key in WIDGET_LABELS.items()
        }
        for lang in LANGUAGES
    }


def _origins(settings: Settings) -> list[str]:
    """Who may open the widget's socket: the app itself and the configured partner sites."""
    own = urlparse(settings.public_url)
    origins = {f"{own.scheme}://{own.netloc}", *settings.partner_origins}
    if settings.environment != "production":
        origins |= {f"http://localhost:{settings.app_port}", f"http://127.0.0.1:{settings.app_port}"}
    return sorted(origins)


class SecurityHeaders:
    """CSP (embedding only by the partners), nosniff and a strict referrer policy on every response."""

    def __init__(self, app: ASGIApp, *, frame_ancestors: str) -> None:
        self.app = app
        self.csp = (
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            "connect-src 'self' ws: wss:; img-src 'self' data: blob:; object-src 'none'; "
            f"base-uri 'none'; frame-ancestors {frame_ancestors}"
        ).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Add the headers to HTTP responses."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", self.csp),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"strict-origin-when-cross-origin"),
                ]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
