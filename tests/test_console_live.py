"""The console over real HTTP on loopback: server-sent events per organisation, exclusive claims under
concurrency on SQLite and PostgreSQL, and the Telegram group notification of a new ticket."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, select, text
from starlette.applications import Starlette

from bot.app import create_app
from bot.bootstrap import Services, bootstrap
from bot.console import build_console
from bot.console.notify import TicketNotifier
from bot.language import LanguageDetector
from bot.storage.models import TicketEvent
from tests.auxil.botapi import FakeBotApi
from tests.auxil.console import LoopServer, adviser, client_writes, csrf_of, open_ticket, sign_in
from tests.auxil.servers import ServerThread, free_port, postgres_admin_url
from tests.conftest import make_settings


async def _events(lines: AsyncIterator[str], count: int, seconds: float = 10.0) -> list[dict[str, Any]]:
    """The next ``count`` data events of a stream (named events such as ``ready`` included)."""
    found: list[dict[str, Any]] = []

    async def read() -> None:
        async for line in lines:
            if line.startswith("data: "):
                found.append(json.loads(line[6:]))
                if len(found) == count:
                    return

    await asyncio.wait_for(read(), timeout=seconds)
    return found


@pytest.fixture
async def services(tmp_path: Path, detector: LanguageDetector) -> AsyncIterator[Services]:
    built = bootstrap(make_settings(tmp_path, LOTSE_PUBLIC_URL="http://127.0.0.1:8000"), detector=detector)
    yield built
    await built.close()


async def test_events_reach_only_the_own_organisation_and_end_with_the_session(services: Services) -> None:
    await adviser(services, "caritas-pb", "anna")
    app = Starlette(routes=[build_console(services, keepalive=0.3)])
    async with LoopServer(app) as server, httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as stranger:
            assert (await stranger.get("/console/events")).status_code == 401
        await sign_in(client, "anna")
        async with client.stream("GET", "/console/events") as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.aiter_lines()
            assert await _events(lines, 1) == [{"type": "ready"}]
            theirs = await open_ticket(services, organisation="awo", question="Frage an die AWO")
            ours = await open_ticket(services, organisation="caritas-pb", question="Моє питання")
            opened = await _events(lines, 1)
            # awo's event was published first: had it leaked, it would have arrived first.
            assert opened == [{"type": "ticket.opened", "ticket": ours.ticket_id}]
            await client_writes(services, theirs, "noch eine Frage an die AWO", status="waiting")
            message_id = await client_writes(services, ours, "<b>Привіт</b>", status="waiting")
            event = (await _events(lines, 1))[0]
            assert event == {"type": "message", "ticket": ours.ticket_id, "message": message_id}
            fetched = await client.get(
                f"/console/api/tickets/{ours.ticket_id}/messages?after={message_id - 1}"
            )
            assert [m["original"] for m in fetched.json()["messages"]] == ["<b>Привіт</b>"]
            csrf = await csrf_of(client)
            await client.post(f"/console/tickets/{ours.ticket_id}/claim", data={"csrf": csrf})
            assert (await _events(lines, 1)) == [{"type": "ticket.claimed", "ticket": ours.ticket_id}]
            await client.post("/console/logout", data={"csrf": csrf})

            async def ended() -> list[str]:
                return [line async for line in lines if line.startswith("event: ")]

            assert await asyncio.wait_for(ended(), timeout=10) == ["event: ended"]
        assert theirs.ticket_id != ours.ticket_id


async def _concurrent_claims(services: Services, rounds: int = 4) -> None:
    """Two advisers press "Übernehmen" on the same ticket at the same moment, over HTTP; then ten at once
    through the service itself."""
    await adviser(services, "caritas-pb", "anna")
    await adviser(services, "caritas-pb", "carl")
    app = Starlette(routes=[build_console(services)])
    async with (
        LoopServer(app) as server,
        httpx.AsyncClient(base_url=server.url, timeout=30) as anna,
        httpx.AsyncClient(base_url=server.url, timeout=30) as carl,
    ):
        await sign_in(anna, "anna")
        await sign_in(carl, "carl")
        tokens = [await csrf_of(anna), await csrf_of(carl)]
        for _ in range(rounds):
            opened = await open_ticket(services, organisation="caritas-pb")
            url = f"/console/tickets/{opened.ticket_id}/claim"
            headers = [{"X-CSRF-Token": token, "Accept": "application/json"} for token in tokens]
            answers = await asyncio.gather(
                anna.post(url, headers=headers[0]), carl.post(url, headers=headers[1])
            )
            assert sorted(a.status_code for a in answers) == [200, 409]
            assert sorted(a.json()["ok"] for a in answers) == [False, True]
    team = [await adviser(services, "caritas-pb", f"team{n}") for n in range(10)]
    opened = await open_ticket(services, organisation="caritas-pb")
    wins = await asyncio.gather(*(services.handoff.claim(opened.ticket_id, member) for member in team))
    assert sum(wins) == 1
    async with services.database.unit_of_work() as session:
        claims = list(
            await session.scalars(
                select(TicketEvent).where(
                    TicketEvent.ticket_id == opened.ticket_id, TicketEvent.kind == "claimed"
                )
            )
        )
    assert len(claims) == 1


async def test_exactly_one_concurrent_claim_wins_on_sqlite(services: Services) -> None:
    await _concurrent_claims(services)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh database on the machine's PostgreSQL server, dropped afterwards."""
    admin = create_engine(postgres_admin_url(), isolation_level="AUTOCOMMIT")
    name = f"lotse_console_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield postgres_admin_url().rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.mark.postgres
async def test_exactly_one_concurrent_claim_wins_on_postgresql(
    tmp_path: Path, detector: LanguageDetector, postgres_url: str
) -> None:
    settings = make_settings(tmp_path, LOTSE_DATABASE_URL=postgres_url)
    services = bootstrap(settings, detector=detector)
    try:
        await _concurrent_claims(services)
    finally:
        await services.close()


async def test_a_new_ticket_is_announced_in_the_organisations_telegram_group(
    tmp_path: Path, detector: LanguageDetector
) -> None:
    api = FakeBotApi()
    api_server = ServerThread(api.app).start()
    port = free_port()
    settings = make_settings(
        tmp_path,
        TELEGRAM_TOKEN="123456:TEST",
        TELEGRAM_WEBHOOK_SECRET="webhook-secret-1",
        LOTSE_TELEGRAM_API_URL=api_server.url,
        LOTSE_PUBLIC_URL=f"http://127.0.0.1:{port}",
        LOTSE_CONSOLE_TELEGRAM_CHATS="caritas-pb:-100777",
    )
    services = bootstrap(settings, detector=detector)
    try:
        app = create_app(services)  # the lifespan starts Telegram as in production
        async with LoopServer(app, lifespan="on", port=port):
            notifier = next(n for n in services.handoff.notify if isinstance(n, TicketNotifier))
            await open_ticket(services, organisation="awo", question="Nicht für Caritas")
            ours = await open_ticket(services, organisation="caritas-pb", question="Секретне питання")
            await notifier.drain()
            sent = [p for p in api.sent() if str(p["chat_id"]) == "-100777"]
            assert len(sent) == 1
            message = str(sent[0]["text"])
            assert message.startswith(
                f"Neues Ticket #{ours.ticket_id}, Sprache: Ukrainisch, Thema: Anerkennung."
            )
            assert "Wartend: 1, längste Wartezeit 0 Min." in message
            assert message.endswith(f"http://127.0.0.1:{port}/console/tickets/{ours.ticket_id}")
            assert "Секретне" not in message and ours.turn.client_id not in message
    finally:
        api_server.stop()
