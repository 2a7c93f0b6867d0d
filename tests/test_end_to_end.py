"""End to end through the app's REST channel, the real trained engine and the in-app action server."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from sqlalchemy import select

from bot.storage.database import Database
from bot.storage.models import Conversation, Message
from tests.conftest import LiveStack

pytestmark = pytest.mark.engine


def _lotse(reply: dict[str, object]) -> dict[str, object]:
    custom = reply["custom"]
    assert isinstance(custom, dict)
    meta = custom["lotse"]
    assert isinstance(meta, dict)
    return meta


def test_hallo_gets_a_german_greeting(live: LiveStack) -> None:
    replies = live.rest("Hallo")
    assert replies[0]["text"] == live.services.content.texts["de"]["greet"]
    assert _lotse(replies[0])["language"] == "de"
    assert replies[0]["buttons"], "the greeting offers the topics as buttons"


def test_health_reports_the_engine_up(live: LiveStack) -> None:
    body = httpx.get(f"{live.url}/health", timeout=10).json()
    assert body == body | {"status": "ok"}
    assert body["engine"]["state"] == "up" and body["database"]["state"] == "up"
    assert body["engine"]["model"].endswith(f"lotse-{body['engine']['expected_fingerprint']}.tar.gz")


@pytest.mark.parametrize(
    ("lang", "text", "key"),
    [
        ("de", "Was kostet der Integrationskurs?", "answer.language_course.cost"),
        ("en", "How can I get my nursing diploma recognised in Germany?", "answer.recognition.overview"),
        ("ar", "كيف أحصل على Bildungsgutschein من الجوب سنتر؟", "answer.qualification.bildungsgutschein"),
        ("uk", "Які документи потрібні для визнання диплома?", "answer.recognition.documents"),
        ("ru", "Сколько стоит интеграционный курс?", "answer.language_course.cost"),
        ("tr", "Integrationskurs için nasıl kayıt olabilirim?", "answer.language_course.registration"),
        ("fa", "برای دوره ادغام چطور ثبت نام کنم؟", "answer.language_course.registration"),
        ("fr", "Comment faire reconnaître mon diplôme d'ingénieur ?", "answer.recognition.overview"),
    ],
)
def test_questions_are_answered_in_the_clients_language(
    live: LiveStack, lang: str, text: str, key: str
) -> None:
    replies = live.rest(text)
    meta = _lotse(replies[0])
    assert meta["language"] == lang
    assert meta["key"] == key
    assert str(replies[0]["text"]).startswith(live.services.content.texts[lang][key][:40])
    assert "Stand" in str(replies[0]["text"])


def test_a_follow_up_keeps_the_topic_through_the_action_server(live: LiveStack) -> None:
    sender = uuid.uuid4().hex
    first = live.rest("Ich möchte einen Integrationskurs machen", sender=sender)
    assert _lotse(first[0])["key"] == "answer.language_course.overview"
    follow = live.rest("und was kostet das?", sender=sender)
    assert _lotse(follow[0])["key"] == "answer.language_course.cost"
    conversation_id = _conversation_id(live, sender)
    tracker = httpx.get(f"{live.engine.url}/conversations/{conversation_id}/tracker", timeout=10).json()
    assert tracker["slots"]["topic"] == "language_course"
    assert tracker["slots"]["aspect"] == "cost"


def test_aspect_buttons_continue_the_dialogue(live: LiveStack) -> None:
    sender = uuid.uuid4().hex
    first = live.rest("Anerkennung meines Abschlusses", sender=sender)
    buttons = first[0]["buttons"]
    assert isinstance(buttons, list)
    documents = next(b for b in buttons if "documents" in b["payload"])
    pressed = live.rest(documents["payload"], sender=sender)
    assert _lotse(pressed[0])["key"] == "answer.recognition.documents"


def test_two_misunderstandings_offer_a_person(live: LiveStack) -> None:
    sender = uuid.uuid4().hex
    live.rest("Hallo", sender=sender)
    # The intent is given directly: which texts the NLU fails on is measured by `make eval`.
    first = live.rest("/nlu_fallback", sender=sender)
    second = live.rest("/nlu_fallback", sender=sender)
    assert _lotse(first[0])["key"] == "fallback.rephrase"
    assert _lotse(second[0])["key"] == "fallback.offer_human"
    accepted = live.rest("/affirm", sender=sender)
    # the bot explains what would be shared with whom and asks for consent before any ticket exists
    assert _lotse(accepted[0])["key"] == "handoff.explain"
    assert _lotse(accepted[1])["key"].startswith("consent.handoff.")


def test_every_message_is_stored_in_order(live: LiveStack) -> None:
    sender = uuid.uuid4().hex
    live.rest("Hallo", sender=sender)
    live.rest("Danke", sender=sender)

    conversation_id = _conversation_id(live, sender)

    async def load() -> list[Message]:
        db = Database(live.settings.database_url)
        async with db.unit_of_work() as session:
            query = select(Message).where(Message.conversation_id == conversation_id).order_by(Message.id)
            rows = list(await session.scalars(query))
        await db.dispose()
        return rows

    rows = asyncio.run(load())
    assert [(m.direction, m.text) for m in rows if m.direction == "in"] == [("in", "Hallo"), ("in", "Danke")]
    assert rows[0].direction == "in" and rows[1].direction == "out"
    assert rows[1].content_key == "greet"


def _conversation_id(live: LiveStack, sender: str) -> str:
    async def load() -> str:
        from bot.storage.models import ChannelIdentity

        db = Database(live.settings.database_url)
        async with db.unit_of_work() as session:
            identity = await session.scalar(
                select(ChannelIdentity).where(
                    ChannelIdentity.channel == "rest", ChannelIdentity.external_id == sender
                )
            )
            assert identity is not None
            conversation_id = await session.scalar(
                select(Conversation.id).where(Conversation.client_id == identity.client_id)
            )
        await db.dispose()
        assert conversation_id
        return conversation_id

    return asyncio.run(load())


@pytest.mark.parametrize(
    ("text", "town"),
    [
        ("ich wohne in Delbrueck und suche einen Deutschkurs", "Delbrück"),
        ("I live in Bad Lipspringe, can I get a Bildungsgutschein?", "Bad Lippspringe"),
        ("я живу в Падерборні, як записатися на курс?", "Paderborn"),
    ],
)
def test_towns_are_recognised_and_mapped_to_their_official_name(
    live: LiveStack, text: str, town: str
) -> None:
    parsed = httpx.post(f"{live.engine.url}/model/parse", json={"text": text}, timeout=10).json()
    towns = [e["value"] for e in parsed["entities"] if e["entity"] == "town"]
    assert towns == [town], parsed["entities"]
