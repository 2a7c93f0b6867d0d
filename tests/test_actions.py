"""The custom actions with tracker fixtures and rasa-sdk's collecting dispatcher."""

from __future__ import annotations

from typing import Any

import pytest
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.actions import AnswerAction, FallbackAction, ReplyAction
from bot.content import Content, load_content
from bot.lexicon import LexiconMatcher
from bot.settings import ROOT


@pytest.fixture(scope="module")
def content() -> Content:
    return load_content(ROOT / "content")


def tracker(
    text: str,
    intent: str,
    *,
    slots: dict[str, Any] | None = None,
    events: list[dict[str, Any]] | None = None,
    entities: list[dict[str, Any]] | None = None,
) -> Tracker:
    latest = {"text": text, "intent": {"name": intent, "confidence": 0.9}, "entities": entities or []}
    return Tracker("c1", slots or {}, latest, events or [], False, None, {}, "action_listen")


async def run(action: Any, t: Tracker) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    dispatcher = CollectingDispatcher()
    events = await action.run(dispatcher, t, {})
    return [m["custom"] for m in dispatcher.messages], events


async def test_a_topic_question_picks_the_aspect_from_the_lexicon(content: Content) -> None:
    messages, events = await run(
        AnswerAction(content, LexiconMatcher(content)),
        tracker("Was kostet der Integrationskurs?", "ask_language_course"),
    )
    assert messages[0]["key"] == "answer.language_course.cost"
    assert messages[0]["intent"] == "ask_language_course"
    assert {"event": "slot", "name": "topic", "value": "language_course", "timestamp": None} in events
    assert all(b["payload"].startswith("/ask_followup") for b in messages[0]["buttons"])
    assert "aspect.cost" not in {b["key"] for b in messages[0]["buttons"]}


async def test_a_follow_up_uses_the_remembered_topic(content: Content) -> None:
    messages, _ = await run(
        AnswerAction(content, LexiconMatcher(content)),
        tracker("welche Unterlagen brauche ich dafür?", "ask_followup", slots={"topic": "recognition"}),
    )
    assert messages[0]["key"] == "answer.recognition.documents"


async def test_a_follow_up_without_a_topic_asks_for_one(content: Content) -> None:
    messages, _ = await run(
        AnswerAction(content, LexiconMatcher(content)), tracker("und was kostet das?", "ask_followup")
    )
    assert messages[0]["key"] == "topic.choose"
    assert len(messages[0]["buttons"]) == 3


async def test_an_aspect_only_one_topic_has_moves_the_answer_there(content: Content) -> None:
    messages, _ = await run(
        AnswerAction(content, LexiconMatcher(content)), tracker("Brauche ich die ZAB?", "ask_language_course")
    )
    assert messages[0]["key"] == "answer.recognition.zab"


async def test_a_button_payload_entity_wins_over_the_lexicon(content: Content) -> None:
    messages, _ = await run(
        AnswerAction(content, LexiconMatcher(content)),
        tracker(
            "/ask_followup",
            "ask_followup",
            slots={"topic": "qualification"},
            entities=[{"entity": "aspect", "value": "umschulung"}],
        ),
    )
    assert messages[0]["key"] == "answer.qualification.umschulung"


def _user(intent: str) -> dict[str, Any]:
    return {"event": "user", "text": "x", "parse_data": {"intent": {"name": intent}}}


async def test_the_second_misunderstanding_in_a_row_offers_a_person() -> None:
    once, _ = await run(
        FallbackAction(), tracker("xx", "nlu_fallback", events=[_user("greet"), _user("nlu_fallback")])
    )
    assert once[0]["key"] == "fallback.rephrase"
    twice, events = await run(
        FallbackAction(), tracker("yy", "nlu_fallback", events=[_user("nlu_fallback"), _user("nlu_fallback")])
    )
    assert twice[0]["key"] == "fallback.offer_human"
    assert events[0]["name"] == "offered_human" and events[0]["value"] is True


async def test_small_talk_replies_by_intent() -> None:
    for intent, key in [
        ("greet", "greet"),
        ("thanks", "thanks_reply"),
        ("out_of_scope", "out_of_scope"),
        ("deny", "topic.choose"),
    ]:
        messages, _ = await run(ReplyAction(), tracker("x", intent))
        assert messages[0]["key"] == key
