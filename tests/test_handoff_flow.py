"""The human handoff end to end over REST: the real engine's handoff action, the consent asked by the app,
the ticket in the organisation's queue, an adviser's translated reply delivered with the client's next
request, hand-back to the bot, erasure while waiting, and an app restart while waiting."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from sqlalchemy import func, select

from bot.bootstrap import Services, bootstrap
from bot.storage.models import ChannelIdentity, Conversation, Message, Ticket
from tests.auxil.console import adviser
from tests.auxil.libretranslate import FakeLibreTranslate
from tests.auxil.live import always_open, restart_app, with_libre
from tests.auxil.servers import ServerThread
from tests.conftest import LiveStack
from tests.test_booking_dialogue import Reply, keys, meta, payload

pytestmark = pytest.mark.engine

QUESTION = "Які документи потрібні для визнання диплома?"
ORGANISATION = "caritas-pb"  # routing: recognition -> caritas-pb-recognition (content/routing.yml)


@pytest.fixture(scope="module")
def stack(live: LiveStack) -> Iterator[tuple[LiveStack, FakeLibreTranslate]]:
    """The live stack with its app restarted on the loopback LibreTranslate server (restored afterwards)."""
    fake = FakeLibreTranslate()
    server = ServerThread(fake.app).start()
    original = live.settings
    try:
        restart_app(live, with_libre(original, server.url))
        yield live, fake
    finally:
        restart_app(live, original)
        server.stop()


@pytest.fixture(scope="module")
async def desk(stack: tuple[LiveStack, FakeLibreTranslate]) -> AsyncIterator[Services]:
    """The advisers' side: services of their own on the same database (as a console replica has)."""
    live, _fake = stack
    services = always_open(bootstrap(live.settings, detector=live.services.router.detector))
    yield services
    await services.close()


class Client:
    """A Ukrainian client on the REST channel."""

    def __init__(self, live: LiveStack) -> None:
        self.live = live
        self.sender = uuid.uuid4().hex

    def say(self, text: str) -> list[Reply]:
        """One message, the replies (with anything an adviser sent meanwhile first)."""
        return self.live.rest(text, sender=self.sender, language="uk")


async def conversation_of(services: Services, sender: str) -> Conversation:
    """The REST sender's conversation."""
    async with services.database.unit_of_work() as session:
        client_id = await session.scalar(
            select(ChannelIdentity.client_id).where(
                ChannelIdentity.channel == "rest", ChannelIdentity.external_id == sender
            )
        )
        conversation = await session.scalar(select(Conversation).where(Conversation.client_id == client_id))
    assert conversation is not None
    return conversation


async def ticket_of(services: Services, conversation_id: str) -> Ticket | None:
    """The newest ticket of a conversation."""
    async with services.database.unit_of_work() as session:
        return await session.scalar(
            select(Ticket)
            .where(Ticket.conversation_id == conversation_id)
            .order_by(Ticket.id.desc())
            .limit(1)
        )


async def waiting_client(live: LiveStack, services: Services) -> tuple[Client, Ticket]:
    """A Ukrainian client who asked a question, then for a person, and consented."""
    uk = live.services.content.texts["uk"]
    client = Client(live)
    answered = client.say(QUESTION)
    assert keys(answered)[0] == "answer.recognition.documents", keys(answered)
    offered = client.say("/adviser")
    assert keys(offered) == ["handoff.explain", "consent.handoff.v1"], keys(offered)
    assert all(meta(r)["language"] == "uk" for r in offered)
    assert str(offered[0]["text"]).startswith(uk["handoff.explain"].split("{")[0])
    waiting = client.say(payload(offered, "/consent_yes"))
    assert keys(waiting) == ["consent.granted", "handoff.waiting"], keys(waiting)
    conversation = await conversation_of(services, client.sender)
    ticket = await ticket_of(services, conversation.id)
    assert ticket is not None and ticket.status == "waiting"
    position = len([t for t in await services.handoff.queue(ticket.organisation) if t.status == "waiting"])
    text = str(waiting[1]["text"])
    assert text.startswith(uk["handoff.waiting"].split("{")[0])
    assert f" {position}" in text, (position, text)
    return client, ticket


async def engine_events(live: LiveStack, conversation_id: str) -> int:
    """How many events the engine's tracker holds for a conversation."""
    async with httpx.AsyncClient(timeout=10) as http:
        tracker = (await http.get(f"{live.engine.url}/conversations/{conversation_id}/tracker")).json()
    return len(tracker["events"])


async def test_consent_ticket_adviser_translation_and_hand_back(
    stack: tuple[LiveStack, FakeLibreTranslate], desk: Services
) -> None:
    live, fake = stack
    uk = live.services.content.texts["uk"]
    client, ticket = await waiting_client(live, desk)
    assert ticket.organisation == ORGANISATION and ticket.language == "uk" and ticket.channel == "rest"
    summary = ticket.summary or {}
    assert summary["topic"] == "recognition" and summary["language"] == "uk"
    assert "answer.recognition.documents" in summary["answered"]
    assert summary["question_message_ids"], "the client's question is pointed at"

    assert ticket.conversation_id is not None
    before = await engine_events(live, ticket.conversation_id)
    queued = client.say("У мене диплом інженера з Харкова")
    assert keys(queued) == ["handoff.still_waiting"], keys(queued)
    assert await engine_events(live, ticket.conversation_id) == before, "waiting messages skip the engine"

    anna = await adviser(desk, ORGANISATION, f"anna-{uuid.uuid4().hex[:6]}")
    assert await desk.handoff.claim(ticket.id, anna)
    sent = await desk.handoff.send(ticket.id, anna, "Guten Tag, ich helfe Ihnen gern.")
    assert sent.machine_translated
    assert any(r.get("target") == "uk" and "Guten Tag" in r.get("q", "") for r in fake.requests)

    delivered = client.say("Дякую")
    assert keys(delivered)[:2] == ["handoff.claimed", "None"], keys(delivered)
    reply = delivered[1]
    assert str(reply["text"]).startswith("<uk> Guten Tag, ich helfe Ihnen gern.")
    assert uk["translation.machine"] in str(reply["text"])
    assert meta(reply)["machine_translated"] is True and meta(reply)["language"] == "uk"
    assert len(delivered) == 2, "while with an adviser the bot says nothing itself"
    assert client.say("Ще питання")[:1] == [], "an adviser message is delivered once"

    history = await desk.handoff.conversation(ORGANISATION, ticket.id)
    thanks = next(m for m in history if m.direction == "in" and m.text == "Дякую")
    german, how = await desk.handoff.german(thanks)
    assert (german, how) == ("<de> Дякую", "machine")

    await desk.handoff.hand_back(ticket.id, anna)
    returned = client.say("Скільки коштує інтеграційний курс?")
    assert keys(returned) == ["handoff.returned", "answer.language_course.cost"], keys(returned)
    assert str(returned[1]["text"]).startswith(uk["answer.language_course.cost"][:40])
    refreshed = await ticket_of(desk, ticket.conversation_id)
    assert refreshed is not None and refreshed.status == "returned"


async def test_without_consent_no_ticket_and_public_contacts(
    stack: tuple[LiveStack, FakeLibreTranslate], desk: Services
) -> None:
    live, _fake = stack
    client = Client(live)
    assert keys(client.say(QUESTION))[0] == "answer.recognition.documents"
    offered = client.say("/adviser")
    assert keys(offered) == ["handoff.explain", "consent.handoff.v1"], keys(offered)
    declined = client.say(payload(offered, "/consent_no"))
    assert keys(declined) == ["consent.declined", "handoff.contacts"], keys(declined)
    conversation = await conversation_of(desk, client.sender)
    assert await ticket_of(desk, conversation.id) is None
    assert conversation.status == "bot"
    assert keys(client.say(QUESTION))[0] == "answer.recognition.documents"


async def test_another_organisations_adviser_can_neither_claim_nor_see(
    stack: tuple[LiveStack, FakeLibreTranslate], desk: Services
) -> None:
    live, _fake = stack
    _client, ticket = await waiting_client(live, desk)
    other = await adviser(desk, "awo", f"otto-{uuid.uuid4().hex[:6]}")
    assert not await desk.handoff.claim(ticket.id, other)
    assert await desk.handoff.ticket("awo", ticket.id) is None
    assert await desk.handoff.conversation("awo", ticket.id) == []
    assert ticket.id not in [t.id for t in await desk.handoff.queue("awo")]
    assert ticket.id in [t.id for t in await desk.handoff.queue(ORGANISATION)]
    refreshed = await ticket_of(desk, str(ticket.conversation_id))
    assert refreshed is not None and refreshed.status == "waiting" and refreshed.adviser_id is None


async def test_erasure_while_waiting_closes_the_ticket_as_deleted(
    stack: tuple[LiveStack, FakeLibreTranslate], desk: Services
) -> None:
    live, _fake = stack
    client, ticket = await waiting_client(live, desk)
    asked = client.say("/delete")
    assert keys(asked) == ["delete.confirm"], keys(asked)
    done = client.say(payload(asked, "/confirm_delete"))
    assert keys(done) == ["delete.done"], keys(done)
    async with desk.database.unit_of_work() as session:
        erased = await session.get_one(Ticket, ticket.id)
        left = await session.scalar(
            select(func.count(Message.id)).where(Message.conversation_id == ticket.conversation_id)
        )
    assert erased.status == "closed" and erased.outcome == "deleted"
    assert erased.summary is None and erased.client_id is None and erased.conversation_id is None
    assert left == 0
    assert ticket.id not in [t.id for t in await desk.handoff.queue(ORGANISATION)]


async def test_waiting_and_claimed_tickets_survive_app_restarts(
    stack: tuple[LiveStack, FakeLibreTranslate], desk: Services
) -> None:
    live, _fake = stack
    client, ticket = await waiting_client(live, desk)
    restart_app(live)
    assert ticket.id in [t.id for t in await live_queue(desk)]
    queued = client.say("Я ще тут")
    assert keys(queued) == ["handoff.still_waiting"], keys(queued)
    bea = await adviser(desk, ORGANISATION, f"bea-{uuid.uuid4().hex[:6]}")
    assert await desk.handoff.claim(ticket.id, bea)
    await desk.handoff.send(ticket.id, bea, "Ich bin jetzt für Sie da.")
    restart_app(live)  # a claimed ticket with an undelivered adviser message survives a restart too
    delivered = client.say("Добре")
    assert keys(delivered)[:1] == ["handoff.claimed"], keys(delivered)
    assert str(delivered[1]["text"]).startswith("<uk> Ich bin jetzt für Sie da.")
    history = await desk.handoff.conversation(ORGANISATION, ticket.id)
    assert any(m.direction == "in" and m.text == "Добре" for m in history), "the message reached the adviser"
    refreshed = await ticket_of(desk, str(ticket.conversation_id))
    assert refreshed is not None and refreshed.status == "claimed" and refreshed.adviser_id == bea.id
    await desk.handoff.close(ticket.id, bea, "answered")
    closed = client.say("5")
    assert keys(closed)[:2] == ["handoff.closed", "rating.ask"], keys(closed)
    assert keys(closed)[2:] == ["rating.thanks"], keys(closed)


async def live_queue(services: Services) -> list[Ticket]:
    """The organisation's open tickets."""
    return await services.handoff.queue(ORGANISATION)
