"""The booking dialogue: a Rasa form (``booking_form``) whose slots are asked by ``action_ask_*`` and
validated by ``validate_booking_form``; ``action_booking_submit`` books. The actions are thin: routing,
slots and appointments live in bot/routing.py and bot/booking.py.

Buttons send ``/choose{"<field>": "<value>"}``; free text works too (towns in any script, ages in digits,
yes/no words). A question in between is rejected by the validation, answered by the rules, and the form
asks again. "Abbrechen" (or the abort button) ends the form at any step.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActiveLoop, EventType, FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from bot import LANGUAGES
from bot.booking import BookingError, BookingService, Slot, SlotTaken
from bot.consent import ConsentRequest
from bot.lexicon import LexiconMatcher
from bot.routing import RoutingDecision, RoutingRules, Situation, route
from bot.storage.models import Conversation

FORM = "booking_form"
REQUIRED = (
    "booking_topic",
    "booking_town",
    "booking_age",
    "booking_language",
    "booking_jobcenter",
    "booking_slot",
    "booking_consent",
    "booking_reminders",
    "booking_contact",
)
EXTRA = ("booking_service", "booking_reason", "booking_after")
TOPICS = ("language_course", "recognition", "qualification", "counselling")
TOPIC_OF_INTENT = {
    "ask_language_course": "language_course",
    "ask_recognition": "recognition",
    "ask_qualification": "qualification",
}
QUESTION_INTENTS = frozenset(
    {
        "ask_language_course",
        "ask_recognition",
        "ask_qualification",
        "ask_followup",
        "ask_help",
        "greet",
        "thanks",
        "out_of_scope",
        "show_my_data",
        "delete_my_data",
        "withdraw_consent",
        "change_language",
        "request_human",
    }
)
SHORT_REPLY_WORDS = 3
QUESTION_CONFIDENCE = 0.6
"""A reply of up to SHORT_REPLY_WORDS words without a question mark counts as a question only with at
least this intent confidence; else it is taken as an attempt to answer the step."""
ABORT_INTENTS = frozenset({"cancel_appointment", "goodbye"})
CHOOSE = re.compile(r"^/choose\s*(\{.*\})\s*$", re.DOTALL)
DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹", "01234567890123456789")
Picked = dict[str, str]
"""The fields of a pressed button."""
ABORT_BUTTON = {"key": "button.booking_abort", "payload": '/choose{"abort":"yes"}'}
JOBCENTER_TOPICS = ("language_course", "qualification")


def choice(tracker: Tracker) -> dict[str, str]:
    """The fields of a ``/choose{...}`` button payload, else an empty dict."""
    match = CHOOSE.match((tracker.latest_message.get("text") or "").strip())
    if not match:
        return {}
    try:
        data = json.loads(match.group(1))
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def intent_of(tracker: Tracker) -> str:
    """The latest intent's name."""
    return str((tracker.latest_message.get("intent") or {}).get("name") or "")


def language_of(tracker: Tracker) -> str:
    """The client's language as the app decided it (sent along as metadata)."""
    metadata = tracker.latest_message.get("metadata") or {}
    language = metadata.get("language") if isinstance(metadata, dict) else None
    return language if language in LANGUAGES else "de"


def say(dispatcher: CollectingDispatcher, key: str, **extra: Any) -> None:
    """Answer with a content key (the app renders it in the client's language)."""
    dispatcher.utter_message(json_message={"key": key, "intent": "book_appointment", **extra})


def age_years(text: str) -> int | None:
    """An age written in digits (Latin, Arabic or Persian), else None."""
    numbers = re.findall(r"\d{1,3}", text.translate(DIGITS))
    if len(numbers) != 1:
        return None
    years = int(numbers[0])
    return years if 5 <= years <= 110 else None


def clear_booking() -> list[EventType]:
    """Every booking slot emptied (after booking, abort or a dead end)."""
    return [SlotSet(name, None) for name in (*REQUIRED, *EXTRA)]


class BookingContext:
    """What the booking actions share: the services and the routing rules."""

    def __init__(self, booking: BookingService, rules: RoutingRules, lexicon: LexiconMatcher) -> None:
        self.booking = booking
        self.rules = rules
        self.lexicon = lexicon

    async def client_id(self, tracker: Tracker) -> str | None:
        """The client behind the engine's sender id (our conversation id)."""
        async with self.booking.database.unit_of_work() as session:
            conversation = await session.get(Conversation, tracker.sender_id)
            return conversation.client_id if conversation is not None else None

    def situation(self, tracker: Tracker, **override: Any) -> Situation:
        """The routing inputs from the slots."""
        values = {name: tracker.get_slot(name) for name in REQUIRED}
        values.update(override)
        jobcenter = values["booking_jobcenter"]
        return Situation(
            topic=values["booking_topic"],
            age_group=values["booking_age"],
            town=values["booking_town"],
            language=values["booking_language"] or language_of(tracker),
            jobcenter={"yes": True, "no": False}.get(str(jobcenter)),
        )


class ValidateBookingForm(Action):
    """Extract and check the answer to the requested slot; reject questions so the rules answer them."""

    def __init__(self, context: BookingContext) -> None:
        self.context = context

    def name(self) -> str:
        """Action name in the domain."""
        return f"validate_{FORM}"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        """Return SlotSet events for what the message answers; [] lets the form reject the turn."""
        requested = tracker.get_slot("requested_slot")
        picked = choice(tracker)
        intent = intent_of(tracker)
        text = (tracker.latest_message.get("text") or "").strip()
        # An abort intent counts only when the message does not answer the step: the NLU may read
        # "Я живу в Падерборні" as goodbye, yet it names the town that was asked for.
        answers = requested is not None and self._answers(str(requested), text)
        if picked.get("abort") or (intent in ABORT_INTENTS and not picked and not answers):
            say(dispatcher, "booking.aborted")
            return [*clear_booking(), ActiveLoop(None)]
        events: list[EventType] = []
        if requested is None:  # the form starts: take what the first message already says
            events += self._prefill(tracker, text, intent)
            return events
        handler = getattr(self, f"_{requested}", None)
        if handler is None:
            return []
        result: list[EventType] = await handler(dispatcher, tracker, picked, text, intent)
        return result

    def _answers(self, requested: str, text: str) -> bool:
        """Whether free text answers the asked step (a town, or an age in digits)."""
        directory = self.context.booking.directory
        if requested == "booking_town":
            return bool(directory.match_town(text) or directory.is_outside(text))
        if requested == "booking_age":
            return age_years(text) is not None
        return False

    def _prefill(self, tracker: Tracker, text: str, intent: str) -> list[EventType]:
        events: list[EventType] = []
        topic = TOPIC_OF_INTENT.get(intent) or tracker.get_slot("topic")
        if topic in TOPICS and tracker.get_slot("booking_topic") is None:
            events.append(SlotSet("booking_topic", topic))
        town = self.context.booking.directory.match_town(text)
        if town:
            events.append(SlotSet("booking_town", town))
        years = age_years(text) if re.search(r"\d", text.translate(DIGITS)) else None
        if years is not None and years >= 16:
            events.append(SlotSet("booking_age", "under27" if years < 27 else "27plus"))
        return events

    def _question(self, intent: str, picked: dict[str, str], tracker: Tracker) -> bool:
        """Whether the message asks something else (rules answer it, then the form asks again) rather
        than trying to answer the step: a short reply without "?" that the NLU is unsure about ("thirty
        four", "vierunddreißig") is an attempt at an answer and gets the step's own hint."""
        if picked or intent not in QUESTION_INTENTS:
            return False
        text = (tracker.latest_message.get("text") or "").strip()
        confidence = float((tracker.latest_message.get("intent") or {}).get("confidence") or 0.0)
        short = len(text.split()) <= SHORT_REPLY_WORDS and "?" not in text and "؟" not in text
        return not (short and confidence < QUESTION_CONFIDENCE)

    async def _booking_topic(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, picked: Picked, text: str, intent: str
    ) -> list[EventType]:
        topic = picked.get("topic") or TOPIC_OF_INTENT.get(intent)
        if topic in TOPICS:
            return [SlotSet("booking_topic", topic)]
        if self._question(intent, picked, tracker):
            return []
        return [SlotSet("booking_topic", "counselling")] if text and not text.startswith("/") else []

    async def _booking_town(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, picked: Picked, text: str, intent: str
    ) -> list[EventType]:
        directory = self.context.booking.directory
        town = picked.get("town") or directory.match_town(text)
        if town == "outside" or (not town and directory.is_outside(text)):
            say(dispatcher, "booking.outside", buttons=[{"key": "button.human", "payload": "/request_human"}])
            return [*clear_booking(), ActiveLoop(None)]
        if town in directory.towns:
            return [SlotSet("booking_town", town)]
        if self._question(intent, picked, tracker):
            return []
        say(dispatcher, "booking.town_unknown")
        return [SlotSet("booking_town", None)]

    async def _booking_age(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, picked: Picked, text: str, intent: str
    ) -> list[EventType]:
        group = picked.get("age")
        if group in ("under27", "27plus"):
            return [SlotSet("booking_age", group)]
        years = age_years(text)
        if years is not None:
            if years < 16:
                say(dispatcher, "age.under16")
                say(dispatcher, "handoff.contacts")
                return [*clear_booking(), ActiveLoop(None)]
            return [SlotSet("booking_age", "under27" if years < 27 else "27plus")]
        if self._question(intent, picked, tracker):
            return []
        say(dispatcher, "booking.age_digits")
        return [SlotSet("booking_age", None)]

    async def _booking_language(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, picked: Picked, text: str, intent: str
    ) -> list[EventType]:
        language = picked.get("language")
        if language in LANGUAGES:
            return self._with_jobcenter(tracker, [SlotSet("booking_language", language)])
        if self._question(intent, picked, tracker):
            return []
        if self.context.lexicon.is_yes(text):
            return self._with_jobcenter(tracker, [SlotSet("booking_language", language_of(tracker))])
        say(dispatcher, "booking.choose_button")
        return [SlotSet("booking_language", None)]

    def _with_jobcenter(self, tracker: Tracker, events: list[EventType]) -> list[EventType]:
        """The Jobcenter question matters only for language courses and qualification."""
        if tracker.get_slot("booking_topic") not in JOBCENTER_TOPICS:
            events.append(SlotSet("booking_jobcenter", "n/a"))
        return events

    async def _booking_jobcenter(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, picked: Picked, text: str, intent: str
    ) -> list[EventType]:
        answer = picked.get("jobcenter")
        if answer is None:
            if self.context.lexicon.is_yes(text) or intent == "affirm":
                answer = "yes"
            elif self.context.lexicon.is_no(text) or intent == "deny":
                answer = "no"
        if answer in ("yes", "no", "unknown"):
            return [SlotSet("booking_jobcenter", answer)]
        if self._question(intent, picked, tracker):
            return []
        say(dispatcher, "booking.choose_button")
        return [SlotSet("booking_jobcenter", None)]

    async def _booking_slot(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, picked: Picked, text: str, intent: str
    ) -> list[EventType]:
        if picked.get("later"):
            return [SlotSet("booking_after", picked["later"]), SlotSet("booking_slot", None)]
        change = picked.get("change")
        if change in ("town", "topic", "age", "language"):
            return [
                SlotSet(f"booking_{change}", None),
                SlotSet("booking_jobcenter", None),
                SlotSet("booking_slot", None),
                SlotSet("booking_after", None),
            ]
        key = picked.get("slot")
        if key is None:
            if self._question(intent, picked, tracker):
                return []
            say(dispatcher, "booking.choose_button")
            return [SlotSet("booking_slot", None)]
        try:
            slot = Slot.parse(key)
        except BookingError:
            return [SlotSet("booking_slot", None)]
        now = datetime.now(UTC)
        if slot.starts_at <= now:
            say(dispatcher, "booking.slot_past")
            return [SlotSet("booking_slot", None), SlotSet("booking_after", None)]
        free = await self.context.booking.free_slots(
            slot.service_id, after=slot.starts_at.replace(second=0) - timedelta(minutes=1), limit=1
        )
        if not free or free[0].starts_at != slot.starts_at:
            say(dispatcher, "booking.slot_taken")
            return [SlotSet("booking_slot", None)]
        return [SlotSet("booking_slot", key)]

    async def _booking_consent(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, picked: Picked, text: str, intent: str
    ) -> list[EventType]:
        answer = picked.get("consent")
        if answer == "yes":
            service = self.context.booking.service(str(tracker.get_slot("booking_service")))
            client_id = await self.context.client_id(tracker)
            async with self.context.booking.database.unit_of_work() as session:
                allowed = client_id is not None and await self.context.booking.consent.may(
                    session,
                    client_id=client_id,
                    request=ConsentRequest(scope="booking", organisation=service.organisation),
                )
            if allowed:
                return [SlotSet("booking_consent", "yes")]
        if answer in ("yes", "no"):
            say(
                dispatcher,
                "booking.no_consent",
                buttons=[{"key": "button.human", "payload": "/request_human"}],
            )
            return [*clear_booking(), ActiveLoop(None)]
        if self._question(intent, picked, tracker):
            return []
        return [SlotSet("booking_consent", None)]

    async def _booking_reminders(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, picked: Picked, text: str, intent: str
    ) -> list[EventType]:
        answer = picked.get("reminders")
        if answer in ("yes", "no"):
            return [SlotSet("booking_reminders", answer)]
        if self._question(intent, picked, tracker):
            return []
        return [SlotSet("booking_reminders", None)]

    async def _booking_contact(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, picked: Picked, text: str, intent: str
    ) -> list[EventType]:
        if picked.get("contact") == "skip" or self.context.lexicon.is_no(text) or intent == "deny":
            return [SlotSet("booking_contact", "-")]
        if self._question(intent, picked, tracker) and "@" not in text and not re.search(r"\d{5,}", text):
            return []
        if text and not text.startswith("/"):
            return [SlotSet("booking_contact", " ".join(text.split())[:120])]
        return [SlotSet("booking_contact", None)]


class AskBookingSlot(Action):
    """Asks for one slot of the booking form, with buttons."""

    def __init__(self, slot: str, context: BookingContext) -> None:
        self.slot = slot
        self.context = context

    def name(self) -> str:
        """Action name in the domain."""
        return f"action_ask_{self.slot}"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        """Ask; for the slot step route first and offer the next free times."""
        slot = self.slot
        if slot == "booking_topic":
            buttons = [{"key": f"button.topic.{t}", "payload": f'/choose{{"topic":"{t}"}}'} for t in TOPICS]
            say(dispatcher, "booking.ask_topic", buttons=[*buttons, ABORT_BUTTON])
        elif slot == "booking_town":
            towns = [
                {"text": town, "payload": f'/choose{{"town":"{town}"}}'}
                for town in self.context.booking.directory.towns
            ]
            say(
                dispatcher,
                "booking.ask_town",
                raw_buttons=towns,
                buttons=[{"key": "button.town_other", "payload": '/choose{"town":"outside"}'}, ABORT_BUTTON],
            )
        elif slot == "booking_age":
            say(
                dispatcher,
                "booking.ask_age",
                buttons=[
                    {"key": "button.age_under27", "payload": '/choose{"age":"under27"}'},
                    {"key": "button.age_27plus", "payload": '/choose{"age":"27plus"}'},
                    ABORT_BUTTON,
                ],
            )
        elif slot == "booking_language":
            own = language_of(tracker)
            codes = list(dict.fromkeys([own, "de", "en"]))
            say(
                dispatcher,
                "booking.ask_language",
                language_choices=[{"code": c, "payload": f'/choose{{"language":"{c}"}}'} for c in codes],
                buttons=[ABORT_BUTTON],
            )
        elif slot == "booking_jobcenter":
            say(
                dispatcher,
                "booking.ask_jobcenter",
                buttons=[
                    {"key": "button.yes", "payload": '/choose{"jobcenter":"yes"}'},
                    {"key": "button.no", "payload": '/choose{"jobcenter":"no"}'},
                    {"key": "button.dont_know", "payload": '/choose{"jobcenter":"unknown"}'},
                    ABORT_BUTTON,
                ],
            )
        elif slot == "booking_slot":
            return await self._offer(dispatcher, tracker)
        elif slot == "booking_consent":
            organisation = self._organisation(tracker)
            say(
                dispatcher,
                "booking.consent_intro",
                consent={"scope": "booking", "organisation": organisation},
                then={"yes": '/choose{"consent":"yes"}', "no": '/choose{"consent":"no"}'},
            )
        elif slot == "booking_reminders":
            say(
                dispatcher,
                "booking.reminders_intro",
                consent={"scope": "reminders", "organisation": ""},
                then={"yes": '/choose{"reminders":"yes"}', "no": '/choose{"reminders":"no"}'},
            )
        elif slot == "booking_contact":
            say(
                dispatcher,
                "booking.ask_contact",
                buttons=[{"key": "button.skip", "payload": '/choose{"contact":"skip"}'}, ABORT_BUTTON],
            )
        return []

    def _organisation(self, tracker: Tracker) -> str:
        service_id = tracker.get_slot("booking_service")
        service = self.context.booking.directory.services.get(str(service_id))
        return service.organisation if service else ""

    async def _offer(self, dispatcher: CollectingDispatcher, tracker: Tracker) -> list[EventType]:
        decision = route(self.context.booking.directory, self.context.rules, self.context.situation(tracker))
        if not isinstance(decision, RoutingDecision):
            say(dispatcher, "booking.outside", buttons=[{"key": "button.human", "payload": "/request_human"}])
            return [*clear_booking(), ActiveLoop(None)]
        service = decision.service
        after_raw = tracker.get_slot("booking_after")
        after = None
        if after_raw:
            try:
                after = Slot.parse(f"x|x|{after_raw}").starts_at
            except BookingError:
                after = None
        slots = await self.context.booking.free_slots(service.id, after=after)
        zone = self.context.booking.directory.timezone
        location_names = {loc.id: loc.name for loc in service.locations}
        raw = [
            {
                "when": s.starts_at.astimezone(zone).isoformat(),
                "place": location_names.get(s.location_id, s.location_id),
                "payload": f'/choose{{"slot":"{s.key}"}}',
            }
            for s in slots
        ]
        buttons = []
        if slots:
            later = slots[-1].starts_at.strftime("%Y%m%dT%H%MZ")
            buttons.append({"key": "button.later", "payload": f'/choose{{"later":"{later}"}}'})
        buttons += [{"key": "button.change_town", "payload": '/choose{"change":"town"}'}, ABORT_BUTTON]
        directory = self.context.booking.directory
        organisation = directory.organisations.get(service.organisation, service.organisation)
        reason_params = decision.text_params(self.context.booking.texts.language_name)
        say(
            dispatcher,
            "booking.offer" if slots else "booking.no_slots",
            params={
                "reason": "",
                "organisation": organisation,
                "service": service.name,
            },
            reason={"key": decision.reason_key, "params": reason_params},
            to_confirm=service.to_confirm,
            slot_choices=raw,
            buttons=buttons,
        )
        return [
            SlotSet("booking_service", service.id),
            SlotSet("booking_reason", json.dumps({"key": decision.reason_key, "params": reason_params})),
        ]


class SubmitBooking(Action):
    """Books the chosen slot once the form is complete."""

    def __init__(self, context: BookingContext) -> None:
        self.context = context

    def name(self) -> str:
        """Action name in the domain."""
        return "action_booking_submit"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        """Store the appointment; a slot taken meanwhile sends the client back to the free times."""
        if (
            any(tracker.get_slot(name) is None for name in REQUIRED)
            or tracker.get_slot("booking_consent") != "yes"
        ):
            return []  # the form ended without a complete booking (aborted or a dead end)
        client_id = await self.context.client_id(tracker)
        if client_id is None:
            return clear_booking()
        metadata = tracker.latest_message.get("metadata") or {}
        channel = str(metadata.get("channel") or "rest") if isinstance(metadata, dict) else "rest"
        reason = json.loads(tracker.get_slot("booking_reason") or "{}")
        contact = tracker.get_slot("booking_contact")
        try:
            appointment = await self.context.booking.book(
                client_id=client_id,
                conversation_id=tracker.sender_id,
                channel=channel,
                slot=Slot.parse(str(tracker.get_slot("booking_slot"))),
                language=str(tracker.get_slot("booking_language") or language_of(tracker)),
                topic=tracker.get_slot("booking_topic"),
                town=tracker.get_slot("booking_town"),
                age_group=tracker.get_slot("booking_age"),
                reason=str(reason.get("key") or ""),
                contact=None if contact in (None, "-") else str(contact),
            )
        except SlotTaken:
            say(dispatcher, "booking.slot_taken")
            return [SlotSet("booking_slot", None), FollowupAction(FORM)]
        except BookingError:
            say(dispatcher, "booking.failed", buttons=[{"key": "button.human", "payload": "/request_human"}])
            return clear_booking()
        say(
            dispatcher,
            "booking.confirmed",
            params=self.context.booking.describe(appointment),
            appointment=appointment.id,
            reminders=tracker.get_slot("booking_reminders") == "yes",
            buttons=[{"key": "button.appointments", "payload": "/appointments"}],
        )
        return clear_booking()


def build_booking_actions(context: BookingContext) -> list[Action]:
    """The form's validation, its ask actions and the submit action."""
    return [
        ValidateBookingForm(context),
        SubmitBooking(context),
        *(AskBookingSlot(slot, context) for slot in REQUIRED),
    ]
