"""Load: 200 simulated clients over two minutes, half on the widget's socket.io channel and half on
REST, through the app to the real engine. Every client is answered, every message is stored, no errors.

The engine answers about 20 turns per second on this 2-core machine (README, "Measured"), and this test
shares the machine with the rest of the suite, so each client writes 3 messages (600 turns, about
5 per second on average, some 20 conversations open at a time): clients arrive evenly over 110 s and
think 1-4 s between messages, as people do. Every wait is bounded; the whole load stops by itself.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field

import httpx
import pytest
from sqlalchemy import func, select

from bot.benchmark import ERROR_KEYS, WidgetTab, answered, client_messages
from bot.storage.database import Database
from bot.storage.models import ChannelIdentity, Conversation, Message
from tests.conftest import LiveStack

pytestmark = pytest.mark.engine

CLIENTS = 200
MESSAGES_PER_CLIENT = 3
ARRIVAL_SPREAD_SECONDS = 110.0
THINK_SECONDS = (1.0, 4.0)
TURN_TIMEOUT = 30.0
LOAD_DEADLINE_SECONDS = 170.0


@dataclass
class Client:
    """One simulated client and what happened to it."""

    index: int
    channel: str  # "widget" or "rest"
    external_id: str
    answered: int = 0
    errors: list[str] = field(default_factory=list)


async def _rest_client(client: Client, url: str, http: httpx.AsyncClient, texts: list[str]) -> None:
    for text in texts:
        try:
            response = await http.post(
                f"{url}/webhooks/rest/webhook", json={"sender": client.external_id, "message": text}
            )
        except httpx.HTTPError as exc:
            client.errors.append(f"{text!r}: {exc!r}")
            continue
        if response.status_code != 200 or not answered(response.json()):
            client.errors.append(f"{text!r}: HTTP {response.status_code} {response.text[:200]}")
        else:
            client.answered += 1
        await asyncio.sleep(random.uniform(*THINK_SECONDS))


async def _widget_client(client: Client, url: str, texts: list[str]) -> None:
    tab = WidgetTab(url)
    await tab.connect()
    try:
        client.external_id = await tab.new_session()
        for text in texts:
            _seconds, ok = await tab.turn(client.external_id, text)
            if ok:
                client.answered += 1
            else:
                client.errors.append(f"{text!r}: no answer within {TURN_TIMEOUT:.0f} s, or an apology")
            await asyncio.sleep(random.uniform(*THINK_SECONDS))
    finally:
        await tab.close()


async def _simulate(client: Client, url: str, http: httpx.AsyncClient, texts: list[str]) -> None:
    await asyncio.sleep(client.index * ARRIVAL_SPREAD_SECONDS / CLIENTS)
    try:
        if client.channel == "widget":
            await _widget_client(client, url, texts)
        else:
            await _rest_client(client, url, http, texts)
    except Exception as exc:  # every failure is counted, none stops the other clients
        client.errors.append(repr(exc))


async def test_200_clients_over_two_minutes_all_answered_all_stored(
    live: LiveStack, database: Database
) -> None:
    messages = client_messages()
    rng = random.Random(2026)
    clients = [
        Client(index=i, channel="widget" if i % 2 == 0 else "rest", external_id=f"load-{uuid.uuid4().hex}")
        for i in range(CLIENTS)
    ]
    texts = {c.index: rng.sample(messages, MESSAGES_PER_CLIENT) for c in clients}
    started = time.monotonic()
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(timeout=TURN_TIMEOUT, limits=limits) as http:
        tasks = [asyncio.create_task(_simulate(c, live.url, http, texts[c.index])) for c in clients]
        _done, pending = await asyncio.wait(tasks, timeout=LOAD_DEADLINE_SECONDS)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    seconds = time.monotonic() - started

    assert not pending, f"{len(pending)} clients were still talking after {LOAD_DEADLINE_SECONDS:.0f} s"
    errors = [f"client {c.index} ({c.channel}): {e}" for c in clients for e in c.errors]
    assert errors == [], f"{len(errors)} errors, e.g. {errors[:5]}"
    unanswered = [c.index for c in clients if c.answered != MESSAGES_PER_CLIENT]
    assert unanswered == [], f"clients not answered every time: {unanswered[:20]}"
    assert {c.channel for c in clients} == {"widget", "rest"}

    # Every message stored: each client's conversation holds its messages in and at least one reply each.
    async with database.unit_of_work() as session:
        rows = await session.execute(
            select(ChannelIdentity.channel, ChannelIdentity.external_id, Message.direction, func.count())
            .join(Conversation, Conversation.client_id == ChannelIdentity.client_id)
            .join(Message, Message.conversation_id == Conversation.id)
            .where(ChannelIdentity.external_id.in_([c.external_id for c in clients]))
            .group_by(ChannelIdentity.channel, ChannelIdentity.external_id, Message.direction)
        )
        counts = {(channel, external, direction): n for channel, external, direction, n in rows}
        error_replies = await session.scalar(
            select(func.count())
            .select_from(Message)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .join(ChannelIdentity, ChannelIdentity.client_id == Conversation.client_id)
            .where(
                ChannelIdentity.external_id.in_([c.external_id for c in clients]),
                Message.content_key.in_(sorted(ERROR_KEYS)),
            )
        )
    missing = [
        c.index
        for c in clients
        if counts.get((c.channel, c.external_id, "in")) != MESSAGES_PER_CLIENT
        or counts.get((c.channel, c.external_id, "out"), 0) < MESSAGES_PER_CLIENT
    ]
    assert missing == [], f"clients whose messages are not all stored: {missing[:20]}"
    assert error_replies == 0
    assert seconds < LOAD_DEADLINE_SECONDS
