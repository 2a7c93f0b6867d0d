"""Custom actions, executed by rasa-sdk inside the app process (see bot/actions_webhook.py).

Every action answers with a ``json_message`` naming a content key; the app renders the key in the
client's language. Actions receive their dependencies from the composition root.
"""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.booking import BookingContext, build_booking_actions
from bot.content import Content
from bot.lexicon import LexiconMatcher

TOPIC_OF_INTENT = {
    "ask_language_course": "language_course",
    "ask_recognition": "recognition",
    "ask_qualification": "qualification",
}
REPLY_OF_INTENT = {
    "greet": "greet",
    "goodbye": "goodbye",
    "thanks": "thanks_reply",
    "ask_help": "help",
    "out_of_scope": "out_of_scope",
}
TOPIC_BUTTONS = [
    {"key": "button.topic.language_course", "payload": "/ask_language_course"},
    {"key": "button.topic.recognition", "payload": "/ask_recognition"},
    {"key": "button.topic.qualification", "payload": "/ask_qualification"},
]
FAILED_INTENTS = frozenset({"nlu_fallback"})


def say(
    dispatcher: CollectingDispatcher,
    tracker: Tracker,
    key: str,
    *,
    buttons: list[dict[str, str]] | None = None,
    **extra: Any,
) -> None:
    """Answer with a content key; the intent travels along for the app's records."""
    message: dict[str, Any] = {"key": key, "intent": _intent(tracker)}
    age = next(
        (e.get("value") for e in tracker.latest_message.get("entities") or [] if e.get("entity") == "age"),
        None,
    )
    if age is not None:
        message["age"] = age
    if buttons:
        message["buttons"] = buttons
    message.update(extra)
    dispatcher.utter_message(json_message=message)


def _intent(tracker: Tracker) -> str | None:
    intent = tracker.latest_message.get("intent") or {}
    name = intent.get("name")
    return name if isinstance(name, str) else None


class ReplyAction(Action):
    """Small talk, help and out-of-scope: a fixed reply per intent."""

    def name(self) -> str:
        """Action name in the domain."""
        return "action_reply"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        """Reply to the latest intent; yes/no without an open question leads to the topics."""
        intent = _intent(tracker) or ""
        key = REPLY_OF_INTENT.get(intent)
        if key in ("greet", "help", "out_of_scope"):
            say(dispatcher, tracker, key, buttons=TOPIC_BUTTONS)
        elif key:
            say(dispatcher, tracker, key)
        else:
            say(dispatcher, tracker, "topic.choose", buttons=TOPIC_BUTTONS)
        return [SlotSet("offered_human", False)]


class AnswerAction(Action):
    """Answer a question on a topic; the aspect comes from a button or the lexicon."""

    def __init__(self, content: Content, lexicon: LexiconMatcher) -> None:
        self.content = content
        self.lexicon = lexicon

    def name(self) -> str:
        """Action name in the domain."""
        return "action_answer"

    def _aspects(self, tracker: Tracker) -> list[str]:
        for entity in tracker.latest_message.get("entities") or []:
            if entity.get("entity") == "aspect" and isinstance(entity.get("value"), str):
                return [str(entity["value"])]
        return self.lexicon.aspects(tracker.latest_message.get("text") or "")

    def _resolve(self, topic: str | None, aspects: list[str]) -> tuple[str | None, str | None]:
        """The first aspect the topic answers; else an aspect only one other topic answers."""
        if topic:
            for aspect in aspects:
                if self.content.answer_key(topic, aspect):
                    return topic, aspect
        for aspect in aspects:
            topics = [t for t in TOPIC_OF_INTENT.values() if self.content.answer_key(t, aspect)]
            if len(topics) == 1:
                return topics[0], aspect
        return topic, "overview" if topic else None

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        """Pick answer.<topic>.<aspect>; a follow-up keeps the previous topic."""
        intent = _intent(tracker)
        topic = TOPIC_OF_INTENT.get(intent or "") or tracker.get_slot("topic")
        topic, aspect = self._resolve(topic, self._aspects(tracker))
        key = self.content.answer_key(topic, aspect) if topic and aspect else None
        if key is None or topic is None:
            say(dispatcher, tracker, "topic.choose", buttons=TOPIC_BUTTONS)
            return [SlotSet("offered_human", False)]
        others = [a for a in self.content.aspects_of(topic) if a != aspect]
        buttons = [
            {"key": f"aspect.{other}", "payload": f'/ask_followup{{"aspect":"{other}"}}'} for other in others
        ]
        meta = self.content.answers.get(key)
        if meta is not None and meta.needs_adviser:
            buttons.append({"key": "button.human", "payload": "/request_human"})
        say(dispatcher, tracker, key, buttons=buttons, topic=topic, aspect=aspect)
        return [SlotSet("topic", topic), SlotSet("aspect", aspect), SlotSet("offered_human", False)]


class FallbackAction(Action):
    """Not understood: ask to rephrase; the second time in a row, offer a person."""

    def name(self) -> str:
        """Action name in the domain."""
        return "action_fallback"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        """Count the failed understandings at the end of the conversation."""
        failed = 0
        for event in reversed(tracker.events):
            if event.get("event") != "user":
                continue
            name = (event.get("parse_data") or {}).get("intent", {}).get("name")
            if name in FAILED_INTENTS:
                failed += 1
            else:
                break
        if failed >= 2:
            say(
                dispatcher,
                tracker,
                "fallback.offer_human",
                buttons=[
                    {"key": "button.yes", "payload": "/affirm"},
                    {"key": "button.no", "payload": "/deny"},
                ],
            )
            return [SlotSet("offered_human", True)]
        say(dispatcher, tracker, "fallback.rephrase", buttons=TOPIC_BUTTONS)
        return [SlotSet("offered_human", False)]


class HandoffAction(Action):
    """The client wants a person: the app explains, asks for consent and opens a ticket."""

    def name(self) -> str:
        """Action name in the domain."""
        return "action_handoff"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        """Hand the request to the app with what the bot knows (topic, town, age)."""
        reason = "failed" if tracker.get_slot("offered_human") else "requested"
        dispatcher.utter_message(
            json_message={
                "intent": _intent(tracker),
                "handoff": {
                    "reason": reason,
                    "topic": tracker.get_slot("topic"),
                    "town": tracker.get_slot("town"),
                    "age": tracker.get_slot("age"),
                },
            }
        )
        return [SlotSet("offered_human", False)]


class ChooseLanguageAction(Action):
    """Show the language picker."""

    def name(self) -> str:
        """Action name in the domain."""
        return "action_choose_language"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        """The app adds one button per language."""
        say(dispatcher, tracker, "language.choose", language_buttons=True)
        return []


class BookingAction(Action):
    """Cancel or move an appointment: the app lists the client's appointments with buttons."""

    def name(self) -> str:
        """Action name in the domain."""
        return "action_booking"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        """Ask the app for the list."""
        dispatcher.utter_message(json_message={"intent": _intent(tracker), "appointments": "list"})
        return []


PRIVACY_OF_INTENT = {"show_my_data": "export", "delete_my_data": "delete", "withdraw_consent": "withdraw"}


class PrivacyAction(Action):
    """Data rights: the app exports, erases (after confirmation) or withdraws consents."""

    def name(self) -> str:
        """Action name in the domain."""
        return "action_privacy"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        """Name the right the client asked for; the app carries it out with its own records."""
        say(
            dispatcher,
            tracker,
            "privacy.info",
            privacy=PRIVACY_OF_INTENT.get(_intent(tracker) or "", "overview"),
        )
        return []


def build_actions(
    content: Content, lexicon: LexiconMatcher, booking: BookingContext | None = None
) -> list[Action]:
    """Every action with its dependencies (called by the composition root)."""
    extra = build_booking_actions(booking) if booking is not None else []
    return [
        *extra,
        ReplyAction(),
        AnswerAction(content, lexicon),
        FallbackAction(),
        HandoffAction(),
        ChooseLanguageAction(),
        BookingAction(),
        PrivacyAction(),
    ]
