"""The adviser console over HTTP on a real SQLite file: sign-in, sessions, CSRF, isolation, escaping,
the ticket view and its actions, figures, the calendar feed and the command line."""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from starlette.applications import Starlette

from bot.__main__ import main
from bot.app import create_app
from bot.bootstrap import Services, bootstrap
from bot.console import build_console
from bot.console.calendar import calendar_token
from bot.errors import SettingsError
from bot.language import LanguageDetector
from bot.settings import load_settings
from bot.storage.models import (
    Adviser,
    AdviserSession,
    Appointment,
    AuditEntry,
    Message,
    Ticket,
    TicketNote,
    utcnow,
)
from tests.auxil.console import (
    PASSWORD,
    Clock,
    FakeTranslator,
    adviser,
    client_writes,
    csrf_of,
    open_ticket,
    sign_in,
)
from tests.conftest import make_settings

BASE = "http://127.0.0.1:8000"


@dataclass
class Stack:
    services: Services
    clock: Clock
    app: Starlette
    tmp: Path

    def client(self, base_url: str = BASE) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=base_url)


async def _stack(tmp: Path, detector: LanguageDetector, **env: str) -> Stack:
    settings = make_settings(tmp, **{"LOTSE_PUBLIC_URL": BASE, **env})
    services = bootstrap(settings, detector=detector, translator=FakeTranslator())
    clock = Clock()
    app = Starlette(routes=[build_console(services, clock=clock)])
    return Stack(services=services, clock=clock, app=app, tmp=tmp)


@pytest.fixture
async def stack(tmp_path: Path, detector: LanguageDetector) -> AsyncIterator[Stack]:
    built = await _stack(tmp_path, detector)
    yield built
    await built.services.close()


async def _audit(services: Services) -> list[AuditEntry]:
    async with services.database.unit_of_work() as session:
        return list(await session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


# ---- sign-in and sessions ------------------------------------------------------------------------------


async def test_login_sets_a_hardened_cookie_and_stores_only_its_hash(stack: Stack) -> None:
    anna = await adviser(stack.services, "caritas-pb", "anna")
    async with stack.client() as client:
        response = await sign_in(client, "anna")
        assert response.status_code == 303 and response.headers["location"] == "/console/"
        cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("lotse_console="))
        flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
        assert {"httponly", "samesite", "path"} <= flags and "secure" not in flags  # plain-http localhost
        assert "Path=/console" in cookie and "SameSite=strict" in cookie
        token = cookie.split(";")[0].split("=", 1)[1]
        queue = await client.get("/console/")
        assert queue.status_code == 200 and "Warteschlange" in queue.text
    async with stack.services.database.unit_of_work() as session:
        rows = list(await session.scalars(select(AdviserSession)))
    assert [r.token_hash for r in rows] == [hashlib.sha256(token.encode()).hexdigest()]
    assert token not in {r.csrf_token for r in rows}
    entries = await _audit(stack.services)
    assert (f"adviser:{anna.id}", "console.login") in {(e.actor, e.action) for e in entries}


async def test_cookies_are_secure_behind_https(tmp_path: Path, detector: LanguageDetector) -> None:
    built = await _stack(tmp_path, detector, LOTSE_PUBLIC_URL="https://lotse.example.org")
    assert built.services.settings.console_secure_cookies
    await adviser(built.services, "awo", "ben")
    async with built.client("https://lotse.example.org") as client:
        response = await sign_in(client, "ben")
        assert response.status_code == 303
        cookie = next(c for c in response.headers.get_list("set-cookie") if "lotse_console=" in c)
        assert cookie.startswith("__Secure-lotse_console=") and "Secure" in cookie and "HttpOnly" in cookie
        assert (await client.get("/console/api/queue")).status_code == 200
    async with built.client("http://lotse.example.org") as plain:  # a Secure cookie never goes over http
        plain.cookies = client.cookies
        assert (await plain.get("/console/api/queue")).status_code == 401
    await built.services.close()


async def test_wrong_password_and_unknown_user_get_the_same_answer(stack: Stack) -> None:
    await adviser(stack.services, "caritas-pb", "anna")
    async with stack.client() as client:
        wrong = await sign_in(client, "anna", "falsches-passwort-123")
        unknown = await sign_in(client, "niemand", "falsches-passwort-123")
        assert wrong.status_code == unknown.status_code == 401
        error = re.compile(r'<p class="error" role="alert">(.*?)</p>', re.S)
        assert error.findall(wrong.text) == error.findall(unknown.text) != []
        assert "lotse_console=" not in wrong.headers.get("set-cookie", "")
        assert (await client.get("/console/", follow_redirects=False)).status_code == 303


async def test_five_wrong_passwords_lock_the_account_for_15_minutes(stack: Stack) -> None:
    anna = await adviser(stack.services, "caritas-pb", "anna")
    async with stack.client() as client:
        for _ in range(5):
            assert (await sign_in(client, "anna", "falsch-falsch-falsch")).status_code == 401
        refused = await sign_in(client, "anna")  # the right password, but locked
        assert refused.status_code == 401
        stack.clock.advance(minutes=14)
        assert (await sign_in(client, "anna")).status_code == 401
        stack.clock.advance(minutes=2)
        assert (await sign_in(client, "anna")).status_code == 303
    async with stack.services.database.unit_of_work() as session:
        row = await session.get_one(Adviser, anna.id)
        assert row.failed_logins == 0 and row.locked_until is None
    actions = [e.action for e in await _audit(stack.services) if e.actor == f"adviser:{anna.id}"]
    assert actions.count("console.login_failed") == 5
    assert actions.count("console.lockout") == 1 and actions.count("console.login_refused") == 2
    assert actions[-1] == "console.login"


async def test_sessions_end_after_30_idle_minutes(stack: Stack) -> None:
    await adviser(stack.services, "caritas-pb", "anna")
    async with stack.client() as client:
        await sign_in(client, "anna")
        stack.clock.advance(minutes=29)
        assert (await client.get("/console/")).status_code == 200
        stack.clock.advance(minutes=29)  # 29 minutes after the last request: still alive
        assert (await client.get("/console/")).status_code == 200
        for _ in range(3):  # the page's own refreshes are not activity
            stack.clock.advance(minutes=10)
            response = await client.get("/console/api/queue", headers={"X-Console-Background": "1"})
            assert response.status_code == 200
        stack.clock.advance(minutes=1)
        expired = await client.get("/console/", follow_redirects=False)
        assert expired.status_code == 303 and expired.headers["location"] == "/console/login"
        assert (await client.get("/console/api/queue")).status_code == 401


async def test_sessions_end_after_10_hours_even_when_active(stack: Stack) -> None:
    await adviser(stack.services, "caritas-pb", "anna")
    async with stack.client() as client:
        await sign_in(client, "anna")
        for _ in range(23):  # 23 x 25 min = 9 h 35 min
            stack.clock.advance(minutes=25)
            assert (await client.get("/console/api/queue")).status_code == 200
        stack.clock.advance(minutes=26)
        assert (await client.get("/console/api/queue")).status_code == 401


async def test_logout_ends_the_session_on_the_server(stack: Stack) -> None:
    await adviser(stack.services, "caritas-pb", "anna")
    async with stack.client() as client:
        await sign_in(client, "anna")
        token = client.cookies["lotse_console"]
        csrf = await csrf_of(client)
        assert (await client.post("/console/logout", data={"csrf": "wrong"})).status_code == 403
        out = await client.post("/console/logout", data={"csrf": csrf}, follow_redirects=False)
        assert out.status_code == 303 and out.headers["location"] == "/console/login"
    async with stack.client() as replay:  # the old cookie, replayed
        replay.cookies.set("lotse_console", token, domain="127.0.0.1", path="/console")
        assert (await replay.get("/console/api/queue")).status_code == 401
    async with stack.services.database.unit_of_work() as session:
        row = await session.get_one(AdviserSession, hashlib.sha256(token.encode()).hexdigest())
        assert row.ended_at is not None
    assert "console.logout" in [e.action for e in await _audit(stack.services)]


async def test_state_changes_need_the_csrf_token(stack: Stack) -> None:
    await adviser(stack.services, "caritas-pb", "anna")
    opened = await open_ticket(stack.services, organisation="caritas-pb")
    async with stack.client() as client:
        form = await client.get("/console/login")
        assert "lotse_console_login=" in form.headers["set-cookie"]
        no_login_csrf = await client.post(
            "/console/login", data={"username": "anna", "password": PASSWORD}, follow_redirects=False
        )
        assert no_login_csrf.status_code == 403
        await sign_in(client, "anna")
        claim = f"/console/tickets/{opened.ticket_id}/claim"
        assert (await client.post(claim)).status_code == 403
        assert (await client.post(claim, data={"csrf": "x" * 43})).status_code == 403
        assert (await client.post(claim, headers={"X-CSRF-Token": ""})).status_code == 403
        ticket = await stack.services.handoff.ticket("caritas-pb", opened.ticket_id)
        assert ticket is not None and ticket.status == "waiting"
        csrf = await csrf_of(client)
        done = await client.post(claim, headers={"X-CSRF-Token": csrf, "Accept": "application/json"})
        assert done.status_code == 200 and done.json()["ok"] is True
    ticket = await stack.services.handoff.ticket("caritas-pb", opened.ticket_id)
    assert ticket is not None and ticket.status == "claimed"


# ---- isolation and escaping ----------------------------------------------------------------------------


async def test_another_organisations_ticket_is_not_found_anywhere(stack: Stack) -> None:
    await adviser(stack.services, "awo", "otto")
    theirs = await open_ticket(stack.services, organisation="caritas-pb", question="Geheime Frage 4711")
    ours = await open_ticket(stack.services, organisation="awo")
    async with stack.client() as client:
        await sign_in(client, "otto")
        csrf = await csrf_of(client)
        page = await client.get(f"/console/tickets/{theirs.ticket_id}")
        assert page.status_code == 404 and "4711" not in page.text
        api = await client.get(f"/console/api/tickets/{theirs.ticket_id}/messages")
        assert api.status_code == 404 and "4711" not in api.text
        for action in ("claim", "reply", "note", "close", "hand-back", "release", "refer", "module"):
            response = await client.post(
                f"/console/tickets/{theirs.ticket_id}/{action}",
                data={"csrf": csrf, "text": "x", "outcome": "answered", "target": "awo"},
            )
            assert response.status_code == 404, action
        queue = (await client.get("/console/api/queue")).json()["tickets"]
        assert [t["id"] for t in queue] == [ours.ticket_id]
        assert f"#{theirs.ticket_id}<" not in (await client.get("/console/")).text
        assert (await client.get(f"/console/tickets/{ours.ticket_id}")).status_code == 200
    ticket = await stack.services.handoff.ticket("caritas-pb", theirs.ticket_id)
    assert ticket is not None and ticket.status == "waiting" and ticket.adviser_id is None
    async with stack.services.database.unit_of_work() as session:
        assert list(await session.scalars(select(TicketNote))) == []


async def test_client_html_is_shown_as_text(tmp_path: Path, detector: LanguageDetector) -> None:
    settings = make_settings(tmp_path, LOTSE_PUBLIC_URL=BASE)
    services = bootstrap(settings, detector=detector)  # no translator: marked as unavailable
    app = create_app(services)  # the real mount, with both security-header middlewares
    await adviser(services, "caritas-pb", "anna", name="<b>Anna</b>")
    attack = "<script>alert(1)</script>"
    opened = await open_ticket(
        services, organisation="caritas-pb", question=attack, language="ar", town=attack
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        await sign_in(client, "anna")
        page = await client.get(f"/console/tickets/{opened.ticket_id}")
        assert page.status_code == 200
        assert attack not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
        assert "<b>Anna</b>" not in page.text and "&lt;b&gt;Anna&lt;/b&gt;" in page.text
        assert "Übersetzung nicht verfügbar" in page.text
        scripts = re.findall(r"<script[^>]*>", page.text)
        assert scripts == ['<script src="/console/static/console.js" defer>']  # no inline script at all
        policies = page.headers.get_list("content-security-policy")
        console_policy = next(p for p in policies if "form-action" in p)
        assert "script-src 'self'" in console_policy and "unsafe-inline" not in console_policy
        assert "frame-ancestors 'none'" in console_policy
        assert page.headers["cache-control"] == "no-store"
        api = (await client.get(f"/console/api/tickets/{opened.ticket_id}/messages")).json()
        assert api["messages"][0]["original"] == attack  # JSON stays raw; the script sets it as text
        assert (await client.get("/console/static/console.js")).status_code == 200
    await services.close()


# ---- the ticket view and its actions -------------------------------------------------------------------


async def test_ticket_view_summary_translation_and_audit(stack: Stack) -> None:
    anna = await adviser(stack.services, "caritas-pb", "anna")
    opened = await open_ticket(
        stack.services, organisation="caritas-pb", question="Як визнати мій диплом?", town="Delbrück"
    )
    async with stack.client() as client:
        await sign_in(client, "anna")
        page = (await client.get(f"/console/tickets/{opened.ticket_id}")).text
    assert "Übergabe" in page and "Anerkennung" in page and "Delbrück" in page and "Ukrainisch" in page
    assert "[uk-&gt;de] Як визнати мій диплом?" in page  # German translation ...
    assert "maschinell übersetzt" in page
    assert page.count("Як визнати мій диплом?") >= 2  # ... with the original beside it
    assert "Weitergabe an die Beratungsstelle" in page  # the consent scope
    views = [e for e in await _audit(stack.services) if e.action == "console.conversation_viewed"]
    assert len(views) == 1 and views[0].actor == f"adviser:{anna.id}"
    assert views[0].conversation_id == opened.turn.conversation_id
    assert "диплом" not in views[0].detail


async def test_claim_reply_module_note_and_close(stack: Stack) -> None:
    await adviser(stack.services, "caritas-pb", "anna")
    opened = await open_ticket(
        stack.services, organisation="caritas-pb", language="en", question="Help please"
    )
    ticket_id = opened.ticket_id
    async with stack.client() as client:
        await sign_in(client, "anna")
        csrf = await csrf_of(client)
        url = f"/console/tickets/{ticket_id}"
        claimed = await client.post(f"{url}/claim", data={"csrf": csrf}, follow_redirects=False)
        assert claimed.status_code == 303 and claimed.headers["location"] == f"{url}?hinweis=claimed"
        await client.post(f"{url}/reply", data={"csrf": csrf, "text": "Wir helfen Ihnen gern."})
        await client.post(f"{url}/reply", data={"csrf": csrf, "text": "Guten Tag", "untranslated": "1"})
        await client.post(f"{url}/module", data={"csrf": csrf, "key": "module.documents"})
        await client.post(f"{url}/note", data={"csrf": csrf, "text": "Rückruf am Montag"})
        await client_writes(stack.services, opened, "Thank you!")
        referred = await client.post(
            f"{url}/refer", data={"csrf": csrf, "target": "awo"}, follow_redirects=False
        )
        assert referred.headers["location"] == f"{url}?hinweis=referral"
        own = await client.post(
            f"{url}/refer", data={"csrf": csrf, "target": "caritas-pb"}, follow_redirects=False
        )
        assert own.headers["location"] == f"{url}?hinweis=target"
        page = (await client.get(url)).text
        assert "Rückruf am Montag" in page and "ohne Übersetzung" in page and "Textbaustein" in page
        closed = await client.post(
            f"{url}/close", data={"csrf": csrf, "outcome": "answered"}, headers={"Accept": "application/json"}
        )
        assert closed.json() == {"ok": True, "notice": "closed"}
        again = await client.post(
            f"{url}/close", data={"csrf": csrf, "outcome": "answered"}, headers={"Accept": "application/json"}
        )
        assert again.status_code == 409 and again.json() == {"ok": False, "notice": "state"}
        refused = await client.post(
            f"{url}/reply", data={"csrf": csrf, "text": "zu spät"}, follow_redirects=False
        )
        assert refused.headers["location"] == f"{url}?hinweis=claim_first"
        assert "Bitte das Ticket zuerst übernehmen." in (await client.get(refused.headers["location"])).text
    async with stack.services.database.unit_of_work() as session:
        ticket = await session.get_one(Ticket, ticket_id)
        sent = list(
            await session.scalars(
                select(Message)
                .where(Message.conversation_id == opened.turn.conversation_id, Message.author == "adviser")
                .order_by(Message.id)
            )
        )
    assert ticket.status == "closed" and ticket.outcome == "answered"
    assert sent[0].text.startswith("[de->en] Wir helfen Ihnen gern.")
    assert sent[1].text == "Guten Tag"
    assert sent[2].text == stack.services.content.texts["en"]["module.documents"]  # the authored English
    async with stack.services.database.unit_of_work() as session:
        keys = list(
            await session.scalars(
                select(Message.content_key).where(Message.conversation_id == opened.turn.conversation_id)
            )
        )
    assert "consent.referral.v1" in keys  # the client is asked before anything moves


async def test_a_claimed_ticket_cannot_be_claimed_again(stack: Stack) -> None:
    await adviser(stack.services, "caritas-pb", "anna")
    await adviser(stack.services, "caritas-pb", "carl")
    opened = await open_ticket(stack.services, organisation="caritas-pb")
    results = []
    for name in ("anna", "carl"):
        async with stack.client() as client:
            await sign_in(client, name)
            csrf = await csrf_of(client)
            response = await client.post(
                f"/console/tickets/{opened.ticket_id}/claim",
                data={"csrf": csrf},
                headers={"Accept": "application/json"},
            )
            results.append((response.status_code, response.json()["ok"]))
    assert results == [(200, True), (409, False)]


# ---- figures, appointments, calendar -------------------------------------------------------------------


async def _appointment(services: Services, opened_client: str, organisation: str, **fields: str) -> None:
    start = utcnow().replace(microsecond=0) + __import__("datetime").timedelta(days=3)
    async with services.database.unit_of_work() as session:
        session.add(
            Appointment(
                client_id=opened_client,
                channel="rest",
                organisation=organisation,
                service_id="migrationsberatung",
                location_id=f"{organisation}-paderborn",
                starts_at=start,
                ends_at=start + __import__("datetime").timedelta(minutes=45),
                language="uk",
                topic="recognition",
                town="Salzkotten",
                name=fields.get("name", "Olena Beispiel"),
                contact=fields.get("contact", "+49 170 1234567"),
                reason="Anerkennung Diplom",
            )
        )
        await session.commit()


async def test_figures_count_without_personal_data_and_export_csv(stack: Stack) -> None:
    await adviser(stack.services, "caritas-pb", "anna", name="Anna Kowalski")
    first = await open_ticket(
        stack.services, organisation="caritas-pb", question="Unikat-Frage-8812", town="Lichtenau"
    )
    await open_ticket(
        stack.services, organisation="awo", language="ar", question="سؤال", topic="language_course"
    )
    await _appointment(stack.services, first.turn.client_id, "caritas-pb")
    async with stack.client() as client:
        await sign_in(client, "anna")
        csrf = await csrf_of(client)
        await client.post(f"/console/tickets/{first.ticket_id}/claim", data={"csrf": csrf})
        page = (await client.get("/console/figures")).text
        export = await client.get("/console/figures.csv")
    main_part = page.split("<main>", 1)[1]
    for personal in (
        "Unikat-Frage-8812", "Lichtenau", "Salzkotten", "Olena", "1234567", "Anna Kowalski",
        first.turn.client_id, first.turn.conversation_id, "سؤال",
    ):  # fmt: skip
        assert personal not in main_part and personal not in export.text, personal
    assert "<svg" in main_part and "Caritasverband Paderborn" in main_part and "AWO Kreisverband" in main_part
    assert "Insgesamt: 2 Fragen · 2 Übergaben · 1 Termine" in main_part
    assert export.headers["content-type"].startswith("text/csv")
    assert "attachment" in export.headers["content-disposition"]
    lines = export.text.strip().splitlines()
    assert lines[0].split(",")[:8] == [
        "month", "organisation", "topic", "language", "questions", "handoffs", "bookings", "claimed",
    ]  # fmt: skip
    rows = [line.split(",") for line in lines[1:]]
    month = utcnow().strftime("%Y-%m")
    caritas = next(r for r in rows if r[1] == "caritas-pb")
    assert caritas[:8] == [month, "caritas-pb", "recognition", "uk", "0", "1", "1", "1"]
    questions = {r[3]: int(r[4]) for r in rows if r[1] == ""}
    assert questions == {"uk": 1, "ar": 1}


async def test_appointments_page_and_calendar_feed_token(stack: Stack) -> None:
    await adviser(stack.services, "caritas-pb", "anna")
    opened = await open_ticket(stack.services, organisation="caritas-pb")
    await _appointment(stack.services, opened.turn.client_id, "caritas-pb", name="Olena <i>B</i>")
    await _appointment(stack.services, opened.turn.client_id, "awo", name="Nicht Hier")
    secret = stack.services.settings.secret_key
    token = calendar_token("caritas-pb", secret)
    async with stack.client() as client:
        await sign_in(client, "anna")
        page = (await client.get("/console/appointments")).text
        assert "Olena &lt;i&gt;B&lt;/i&gt;" in page and "Nicht Hier" not in page
        assert f"/console/calendar/caritas-pb.ics?token={token}" in page
    async with stack.client() as calendar:  # calendar programs have no session
        feed = await calendar.get(f"/console/calendar/caritas-pb.ics?token={token}")
        assert feed.status_code == 200 and feed.headers["content-type"].startswith("text/calendar")
        body = feed.text
        assert body.startswith("BEGIN:VCALENDAR\r\n") and body.count("BEGIN:VEVENT") == 1
        assert "DTSTART:" in body and "Ukrainisch" in body and "STATUS:CONFIRMED" in body
        assert "Olena" not in body and "1234567" not in body and "Nicht Hier" not in body
        assert all(len(line.encode()) <= 75 for line in body.split("\r\n"))  # folded
        wrong = await calendar.get(f"/console/calendar/caritas-pb.ics?token={token[:-1]}0")
        assert wrong.status_code == 403
        other = await calendar.get(f"/console/calendar/awo.ics?token={token}")  # caritas' token for awo
        assert other.status_code == 403
        assert (await calendar.get("/console/calendar/caritas-pb.ics")).status_code == 403
        assert (await calendar.get(f"/console/calendar/nowhere.ics?token={token}")).status_code == 404


# ---- settings and command line -------------------------------------------------------------------------


def test_secret_key_is_required_in_production_and_chats_are_parsed() -> None:
    base = {"LOTSE_ENV": "production", "LOTSE_PUBLIC_URL": "https://lotse.example.org"}
    with pytest.raises(SettingsError, match="LOTSE_SECRET_KEY"):
        load_settings(base)
    with pytest.raises(SettingsError, match="LOTSE_SECRET_KEY"):
        load_settings({**base, "LOTSE_SECRET_KEY": "changeme"})
    settings = load_settings(
        {**base, "LOTSE_SECRET_KEY": "k" * 40, "LOTSE_CONSOLE_TELEGRAM_CHATS": "awo:-1001, caritas-pb:42"}
    )
    assert settings.console_telegram_chats == (("awo", "-1001"), ("caritas-pb", "42"))
    assert settings.console_secure_cookies
    with pytest.raises(SettingsError, match="LOTSE_CONSOLE_TELEGRAM_CHATS"):
        load_settings({"LOTSE_CONSOLE_TELEGRAM_CHATS": "awo"})
    assert load_settings({"LOTSE_CONSOLE_IDLE_MINUTES": "5"}).console_idle_minutes == 5
    assert not load_settings({"LOTSE_PUBLIC_URL": "http://localhost:8000"}).console_secure_cookies
    assert load_settings({"LOTSE_PUBLIC_URL": "http://lotse.example.org"}).console_secure_cookies


def test_command_line_manages_advisers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(tmp_path)
    monkeypatch.setenv("LOTSE_DATABASE_URL", settings.database_url)
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{PASSWORD}\n"))
    assert main(["adviser", "add", "--org", "caritas-pb", "--username", "anna", "--name", "Anna K.",
                 "--password-stdin"]) == 0  # fmt: skip
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{PASSWORD}\n"))
    assert (
        main(["adviser", "add", "--org", "nirgendwo", "--username", "x", "--name", "X", "--password-stdin"])
        == 2
    )
    assert "unknown organisation 'nirgendwo'" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("kurz\n"))
    assert main(["adviser", "add", "--org", "awo", "--username", "b", "--name", "B", "--password-stdin"]) == 2
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{PASSWORD}\n"))
    assert (
        main(["adviser", "add", "--org", "awo", "--username", "anna", "--name", "A", "--password-stdin"]) == 2
    )
    assert "taken" in capsys.readouterr().err
    assert main(["org", "list"]) == 0
    assert "caritas-pb\tCaritasverband Paderborn" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO("ein-ganz-neues-passwort\n"))
    assert main(["adviser", "reset-password", "--username", "anna", "--password-stdin"]) == 0
    assert main(["adviser", "disable", "--username", "anna"]) == 0
    capsys.readouterr()
    assert main(["adviser", "list"]) == 0
    listing = capsys.readouterr().out
    assert "\tcaritas-pb\tanna\tAnna K.\tdisabled" in listing and "$argon2" not in listing
    assert main(["adviser", "disable", "--username", "niemand"]) == 2


async def test_a_disabled_adviser_cannot_sign_in(stack: Stack) -> None:
    from bot.console.accounts import disable_adviser

    await adviser(stack.services, "caritas-pb", "anna")
    async with stack.client() as client:
        await sign_in(client, "anna")
        assert (await client.get("/console/api/queue")).status_code == 200
        async with stack.services.database.unit_of_work() as session:
            await disable_adviser(session, username="anna")
            await session.commit()
        assert (await client.get("/console/api/queue")).status_code == 401
        assert (await sign_in(client, "anna")).status_code == 401
    async with stack.services.database.unit_of_work() as session:
        stored = await session.scalar(select(Adviser.password_hash).where(Adviser.username == "anna"))
    assert stored is not None and stored.startswith("$argon2id$") and PASSWORD not in stored
