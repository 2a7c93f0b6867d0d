"""The adviser console's pages, JSON endpoints and live events, mounted at ``/console``.

Every handler looks tickets up through the adviser's own organisation: another organisation's ticket is
"not found" in pages, the API and the event stream alike. Every state-changing request needs the session's
CSRF token. Texts are German (advisers work in German); client texts are escaped by Jinja2's autoescape.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from sqlalchemy import select
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as AsgiMessage

from bot.console import labels
from bot.console.auth import AdviserAuth, Clock, ConsoleSession, SessionPolicy, actor
from bot.console.calendar import calendar_token, feed, token_ok
from bot.console.figures import chart_svg, collect, to_csv
from bot.console.notify import TicketNotifier
from bot.errors import SettingsError
from bot.handoff import OUTCOMES, HandoffError, HandoffService
from bot.hub import EventHub
from bot.privacy import audit
from bot.proposals import MAX_SLOTS, PROPOSAL
from bot.settings import Settings
from bot.storage.database import Database
from bot.storage.models import Adviser, Appointment, Message, Ticket, TicketNote, as_utc, utcnow

if TYPE_CHECKING:
    from bot.bootstrap import Services
    from bot.proposals import SlotOption

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
BERLIN = ZoneInfo("Europe/Berlin")
WEEKDAYS = ("Mo", "Di", "Mi", "Do", "Fr", "Sa", "So")
LOGIN_COOKIE = "lotse_console_login"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
BACKGROUND_HEADER = "X-Console-Background"
"""Set by the page script on its own refreshes: they are not the adviser's activity (idle timeout)."""
GENERIC_LOGIN_ERROR = (
    "Anmeldung fehlgeschlagen. Bitte Benutzername und Passwort prüfen. "
    "Nach fünf Fehlversuchen ist das Konto 15 Minuten gesperrt."
)
NOTICES = {
    "taken": "Ein anderes Teammitglied hat das Ticket gerade übernommen.",
    "claimed": "Sie bearbeiten dieses Ticket jetzt.",
    "sent": "Nachricht gesendet.",
    "released": "Das Ticket ist zurück in der Warteschlange.",
    "returned": "Das Gespräch ist wieder beim Bot.",
    "closed": "Das Ticket ist geschlossen; die Person wird um eine Bewertung gebeten.",
    "referral": "Die Person wird gefragt, ob sie der Weitervermittlung zustimmt.",
    "note": "Notiz gespeichert.",
    "appointment": "Terminvorschlag gesendet.",
    "no_booking": "Die Terminbuchung ist noch nicht angeschlossen; bitte einen Textbaustein senden.",
    "no_slot": f"Bitte einen bis {MAX_SLOTS} freie Termine ankreuzen.",
    "slot_gone": "Ein gewählter Termin ist inzwischen vergeben. Bitte die Auswahl prüfen und neu senden.",
    "claim_first": "Bitte das Ticket zuerst übernehmen.",
    "empty": "Der Text ist leer.",
    "state": "Das ist im jetzigen Zustand des Tickets nicht möglich.",
    "gone": "Das Gespräch gibt es nicht mehr (von der Person gelöscht).",
    "target": "Bitte eine andere Organisation wählen.",
    "module": "Diesen Textbaustein gibt es nicht.",
    "outcome": "Bitte ein Ergebnis wählen.",
    "failed": "Das ging nicht.",
}
PROBLEMS = frozenset(NOTICES) - {
    "claimed",
    "sent",
    "released",
    "returned",
    "closed",
    "referral",
    "note",
    "appointment",
}
"""Notices shown as an error."""
ERROR_CODES = (
    ("slot no longer free", "slot_gone"),
    ("no slot chosen", "no_slot"),
    ("claim the ticket first", "claim_first"),
    ("empty", "empty"),
    ("not possible", "state"),
    ("no longer exists", "gone"),
    ("organisation", "target"),
    ("text module", "module"),
    ("outcome", "outcome"),
)
"""HandoffError messages (English, for logs) and the console notice each one becomes."""
EVENT_FIELDS = ("type", "ticket", "message", "outcome")
"""What of a hub event reaches the browser (events carry no client content; this keeps it so)."""
CONSOLE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class Proposer(Protocol):
    """Offers the client free appointment slots of the ticket's organisation (bot/proposals.py)."""

    async def options(self, ticket: Ticket, *, after: datetime | None = None) -> list[SlotOption]:
        """The organisation's next free slots for the ticket, for the adviser to choose from."""

    async def propose(self, ticket_id: int, adviser: Adviser, keys: list[str]) -> Message:
        """Send the chosen slots to the client as buttons; HandoffError when that is not possible."""


@dataclass(frozen=True, kw_only=True)
class ConsoleDeps:
    """What the console needs from the composition root."""

    settings: Settings
    database: Database
    handoff: HandoffService
    hub: EventHub
    organisations: dict[str, str]
    modules: dict[str, str]
    """Text modules: content key -> German text."""
    answers: dict[str, str]
    """German reference texts, for the names of answers the bot gave."""
    proposer: Proposer | None = None
    keepalive: float = 15.0


class ConsoleHeaders:
    """A strict CSP without inline script, no caching, no framing, for every console response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Add the headers."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: AsgiMessage) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", CONSOLE_CSP.encode()),
                    (b"x-frame-options", b"DENY"),
                    (b"cache-control", b"no-store"),
                ]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _berlin(moment: datetime | None, pattern: str = "%d.%m.%Y %H:%M") -> str:
    if moment is None:
        return "–"
    local = as_utc(moment).astimezone(BERLIN)
    return local.strftime(pattern.replace("%a", WEEKDAYS[local.weekday()]))


def _minutes(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return max(0, int((as_utc(end) - as_utc(start)).total_seconds() // 60))


def _duration(minutes: int | None) -> str:
    if minutes is None:
        return "–"
    if minutes < 60:
        return f"{minutes} Min."
    return f"{minutes // 60} Std. {minutes % 60} Min."


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["berlin"] = _berlin
    env.filters["duration"] = _duration
    env.globals["labels"] = labels
    env.globals["label"] = labels.label
    return env


class Console:
    """The console's request handlers."""

    def __init__(self, deps: ConsoleDeps, auth: AdviserAuth) -> None:
        self.deps = deps
        self.auth = auth
        self.templates = _environment()
        secure = deps.settings.console_secure_cookies
        self.secure = secure
        # The __Secure- prefix makes browsers refuse the cookie unless it came over https with Secure.
        self.cookie = "__Secure-lotse_console" if secure else "lotse_console"

    # ---- plumbing -----------------------------------------------------------------------------------

    def render(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        """A page from a template."""
        page = self.templates.get_template(name).render(**context)
        return HTMLResponse(page, status_code=status)

    def _set_cookie(self, response: Response, name: str, value: str, max_age: int | None) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/console",
            secure=self.secure,
            httponly=True,
            samesite="strict",
        )

    async def current(self, request: Request, *, touch: bool = True) -> ConsoleSession | None:
        """The session of this request's cookie, if it is live."""
        return await self.auth.session(request.cookies.get(self.cookie), touch=touch)

    @staticmethod
    def wants_json(request: Request) -> bool:
        """Script and API callers ask for JSON; forms get redirects."""
        return "application/json" in request.headers.get("accept", "")

    async def csrf_ok(self, request: Request, session: ConsoleSession) -> bool:
        """The session's CSRF token in the header or the form."""
        given = request.headers.get(CSRF_HEADER)
        if given is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            form = await request.form()
            value = form.get(CSRF_FIELD)
            given = value if isinstance(value, str) else None
        return session.csrf_ok(given)

    def page(self, handler: Callable[[Request, ConsoleSession], Awaitable[Response]]) -> Any:
        """A page or API endpoint for signed-in advisers; POSTs need the CSRF token."""

        async def endpoint(request: Request) -> Response:
            background = request.method == "GET" and request.headers.get(BACKGROUND_HEADER) == "1"
            session = await self.current(request, touch=not background)
            if session is None:
                if self.wants_json(request) or request.url.path.startswith("/console/api/"):
                    return JSONResponse({"error": "not signed in"}, status_code=401)
                return RedirectResponse("/console/login", status_code=303)
            if request.method == "POST" and not await self.csrf_ok(request, session):
                return JSONResponse({"error": "missing or wrong CSRF token"}, status_code=403)
            return await handler(request, session)

        return endpoint

    async def _ticket(self, session: ConsoleSession, request: Request) -> Ticket | None:
        try:
            ticket_id = int(request.path_params["ticket_id"])
        except (KeyError, ValueError):
            return None
        return await self.deps.handoff.ticket(session.organisation, ticket_id)

    def _not_found(self, request: Request, session: ConsoleSession) -> Response:
        if self.wants_json(request) or request.url.path.startswith("/console/api/"):
            return JSONResponse({"error": "not found"}, status_code=404)
        return self.render("not_found.html", status=404, me=session)

    # ---- sign-in ------------------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        """GET /console/login: the form, with a login CSRF cookie (double submit)."""
        if await self.current(request, touch=False) is not None:
            return RedirectResponse("/console/", status_code=303)
        token = secrets.token_urlsafe(24)
        response = self.render("login.html", csrf=token, error=None, username="")
        self._set_cookie(response, LOGIN_COOKIE, token, 3600)
        return response

    async def login(self, request: Request) -> Response:
        """POST /console/login: one generic error for every failure."""
        form = await request.form()
        given, expected = form.get(CSRF_FIELD), request.cookies.get(LOGIN_COOKIE)
        if not (isinstance(given, str) and expected and secrets.compare_digest(given, expected)):
            return JSONResponse({"error": "missing or wrong CSRF token"}, status_code=403)
        username, password = form.get("username"), form.get("password")
        result = None
        if isinstance(username, str) and isinstance(password, str) and username and password:
            result = await self.auth.login(username[:64], password[:1024])
        if result is None:
            return self.render(
                "login.html",
                status=401,
                csrf=expected,
                error=GENERIC_LOGIN_ERROR,
                username=username if isinstance(username, str) else "",
            )
        token, _session = result
        redirect = RedirectResponse("/console/", status_code=303)
        self._set_cookie(redirect, self.cookie, token, int(self.auth.policy.absolute.total_seconds()))
        redirect.delete_cookie(LOGIN_COOKIE, path="/console")
        return redirect

    async def logout(self, request: Request, session: ConsoleSession) -> Response:
        """POST /console/logout: the session ends on the server too."""
        await self.auth.logout(request.cookies.get(self.cookie))
        response = RedirectResponse("/console/login", status_code=303)
        response.delete_cookie(
            self.cookie, path="/console", secure=self.secure, httponly=True, samesite="strict"
        )
        return response

    # ---- queue --------------------------------------------------------------------------------------

    async def _adviser_names(self, organisation: str) -> dict[int, str]:
        async with self.deps.database.unit_of_work() as db:
            rows = await db.execute(
                select(Adviser.id, Adviser.display_name).where(Adviser.organisation == organisation)
            )
            return {int(adviser_id): str(name) for adviser_id, name in rows}

    def _row(self, ticket: Ticket, names: dict[int, str], me: ConsoleSession) -> dict[str, Any]:
        now = utcnow()
        waiting = ticket.status == "waiting"
        return {
            "id": ticket.id,
            "status": ticket.status,
            "status_label": labels.label(labels.STATUS, ticket.status),
            "created": _berlin(ticket.created_at, "%d.%m. %H:%M"),
            "created_at": as_utc(ticket.created_at).isoformat(),
            "waited": _duration(_minutes(ticket.created_at, now if waiting else ticket.claimed_at)),
            "language": ticket.language,
            "language_label": labels.label(labels.LANGUAGE_NAMES, ticket.language),
            "channel_label": labels.label(labels.CHANNELS, ticket.channel),
            "topic_label": labels.label(labels.TOPICS, ticket.topic),
            "reason_label": labels.label(labels.REASONS, ticket.reason),
            "adviser": names.get(ticket.adviser_id or 0, "") if ticket.status == "claimed" else "",
            "mine": ticket.adviser_id == me.adviser.id and ticket.status == "claimed",
        }

    async def _queue_rows(self, session: ConsoleSession) -> list[dict[str, Any]]:
        tickets = await self.deps.handoff.queue(session.organisation)
        names = await self._adviser_names(session.organisation)
        return [self._row(ticket, names, session) for ticket in tickets]

    async def queue(self, request: Request, session: ConsoleSession) -> Response:
        """GET /console/: the organisation's waiting and claimed tickets."""
        return self.render(
            "queue.html", me=session, org_name=self._org_name(session), rows=await self._queue_rows(session)
        )

    async def queue_api(self, request: Request, session: ConsoleSession) -> Response:
        """GET /console/api/queue: the same as JSON (the page refreshes from it on events)."""
        return JSONResponse({"tickets": await self._queue_rows(session)})

    # ---- live events --------------------------------------------------------------------------------

    async def events(self, request: Request) -> Response:
        """GET /console/events: server-sent events of the adviser's organisation only."""
        token = request.cookies.get(self.cookie)
        session = await self.auth.session(token, touch=False)  # an open tab is not activity
        if session is None:
            return JSONResponse({"error": "not signed in"}, status_code=401)
        return StreamingResponse(
            self._stream(token or "", session.organisation),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def _stream(self, token: str, organisation: str) -> AsyncIterator[str]:
        async with self.deps.hub.subscribe(organisation) as queue:
            yield "retry: 3000\n\n"
            yield f"event: ready\ndata: {json.dumps({'type': 'ready'})}\n\n"
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=self.deps.keepalive)
                except TimeoutError:
                    # Logout, disabling and timeouts end the stream too, not only new requests.
                    if await self.auth.session(token, touch=False) is None:
                        yield f"event: ended\ndata: {json.dumps({'type': 'session.ended'})}\n\n"
                        return
                    yield ": keepalive\n\n"
                    continue
                safe = {key: event[key] for key in EVENT_FIELDS if isinstance(event.get(key), int | str)}
                yield f"data: {json.dumps(safe)}\n\n"

    # ---- one ticket ---------------------------------------------------------------------------------

    async def _messages(
        self, session: ConsoleSession, ticket: Ticket, *, after: int = 0, also: frozenset[int] = frozenset()
    ) -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]]]:
        """Messages after ``after`` (and those in ``also``) with their German text; audited as a view."""
        messages = await self.deps.handoff.conversation(session.organisation, ticket.id)
        names = await self._adviser_names(session.organisation)
        shown: list[dict[str, Any]] = []
        by_id: dict[int, dict[str, Any]] = {}
        for message in messages:
            if message.id <= after and message.id not in also:
                continue
            item = await self._message(message, names)
            by_id[message.id] = item
            if message.id > after:
                shown.append(item)
        async with self.deps.database.unit_of_work() as db:
            audit(
                db,
                actor=actor(session.adviser),
                action="console.conversation_viewed",
                conversation_id=ticket.conversation_id,
                detail=f"ticket:{ticket.id} after:{after}",
            )
            await db.commit()
        return shown, by_id

    async def _message(self, message: Message, names: dict[int, str]) -> dict[str, Any]:
        tapped = _proposal_tap(message)
        if tapped is not None:
            german, quality = tapped, "authored"  # a button payload, not a text in a language
        else:
            german, quality = await self.deps.handoff.german(message)
        payload = message.payload if isinstance(message.payload, dict) else {}
        author = labels.label(labels.AUTHORS, message.author)
        if message.author == "adviser":
            author = names.get(int(payload.get("adviser") or 0), author)
        note = message.kind == "note"  # a system line for the adviser only (e.g. "Termin gebucht: …")
        kind = "" if message.kind == "text" or note else f"[{message.kind}]"
        original = message.text
        same = message.language in (None, "de") or german == original or tapped is not None
        return {
            "id": message.id,
            "author": message.author,
            "author_label": author,
            "time": _berlin(message.created_at, "%d.%m. %H:%M"),
            "kind": kind,
            "german": german,
            "mark": labels.TRANSLATION_MARKS.get(quality, ""),
            "quality": quality,
            "original": "" if same and quality != "unavailable" else original,
            "language": message.language or "",
            "language_label": labels.label(labels.LANGUAGE_NAMES, message.language),
            "module": str(payload.get("module") or ""),
            "untranslated": payload.get("translate") is False,
            "note": note,
            "proposal": isinstance(payload.get("proposal"), dict),
        }

    async def ticket_page(self, request: Request, session: ConsoleSession) -> Response:
        """GET /console/tickets/{id}: summary, conversation, reply box, notes and actions."""
        ticket = await self._ticket(session, request)
        if ticket is None:
            return self._not_found(request, session)
        messages, by_id = await self._messages(session, ticket)
        summary = ticket.summary or {}
        questions = [by_id[int(i)] for i in summary.get("question_message_ids") or [] if int(i) in by_id]
        answered = [self._answer_title(key) for key in summary.get("answered") or []]
        names = await self._adviser_names(session.organisation)
        async with self.deps.database.unit_of_work() as db:
            notes = list(
                await db.scalars(
                    select(TicketNote).where(TicketNote.ticket_id == ticket.id).order_by(TicketNote.id)
                )
            )
        notice = request.query_params.get("hinweis", "")
        mine = ticket.status == "claimed" and ticket.adviser_id == session.adviser.id
        proposer = self.deps.proposer
        from_day = _day(request.query_params.get("termine_ab", ""))
        slots: list[SlotOption] = []
        if mine and proposer is not None:
            after = datetime.combine(from_day, datetime.min.time(), BERLIN) if from_day else None
            slots = await proposer.options(ticket, after=after)
        return self.render(
            "ticket.html",
            me=session,
            org_name=self._org_name(session),
            ticket=ticket,
            row=self._row(ticket, names, session),
            summary=summary,
            questions=questions,
            answered=answered,
            messages=messages,
            last_id=max((m["id"] for m in messages), default=0),
            notes=[
                {"text": n.text, "author": names.get(n.adviser_id or 0, "–"), "at": n.created_at}
                for n in notes
            ],
            modules=self.deps.modules,
            outcomes={o: labels.OUTCOMES.get(o, o) for o in OUTCOMES},
            organisations={k: v for k, v in self.deps.organisations.items() if k != session.organisation},
            notice=NOTICES.get(notice, ""),
            problem=notice in PROBLEMS,
            open=ticket.status in ("waiting", "claimed"),
            mine=mine,
            booking=proposer is not None,
            slots=slots,
            slots_from=from_day.isoformat() if from_day else "",
            max_slots=MAX_SLOTS,
        )

    def _answer_title(self, key: str) -> str:
        text = self.deps.answers.get(str(key), str(key))
        first = text.strip().split("\n", 1)[0]
        return first if len(first) <= 140 else first[:139] + "…"

    async def messages_api(self, request: Request, session: ConsoleSession) -> Response:
        """GET /console/api/tickets/{id}/messages?after=N: new messages of an own ticket."""
        ticket = await self._ticket(session, request)
        if ticket is None:
            return self._not_found(request, session)
        try:
            after = max(0, int(request.query_params.get("after", "0")))
        except ValueError:
            after = 0
        messages, _ = await self._messages(session, ticket, after=after)
        names = await self._adviser_names(session.organisation)
        return JSONResponse({"ticket": self._row(ticket, names, session), "messages": messages})

    # ---- actions ------------------------------------------------------------------------------------

    def _done(self, request: Request, ticket_id: int, notice: str) -> Response:
        """JSON for scripts (409 for problems), else a redirect with a notice code (never free text)."""
        if self.wants_json(request):
            ok = notice not in PROBLEMS
            return JSONResponse({"ok": ok, "notice": notice}, status_code=200 if ok else 409)
        return RedirectResponse(f"/console/tickets/{ticket_id}?hinweis={notice}", status_code=303)

    async def action(self, request: Request, session: ConsoleSession) -> Response:
        """POST /console/tickets/{id}/{action}: claim, release, reply, module, hand-back, close, refer,
        note, appointment."""
        ticket = await self._ticket(session, request)
        if ticket is None:
            return self._not_found(request, session)
        name = request.path_params["action"]
        values: dict[str, str] = {}
        if "form" in request.headers.get("content-type", ""):
            values = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}

        def field(key: str) -> str:
            return values.get(key, "")

        handoff, adviser = self.deps.handoff, session.adviser
        try:
            if name == "claim":
                if not await handoff.claim(ticket.id, adviser):
                    return self._done(request, ticket.id, "taken")
                return self._done(request, ticket.id, "claimed")
            if name == "release":
                await handoff.release(ticket.id, adviser)
                return self._done(request, ticket.id, "released")
            if name == "reply":
                await handoff.send(
                    ticket.id, adviser, field("text")[:4000], translate=not field("untranslated")
                )
                return self._done(request, ticket.id, "sent")
            if name == "module":
                if field("key") not in self.deps.modules:
                    raise HandoffError("unknown text module")
                await handoff.send_module(ticket.id, adviser, field("key"))
                return self._done(request, ticket.id, "sent")
            if name == "hand-back":
                await handoff.hand_back(ticket.id, adviser)
                return self._done(request, ticket.id, "returned")
            if name == "close":
                await handoff.close(ticket.id, adviser, field("outcome"))
                return self._done(request, ticket.id, "closed")
            if name == "refer":
                await handoff.refer(ticket.id, adviser, field("target"))
                return self._done(request, ticket.id, "referral")
            if name == "note":
                await self._note(ticket, adviser, field("text"))
                return self._done(request, ticket.id, "note")
            if name == "appointment":
                keys: list[str] = []
                if "form" in request.headers.get("content-type", ""):
                    keys = [k for k in (await request.form()).getlist("slot") if isinstance(k, str)]
                proposed = await propose_appointment(self.deps.proposer, ticket, adviser, keys)
                return self._done(request, ticket.id, "appointment" if proposed else "no_booking")
        except HandoffError as exc:
            log.info("console action %s on ticket %s refused: %s", name, ticket.id, exc)
            code = next((c for text, c in ERROR_CODES if text in str(exc)), "failed")
            return self._done(request, ticket.id, code)
        return self._not_found(request, session)

    async def _note(self, ticket: Ticket, adviser: Adviser, text: str) -> None:
        text = text.strip()
        if not text:
            raise HandoffError("empty note")
        async with self.deps.database.unit_of_work() as db:
            db.add(TicketNote(ticket_id=ticket.id, adviser_id=adviser.id, text=text[:4000]))
            await db.commit()

    # ---- figures, appointments, calendar ------------------------------------------------------------

    async def figures(self, request: Request, session: ConsoleSession) -> Response:
        """GET /console/figures: anonymous counts of all organisations, with a chart."""
        async with self.deps.database.unit_of_work() as db:
            figures = await collect(db)
        months = figures.by("month")
        return self.render(
            "figures.html",
            me=session,
            org_name=self._org_name(session),
            total=figures.total(),
            months=months,
            organisations=[
                (self.deps.organisations.get(k, k) if k else "nicht zugeordnet", c)
                for k, c in figures.by("organisation")
            ],
            topics=[
                (labels.label(labels.TOPICS, k) if k else "nicht zugeordnet", c)
                for k, c in figures.by("topic")
            ],
            languages=[(labels.label(labels.LANGUAGE_NAMES, k), c) for k, c in figures.by("language")],
            chart=Markup(chart_svg([(k, c) for k, c in months if k])),  # noqa: S704 - built with escape()
        )

    async def figures_csv(self, request: Request, session: ConsoleSession) -> Response:
        """GET /console/figures.csv: the same counts at the finest grain."""
        async with self.deps.database.unit_of_work() as db:
            figures = await collect(db)
        return Response(
            to_csv(figures),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="lotse-zahlen.csv"'},
        )

    async def appointments(self, request: Request, session: ConsoleSession) -> Response:
        """GET /console/appointments: the organisation's upcoming appointments and its calendar link."""
        async with self.deps.database.unit_of_work() as db:
            rows = list(
                await db.scalars(
                    select(Appointment)
                    .where(
                        Appointment.organisation == session.organisation,
                        Appointment.status == "booked",
                        Appointment.ends_at >= utcnow(),
                    )
                    .order_by(Appointment.starts_at)
                    .limit(500)
                )
            )
        token = calendar_token(session.organisation, self.deps.settings.secret_key)
        link = f"{self.deps.settings.public_url}/console/calendar/{session.organisation}.ics?token={token}"
        return self.render(
            "appointments.html",
            me=session,
            org_name=self._org_name(session),
            appointments=rows,
            calendar_link=link,
        )

    async def calendar(self, request: Request) -> Response:
        """GET /console/calendar/{org}.ics?token=…: the feed, for calendar programs without a session."""
        organisation = request.path_params["organisation"]
        if organisation not in self.deps.organisations:
            return JSONResponse({"error": "not found"}, status_code=404)
        if not token_ok(organisation, request.query_params.get("token"), self.deps.settings.secret_key):
            return JSONResponse({"error": "wrong token"}, status_code=403)
        since = utcnow() - timedelta(days=30)
        async with self.deps.database.unit_of_work() as db:
            rows = list(
                await db.scalars(
                    select(Appointment)
                    .where(Appointment.organisation == organisation, Appointment.starts_at >= since)
                    .order_by(Appointment.starts_at)
                    .limit(2000)
                )
            )
        body = feed(
            rows,
            organisation=organisation,
            organisation_name=self.deps.organisations[organisation],
            console_url=f"{self.deps.settings.public_url}/console/appointments",
        )
        return Response(body, media_type="text/calendar; charset=utf-8")

    def _org_name(self, session: ConsoleSession) -> str:
        return self.deps.organisations.get(session.organisation, session.organisation)

    # ---- routes -------------------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        """Every console route, relative to /console."""
        return [
            Route("/login", self.login_form, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.page(self.logout), methods=["POST"]),
            Route("/", self.page(self.queue), methods=["GET"]),
            Route("/events", self.events, methods=["GET"]),
            Route("/api/queue", self.page(self.queue_api), methods=["GET"]),
            Route("/api/tickets/{ticket_id:int}/messages", self.page(self.messages_api), methods=["GET"]),
            Route("/tickets/{ticket_id:int}", self.page(self.ticket_page), methods=["GET"]),
            Route("/tickets/{ticket_id:int}/{action}", self.page(self.action), methods=["POST"]),
            Route("/figures", self.page(self.figures), methods=["GET"]),
            Route("/figures.csv", self.page(self.figures_csv), methods=["GET"]),
            Route("/appointments", self.page(self.appointments), methods=["GET"]),
            Route("/calendar/{organisation}.ics", self.calendar, methods=["GET"]),
            Mount("/static", app=StaticFiles(directory=HERE / "static"), name="console-static"),
        ]


async def propose_appointment(
    proposer: Proposer | None, ticket: Ticket, adviser: Adviser, keys: list[str]
) -> bool:
    """Offer the client the chosen free slots of the organisation (slot buttons in the client's language,
    through the outbox); False when no proposer is connected. Raises HandoffError for a refused proposal."""
    if proposer is None:
        return False
    await proposer.propose(ticket.id, adviser, keys)
    return True


def _day(value: str) -> date | None:
    """A date from the ticket page's "free slots from" field (YYYY-MM-DD), else None."""
    try:
        day = date.fromisoformat(value.strip()[:10]) if value.strip() else None
    except ValueError:
        return None
    return day if day is not None and 2000 <= day.year <= 2100 else None


def _proposal_tap(message: Message) -> str | None:
    """A client's tap on a proposal button, in German for the adviser; None for other messages."""
    match = PROPOSAL.match(message.text.strip()) if message.direction == "in" else None
    if match is None:
        return None
    try:
        data = json.loads(match.group("data"))
    except ValueError:
        data = {}
    choice = data.get("n") if isinstance(data, dict) else None
    if choice == "none":
        return "[Terminvorschlag: „Keiner passt“ gewählt]"
    return f"[Terminvorschlag: Termin {choice} gewählt]" if isinstance(choice, int) else "[Terminvorschlag]"


def build_console(
    services: Services,
    *,
    clock: Clock | None = None,
    keepalive: float = 15.0,
    proposer: Proposer | None = None,
) -> Mount:
    """The console as a Starlette Mount at /console, built from the app's services (appointment proposals
    through ``services.proposals`` unless another ``proposer`` is given)."""
    settings = services.settings
    content = services.content
    unknown = [org for org, _chat in settings.console_telegram_chats if org not in content.organisations]
    if unknown:
        raise SettingsError(f"LOTSE_CONSOLE_TELEGRAM_CHATS names unknown organisations: {', '.join(unknown)}")
    reference: dict[str, str] = content.texts["de"]
    deps = ConsoleDeps(
        settings=settings,
        database=services.database,
        handoff=services.handoff,
        hub=services.hub,
        organisations=dict(content.organisations),
        modules={key: text for key, text in sorted(reference.items()) if key.startswith("module.")},
        answers=reference,
        proposer=proposer if proposer is not None else services.proposals,
        keepalive=keepalive,
    )
    policy = SessionPolicy(
        idle=timedelta(minutes=settings.console_idle_minutes),
        absolute=timedelta(hours=settings.console_max_hours),
    )
    auth = AdviserAuth(services.database, policy=policy, clock=clock or utcnow)
    telegram = services.telegram
    if settings.console_telegram_chats and telegram is not None:
        bot = telegram.application.bot

        async def send(chat: str, text: str) -> object:
            return await bot.send_message(chat_id=chat, text=text)

        notifier = TicketNotifier(
            database=services.database,
            chats=dict(settings.console_telegram_chats),
            send=send,
            public_url=settings.public_url,
        )
        # One notifier per service set, even if the app is built twice from the same services.
        services.handoff.notify[:] = [n for n in services.handoff.notify if not isinstance(n, TicketNotifier)]
        services.handoff.notify.append(notifier)
    elif settings.console_telegram_chats:
        log.warning("LOTSE_CONSOLE_TELEGRAM_CHATS is set but Telegram is off (no TELEGRAM_TOKEN)")
    console = Console(deps, auth)
    return Mount("/console", routes=console.routes(), middleware=[Middleware(ConsoleHeaders)], name="console")
