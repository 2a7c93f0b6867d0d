"""Helpers for the console tests: advisers, tickets opened through the real HandoffService, a settable
clock, an in-loop HTTP server (so tests, app and event hub share one event loop), and a sign-in."""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Literal

import httpx
import uvicorn
from sqlalchemy import select

from bot.bootstrap import Services
from bot.consent import ConsentPrompt, ConsentRequest, text_hash
from bot.console.accounts import add_adviser
from bot.conversations import add_message, find_or_create
from bot.data_rights import Turn
from bot.handoff import HandoffRequest
from bot.storage.models import Adviser, Message, Ticket
from tests.auxil.servers import free_port

PASSWORD = "richtig-langes-passwort-1"


@dataclass
class Clock:
    """A clock the test moves forward."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        """Now, as the console sees it."""
        return self.now

    def advance(self, **delta: float) -> None:
        """Move forward by a timedelta's keyword arguments."""
        self.now += timedelta(**delta)


async def adviser(services: Services, organisation: str, username: str, name: str = "") -> Adviser:
    """A new adviser account with PASSWORD."""
    async with services.database.unit_of_work() as session:
        created = await add_adviser(
            session,
            organisations=services.content.organisations,
            organisation=organisation,
            username=username,
            display_name=name or username.title(),
            password=PASSWORD,
        )
        await session.commit()
        return created


@dataclass(frozen=True)
class Opened:
    """A ticket opened by a client, and how to write as that client."""

    ticket_id: int
    turn: Turn


async def open_ticket(
    services: Services,
    *,
    organisation: str,
    language: str = "uk",
    channel: str = "rest",
    question: str = "Як визнати мій диплом?",
    topic: str | None = "recognition",
    town: str | None = None,
) -> Opened:
    """A client asks a question, consents to the handoff and is put into the organisation's queue."""
    async with services.database.unit_of_work() as session:
        client, conversation, _ = await find_or_create(
            session, channel=channel, external_id=f"client-{uuid.uuid4().hex[:12]}"
        )
        client.language = language
        message = add_message(
            session,
            conversation=conversation,
            direction="in",
            author="client",
            text=question,
            language=language,
        )
        request = ConsentRequest(scope="handoff", organisation=organisation)
        version = services.content.consent.current("handoff")
        shown = f"consent text {version.text_id} ({language})"
        await services.consent.record(
            session,
            client_id=client.id,
            prompt=ConsentPrompt(
                request=request,
                text=shown,
                language=language,
                version=version.version,
                text_id=version.text_id,
                text_hash=text_hash(shown),
            ),
            granted=True,
            channel=channel,
        )
        await session.commit()
        turn = Turn(
            client_id=client.id,
            conversation_id=conversation.id,
            channel=channel,
            language=language,
            text=question,
            message_id=message.id,
        )
    await services.handoff.open_ticket(turn, organisation, HandoffRequest(topic=topic, town=town))
    async with services.database.unit_of_work() as session:
        ticket_id = await session.scalar(
            select(Ticket.id).where(Ticket.conversation_id == turn.conversation_id).order_by(Ticket.id.desc())
        )
    assert ticket_id is not None
    return Opened(ticket_id=int(ticket_id), turn=turn)


async def client_writes(services: Services, opened: Opened, text: str, *, status: str = "adviser") -> int:
    """The client sends another message while the conversation is with the queue or an adviser."""
    async with services.database.unit_of_work() as session:
        message = Message(
            conversation_id=opened.turn.conversation_id,
            direction="in",
            author="client",
            text=text,
            language=opened.turn.language,
        )
        session.add(message)
        await session.commit()
        message_id = message.id
    turn = Turn(
        client_id=opened.turn.client_id,
        conversation_id=opened.turn.conversation_id,
        channel=opened.turn.channel,
        language=opened.turn.language,
        text=text,
        message_id=message_id,
    )
    await services.handoff.client_message(turn, status)
    return message_id


CSRF_INPUT = re.compile(r'name="csrf" value="([^"]+)"')
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]*)"')


async def sign_in(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> httpx.Response:
    """Fetch the login form (its CSRF cookie and field) and post the credentials."""
    form = await client.get("/console/login")
    match = CSRF_INPUT.search(form.text)
    assert match, form.text
    return await client.post(
        "/console/login",
        data={"csrf": match.group(1), "username": username, "password": password},
        follow_redirects=False,
    )


async def csrf_of(client: httpx.AsyncClient) -> str:
    """The session's CSRF token, as a page carries it."""
    page = await client.get("/console/")
    match = CSRF_META.search(page.text)
    assert match and match.group(1), page.text[:500]
    return match.group(1)


class LoopServer:
    """uvicorn serving an ASGI app inside the test's own event loop, on a free loopback port."""

    def __init__(self, app: Any, *, lifespan: Literal["on", "off"] = "off", port: int | None = None) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan=lifespan,
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self.task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> LoopServer:
        self.task = asyncio.create_task(self.server.serve())
        for _ in range(200):
            if self.server.started:
                return self
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.05)
        raise RuntimeError("the console server did not start within 10 s")

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.server.should_exit = True
        if self.task is not None:
            await asyncio.wait_for(self.task, timeout=15)


class FakeTranslator:
    """The translation provider (outside world) for console tests: marks what it translated."""

    name = "fake"

    def translate(self, text: str, source: str, target: str) -> str:
        """A recognisable 'translation'."""
        return f"[{source}->{target}] {text}"
