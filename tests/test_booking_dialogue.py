"""The booking dialogue end to end: REST channel, the real engine's booking form, the in-app actions, the
consent questions asked by the app, the .ics download, and `/appointments` with its buttons."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx
import pytest
from icalendar import Calendar
from sqlalchemy import select

from bot.booking import Slot
from bot.storage.database import Database
from bot.storage.models import Appointment, ChannelIdentity, ConsentEvent, Reminder
from tests.conftest import LiveStack

pytestmark = pytest.mark.engine

Reply = dict[str, object]
T = TypeVar("T")


class Chat:
    """One REST client talking to the live app; keeps the sender id and an optional language hint."""

    def __init__(self, live: LiveStack, *, language: str | None = None) -> None:
        self.live = live
        self.sender = uuid.uuid4().hex
        self.metadata = {"language": language} if language else {}

    def say(self, text: str) -> list[Reply]:
        """Send one message and return the replies."""
        return self.live.rest(text, sender=self.sender, **self.metadata)

    def press(self, replies: list[Reply], fragment: str) -> list[Reply]:
        """Press the first button of the replies whose payload contains ``fragment``."""
        return self.say(payload(replies, fragment))


def meta(reply: Reply) -> dict[str, object]:
    """The app's own fields of a reply (content key, language)."""
    custom = reply["custom"]
    assert isinstance(custom, dict)
    lotse = custom["lotse"]
    assert isinstance(lotse, dict)
    return lotse


def keys(replies: list[Reply]) -> list[str]:
    """The content keys of the replies, in order."""
    return [str(meta(r).get("key")) for r in replies]


def find(replies: list[Reply], key: str) -> Reply:
    """The reply with this content key (fails with the keys that came instead)."""
    for reply in replies:
        if meta(reply).get("key") == key:
            return reply
    raise AssertionError(f"no reply {key!r} in {keys(replies)}")


def buttons(replies: list[Reply]) -> list[dict[str, str]]:
    """Every button of the replies."""
    found: list[dict[str, str]] = []
    for reply in replies:
        for button in reply.get("buttons") or []:  # type: ignore[attr-defined]
            assert isinstance(button, dict)
            found.append({"title": str(button["title"]), "payload": str(button["payload"])})
    return found


def payload(replies: list[Reply], fragment: str) -> str:
    """The payload of the first button containing ``fragment`` (as the client would tap it)."""
    for button in buttons(replies):
        if fragment in button["payload"]:
            return button["payload"]
    raise AssertionError(f"no button with {fragment!r} in {keys(replies)}: {buttons(replies)}")


def query(live: LiveStack, work: Callable[[Database], Awaitable[T]]) -> T:
    """Run an async query on a second handle of the live app's database."""

    async def run() -> T:
        db = Database(live.settings.database_url)
        try:
            return await work(db)
        finally:
            await db.dispose()

    return asyncio.run(run())


def client_id(live: LiveStack, sender: str) -> str:
    """The client behind a REST sender id."""

    async def load(db: Database) -> str:
        async with db.unit_of_work() as session:
            found = await session.scalar(
                select(ChannelIdentity.client_id).where(
                    ChannelIdentity.channel == "rest", ChannelIdentity.external_id == sender
                )
            )
        assert found is not None
        return str(found)

    return query(live, load)


def appointments_of(live: LiveStack, sender: str) -> list[Appointment]:
    """Every appointment row of a client."""
    owner = client_id(live, sender)

    async def load(db: Database) -> list[Appointment]:
        async with db.unit_of_work() as session:
            return list(await session.scalars(select(Appointment).where(Appointment.client_id == owner)))

    return query(live, load)


def start_to_town(chat: Chat, opening: str, topic: str) -> list[Reply]:
    """Open the booking and pick a topic; returns the town question."""
    first = chat.say(opening)
    assert "booking.ask_topic" in keys(first), keys(first)
    town = chat.press(first, f'"topic":"{topic}"')
    assert "booking.ask_town" in keys(town), keys(town)
    return town


def test_a_german_client_books_downloads_the_ics_lists_and_cancels(live: LiveStack) -> None:
    texts = live.services.content.texts["de"]
    chat = Chat(live)
    start_to_town(chat, "Ich brauche einen Termin", "language_course")
    age = chat.say("ich wohne in bad wünnenberg")
    assert keys(age)[-1] == "booking.ask_age", keys(age)
    language = chat.say("34")
    assert keys(language)[-1] == "booking.ask_language", keys(language)
    after_language = chat.press(language, '"language":"de"')
    if "booking.ask_jobcenter" in keys(after_language):  # asked for language courses
        after_language = chat.press(after_language, '"jobcenter":"no"')
    offer = find(after_language, "booking.offer")
    assert "Caritasverband im Dekanat Büren" in str(offer["text"])
    assert "Bad Wünnenberg" in str(offer["text"]), "the reason names the town"
    slot_buttons = [b for b in buttons([offer]) if '"slot":' in b["payload"]]
    assert slot_buttons, buttons([offer])
    chosen = slot_buttons[0]
    slot = Slot.parse(chosen["payload"].split('"slot":"')[1].split('"')[0])
    assert slot.service_id == "caritas-bueren-mbe"

    consent = chat.say(chosen["payload"])
    assert keys(consent) == ["booking.consent_intro", "consent.booking.v1"], keys(consent)
    reminders = chat.press(consent, "/consent_yes")
    assert keys(reminders) == ["consent.granted", "booking.reminders_intro", "consent.reminders.v1"], keys(
        reminders
    )
    contact = chat.press(reminders, "/consent_yes")
    assert keys(contact)[-1] == "booking.ask_contact", keys(contact)
    confirmed = find(chat.press(contact, '"contact":"skip"'), "booking.confirmed")

    [booked] = appointments_of(live, chat.sender)
    assert booked.status == "booked" and booked.service_id == slot.service_id
    described = live.services.booking.describe(booked)
    text = str(confirmed["text"])
    assert text.startswith(texts["booking.confirmed"].split("{")[0])
    assert described["date"] in text and described["time"] in text
    assert described["time"] in chosen["title"], "the button showed the booked time"
    link = next(word for word in text.split() if "/appointments/" in word and ".ics?token=" in word)
    assert link.startswith(live.url)
    ics = httpx.get(link, timeout=10)
    assert ics.status_code == 200 and ics.headers["content-type"].startswith("text/calendar")
    calendar = Calendar.from_ical(ics.text)
    assert ics.text.startswith("BEGIN:VCALENDAR")
    [event] = calendar.walk("VEVENT")
    assert event.decoded("dtstart") == slot.starts_at
    assert str(event["status"]) == "CONFIRMED"
    assert httpx.get(link.replace("token=", "token=x"), timeout=10).status_code == 404

    listing = chat.say("/appointments")
    assert keys(listing)[:2] == ["appointments.list", "appointments.item"], keys(listing)
    item = find(listing, "appointments.item")
    assert described["date"] in str(item["text"])
    cancel = payload([item], "/appointment_cancel")
    assert booked.id in cancel
    cancelled = chat.say(cancel)
    assert keys(cancelled) == ["appointments.cancelled"], keys(cancelled)
    again = chat.say(cancel)
    assert keys(again) == ["appointments.already_cancelled"], keys(again)
    assert keys(chat.say("/appointments"))[0] == "appointments.none"

    async def reminder_states(db: Database) -> list[str]:
        async with db.unit_of_work() as session:
            rows = await session.scalars(select(Reminder.status).where(Reminder.appointment_id == booked.id))
            return list(rows)

    states = query(live, reminder_states)
    assert states and set(states) == {"cancelled"}, states
    [after] = appointments_of(live, chat.sender)
    assert after.status == "cancelled"


def test_a_ukrainian_client_books_in_ukrainian(live: LiveStack) -> None:
    uk = live.services.content.texts["uk"]
    chat = Chat(live, language="uk")
    town = start_to_town(chat, "хочу записатися на консультацію", "recognition")
    assert str(find(town, "booking.ask_town")["text"]) == uk["booking.ask_town"]
    age = chat.say("Я живу в Падерборні")
    assert keys(age)[-1] == "booking.ask_age", keys(age)
    language = chat.press(age, '"age":"27plus"')
    assert keys(language)[-1] == "booking.ask_language", keys(language)
    offer = chat.press(language, '"language":"uk"')
    assert "booking.ask_jobcenter" not in keys(offer), "no Jobcenter question for recognition"
    chosen = payload([find(offer, "booking.offer")], '"slot":')
    consent = chat.say(chosen)
    question = find(consent, "consent.booking.v1")
    reminders = chat.press([question], "/consent_yes")
    contact = chat.press(reminders, "/consent_no")
    assert keys(contact)[-2:] == ["consent.declined", "booking.ask_contact"] or keys(contact)[-1] == (
        "booking.ask_contact"
    ), keys(contact)
    confirmed = find(chat.say("Олена, 0176 1234567"), "booking.confirmed")
    assert str(confirmed["text"]).startswith(uk["booking.confirmed"].split("{")[0])
    for reply in [*town, *age, *language, *offer, *consent, *reminders, *contact, confirmed]:
        assert meta(reply)["language"] == "uk", reply
        assert not meta(reply).get("machine_translated"), reply
    [booked] = appointments_of(live, chat.sender)
    assert booked.language == "uk" and booked.contact == "Олена, 0176 1234567"
    assert booked.service_id == "caritas-pb-recognition"

    async def reminder_rows(db: Database) -> int:
        async with db.unit_of_work() as session:
            return len(
                list(await session.scalars(select(Reminder).where(Reminder.appointment_id == booked.id)))
            )

    assert query(live, reminder_rows) == 0, "no reminders without the reminder consent"


def test_a_question_during_the_town_step_is_answered_and_the_town_asked_again(live: LiveStack) -> None:
    chat = Chat(live)
    start_to_town(chat, "Ich brauche einen Termin", "counselling")
    between = chat.say("Was kostet der Integrationskurs?")
    assert keys(between)[0] == "answer.language_course.cost", keys(between)
    assert keys(between)[-1] == "booking.ask_town", keys(between)
    assert keys(chat.say("Delbrück"))[-1] == "booking.ask_age"


def test_an_age_in_words_gets_the_digits_please_answer(live: LiveStack) -> None:
    chat = Chat(live)
    start_to_town(chat, "Ich brauche einen Termin", "counselling")
    assert keys(chat.say("Paderborn"))[-1] == "booking.ask_age"
    words = chat.say("vierunddreißig")
    assert "booking.age_digits" in keys(words), keys(words)
    assert keys(chat.say("34"))[-1] == "booking.ask_language"


def test_a_town_outside_the_kreis_ends_with_the_outside_message(live: LiveStack) -> None:
    chat = Chat(live)
    start_to_town(chat, "Ich brauche einen Termin", "counselling")
    outside = chat.say("Bielefeld")
    assert keys(outside)[-1] == "booking.outside", keys(outside)
    assert payload(outside, "/request_human")
    after = chat.say("Was kostet der Integrationskurs?")
    assert keys(after) == ["answer.language_course.cost"], "the form is over"
    assert appointments_of(live, chat.sender) == []


def test_the_abort_button_ends_the_form_with_nothing_stored(live: LiveStack) -> None:
    chat = Chat(live)
    town = start_to_town(chat, "Ich brauche einen Termin", "language_course")
    age = chat.say("Büren")
    assert keys(age)[-1] == "booking.ask_age"
    aborted = chat.press(age, '"abort":"yes"')
    assert keys(aborted) == ["booking.aborted"], keys(aborted)
    assert payload(town, '"abort":"yes"')
    assert appointments_of(live, chat.sender) == []
    owner = client_id(live, chat.sender)

    async def consents(db: Database) -> int:
        async with db.unit_of_work() as session:
            return len(
                list(await session.scalars(select(ConsentEvent).where(ConsentEvent.client_id == owner)))
            )

    assert query(live, consents) == 0
    after = chat.say("Was kostet der Integrationskurs?")
    assert keys(after) == ["answer.language_course.cost"], "the form is over"
