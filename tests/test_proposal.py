"""Appointment proposals from the adviser console, without the engine: the adviser picks free slots of the
ticket's organisation in the ticket view, the client (REST, in Ukrainian) taps one, consents, and the
appointment is booked for that organisation; reminders only with the reminder consent; a declined consent
stores nothing; other organisations cannot propose; a slot taken meanwhile brings the next free times."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select
from starlette.applications import Starlette

from bot.booking import Slot
from bot.bootstrap import Services, bootstrap
from bot.channels.base import InboundMessage, OutboundMessage
from bot.console import build_console
from bot.language import LanguageDetector
from bot.scheduler import build_scheduler
from bot.storage.models import (
    Appointment,
    ChannelIdentity,
    ConsentEvent,
    Message,
    Reminder,
    Ticket,
    TicketEvent,
)
from tests.auxil.clients import new_client
from tests.auxil.console import Clock, FakeTranslator, adviser, csrf_of, open_ticket, sign_in
from tests.conftest import make_settings

BASE = "http://127.0.0.1:8000"
ORGANISATION = "caritas-pb"
SLOT_INPUT = re.compile(r'<input type="checkbox" name="slot" value="([^"]+)">')


@dataclass
class Stack:
    services: Services
    app: Starlette

    def console(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=BASE)


@pytest.fixture
async def stack(tmp_path: Path, detector: LanguageDetector) -> AsyncIterator[Stack]:
    settings = make_settings(tmp_path, LOTSE_PUBLIC_URL=BASE)
    services = bootstrap(settings, detector=detector, translator=FakeTranslator())
    scheduler = build_scheduler(settings)  # paused: reminder jobs are stored, never run
    scheduler.start(paused=True)
    services.booking.scheduler = scheduler
    try:
        yield Stack(services=services, app=Starlette(routes=[build_console(services, clock=Clock())]))
    finally:
        services.booking.scheduler = None
        scheduler.shutdown(wait=False)
        await services.close()


@dataclass
class Person:
    """A client who is talking to an adviser, and that adviser's signed-in console."""

    external_id: str
    client_id: str
    conversation_id: str
    ticket_id: int
    console: httpx.AsyncClient
    csrf: str


async def with_adviser(stack: Stack, console: httpx.AsyncClient) -> Person:
    """A Ukrainian client's recognition question handed to caritas-pb, claimed by a new adviser."""
    opened = await open_ticket(stack.services, organisation=ORGANISATION, topic="recognition")
    name = f"anna-{uuid.uuid4().hex[:6]}"
    await adviser(stack.services, ORGANISATION, name)
    assert (await sign_in(console, name)).status_code == 303
    csrf = await csrf_of(console)
    claimed = await console.post(f"/console/tickets/{opened.ticket_id}/claim", data={"csrf": csrf})
    assert claimed.status_code == 303 and "hinweis=claimed" in claimed.headers["location"]
    async with stack.services.database.unit_of_work() as session:
        external_id = await session.scalar(
            select(ChannelIdentity.external_id).where(ChannelIdentity.client_id == opened.turn.client_id)
        )
    assert external_id is not None
    return Person(
        external_id=external_id,
        client_id=opened.turn.client_id,
        conversation_id=opened.turn.conversation_id,
        ticket_id=opened.ticket_id,
        console=console,
        csrf=csrf,
    )


async def offered_slots(person: Person, days_ahead: int = 3) -> list[str]:
    """The slot keys the ticket view offers, from ``days_ahead`` days on (so both reminders fit)."""
    day = (datetime.now(ZoneInfo("Europe/Berlin")) + timedelta(days=days_ahead)).date().isoformat()
    page = await person.console.get(f"/console/tickets/{person.ticket_id}", params={"termine_ab": day})
    assert page.status_code == 200
    keys = SLOT_INPUT.findall(page.text)
    assert len(keys) >= 3, page.text[-3000:]
    return keys


async def propose(person: Person, keys: list[str]) -> httpx.Response:
    return await person.console.post(
        f"/console/tickets/{person.ticket_id}/appointment",
        data={"csrf": person.csrf, "slot": keys},
    )


async def say(stack: Stack, person: Person, text: str) -> list[OutboundMessage]:
    """The client sends a message (or taps a button) on REST; the replies, stored adviser messages first."""
    reply = await stack.services.router.handle(
        InboundMessage(channel="rest", external_id=person.external_id, text=text)
    )
    return reply.messages


def keys_of(messages: list[OutboundMessage]) -> list[str | None]:
    return [m.content_key for m in messages]


async def received_proposal(stack: Stack, person: Person) -> OutboundMessage:
    """The client writes and gets the adviser's proposal (REST cannot push; it comes with the next reply)."""
    delivered = await say(stack, person, "Дякую, коли можна прийти?")
    proposals = [m for m in delivered if m.content_key == "proposal.offer"]
    assert len(proposals) == 1, keys_of(delivered)
    return proposals[0]


async def appointments_of(stack: Stack, client_id: str) -> list[Appointment]:
    async with stack.services.database.unit_of_work() as session:
        return list(await session.scalars(select(Appointment).where(Appointment.client_id == client_id)))


async def reminders_of(stack: Stack, appointment_id: str) -> list[Reminder]:
    async with stack.services.database.unit_of_work() as session:
        return list(await session.scalars(select(Reminder).where(Reminder.appointment_id == appointment_id)))


async def events_of(stack: Stack, ticket_id: int) -> list[str]:
    async with stack.services.database.unit_of_work() as session:
        return list(
            await session.scalars(
                select(TicketEvent.kind).where(TicketEvent.ticket_id == ticket_id).order_by(TicketEvent.id)
            )
        )


async def notes_of(stack: Stack, conversation_id: str) -> list[Message]:
    async with stack.services.database.unit_of_work() as session:
        return list(
            await session.scalars(
                select(Message)
                .where(Message.conversation_id == conversation_id, Message.kind == "note")
                .order_by(Message.id)
            )
        )


async def fill(stack: Stack, key: str) -> None:
    """Other clients take every seat of a slot."""
    slot = Slot.parse(key)
    service = stack.services.booking.service(slot.service_id)
    for _ in range(service.capacity):
        other = await new_client(stack.services, scopes=(("booking", service.organisation),))
        await stack.services.booking.book(
            client_id=other[0], conversation_id=other[1], channel="rest", slot=slot, language="uk"
        )


def drain(queue: asyncio.Queue[dict[str, Any]]) -> list[dict[str, Any]]:
    events = []
    while not queue.empty():
        events.append(queue.get_nowait())
    return events


async def test_the_client_taps_a_proposed_slot_consents_and_is_booked_with_reminders(stack: Stack) -> None:
    uk = stack.services.content.texts["uk"]
    async with stack.console() as console:
        person = await with_adviser(stack, console)
        keys = (await offered_slots(person))[:3]
        sent = await propose(person, keys)
        assert sent.status_code == 303 and "hinweis=appointment" in sent.headers["location"]
        proposal = await received_proposal(stack, person)
        assert proposal.language == "uk" and proposal.text.startswith(uk["proposal.offer"].split("{")[0])
        assert len(proposal.buttons) == 4 and proposal.buttons[-1].title == uk["button.proposal_none"]
        assert all(len(b.payload.encode()) <= 64 for b in proposal.buttons), "fits Telegram's callback data"
        weekdays = {uk[f"weekday.{d}"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
        assert all(b.title.split(" ")[0] in weekdays for b in proposal.buttons[:3]), proposal.buttons

        async with stack.services.hub.subscribe(ORGANISATION) as live:
            asked = await say(stack, person, proposal.buttons[1].payload)
            assert keys_of(asked) == ["consent.booking.v1"], keys_of(asked)
            assert await appointments_of(stack, person.client_id) == [], "nothing before the consent"
            reminders_asked = await say(stack, person, "/consent_yes")
            assert keys_of(reminders_asked) == ["consent.granted", "consent.reminders.v1"]
            confirmed = await say(stack, person, "/consent_yes")
            events = drain(live)
        assert keys_of(confirmed) == ["consent.granted", "booking.confirmed"], keys_of(confirmed)
        confirmation = confirmed[1]
        assert confirmation.attachment is not None and "BEGIN:VCALENDAR" in confirmation.attachment.content
        assert "/appointments/" in confirmation.text and ".ics?token=" in confirmation.text

        [appointment] = await appointments_of(stack, person.client_id)
        chosen = Slot.parse(keys[1])
        assert appointment.organisation == ORGANISATION and appointment.status == "booked"
        assert (appointment.service_id, appointment.location_id) == (chosen.service_id, chosen.location_id)
        assert appointment.starts_at.replace(tzinfo=None) == chosen.starts_at.replace(tzinfo=None)
        assert appointment.language == "uk" and appointment.topic == "recognition"
        reminders = await reminders_of(stack, appointment.id)
        assert sorted(r.lead_minutes for r in reminders) == [120, 24 * 60]
        scheduler = stack.services.booking.scheduler
        assert all(scheduler.get_job(f"reminder-{r.id}") is not None for r in reminders)

        [note] = await notes_of(stack, person.conversation_id)
        assert note.author == "system" and note.text.startswith("Termin gebucht: ")
        assert "Erinnerungen: ja" in note.text
        assert {"type": "message", "ticket": person.ticket_id, "message": note.id} in events
        kinds = await events_of(stack, person.ticket_id)
        assert kinds[-2:] == ["proposed", "appointment_booked"], kinds
        async with stack.services.database.unit_of_work() as session:
            ticket = await session.get_one(Ticket, person.ticket_id)
        assert ticket.status == "claimed" and ticket.outcome is None, "closing stays the adviser's decision"

        shown = (await console.get(f"/console/api/tickets/{person.ticket_id}/messages")).json()["messages"]
        line = next(m for m in shown if m["id"] == note.id)
        assert line["note"] is True and line["german"].startswith("Termin gebucht: ")
        tap = next(m for m in shown if m["author"] == "client" and m["german"].startswith("[Terminvorschlag"))
        assert tap["german"] == "[Terminvorschlag: Termin 2 gewählt]" and tap["mark"] == ""
        offer = next(m for m in shown if m["proposal"])
        assert offer["german"].startswith("Ihre Beraterin oder Ihr Berater bei")

        again = await say(stack, person, proposal.buttons[0].payload)
        assert keys_of(again) == ["proposal.unknown"], "a proposal books one appointment"
        assert len(await appointments_of(stack, person.client_id)) == 1


async def test_without_the_reminder_consent_no_reminders(stack: Stack) -> None:
    async with stack.console() as console:
        person = await with_adviser(stack, console)
        await propose(person, (await offered_slots(person))[:3])
        proposal = await received_proposal(stack, person)
        await say(stack, person, proposal.buttons[0].payload)
        assert keys_of(await say(stack, person, "/consent_yes"))[-1] == "consent.reminders.v1"
        confirmed = await say(stack, person, "/consent_no")
    assert keys_of(confirmed) == ["booking.confirmed"], keys_of(confirmed)
    [appointment] = await appointments_of(stack, person.client_id)
    assert await reminders_of(stack, appointment.id) == []
    assert stack.services.booking.scheduler.get_jobs() == []
    [note] = await notes_of(stack, person.conversation_id)
    assert "Erinnerungen: nein" in note.text


async def test_a_declined_booking_consent_stores_nothing(stack: Stack) -> None:
    async with stack.console() as console:
        person = await with_adviser(stack, console)
        await propose(person, (await offered_slots(person))[:3])
        proposal = await received_proposal(stack, person)
        none = await say(stack, person, proposal.buttons[-1].payload)
        assert keys_of(none) == ["proposal.none"], keys_of(none)
        assert keys_of(await say(stack, person, proposal.buttons[2].payload)) == ["consent.booking.v1"]
        declined = await say(stack, person, "/consent_no")
    assert keys_of(declined) == ["proposal.no_consent"], keys_of(declined)
    assert await appointments_of(stack, person.client_id) == []
    async with stack.services.database.unit_of_work() as session:
        consents = list(
            await session.scalars(
                select(ConsentEvent.action).where(
                    ConsentEvent.client_id == person.client_id,
                    ConsentEvent.scope.in_(("booking", "reminders")),
                )
            )
        )
        reminders = list(await session.scalars(select(Reminder)))
    assert consents == ["declined"] and reminders == []
    assert (await events_of(stack, person.ticket_id))[-2:] == ["proposal_none", "proposal_declined"]
    notes = [n.text for n in await notes_of(stack, person.conversation_id)]
    assert notes[0].startswith("Keiner der vorgeschlagenen") and "nichts gebucht" in notes[1]


async def test_only_the_claiming_adviser_of_the_organisation_can_propose(stack: Stack) -> None:
    async with stack.console() as console, stack.console() as other, stack.console() as colleague:
        person = await with_adviser(stack, console)
        keys = (await offered_slots(person))[:3]
        await adviser(stack.services, "awo", "otto")
        await sign_in(other, "otto")
        otto_csrf = await csrf_of(other)
        url = f"/console/tickets/{person.ticket_id}/appointment"
        assert (await other.post(url, data={"csrf": otto_csrf, "slot": keys})).status_code == 404
        assert (await other.get(f"/console/tickets/{person.ticket_id}")).status_code == 404
        await adviser(stack.services, ORGANISATION, "berta")
        await sign_in(colleague, "berta")
        refused = await colleague.post(
            url,
            data={"csrf": await csrf_of(colleague), "slot": keys},
            headers={"Accept": "application/json"},
        )
        assert refused.status_code == 409 and refused.json()["notice"] == "claim_first"
        awo_service = stack.services.directory.services_of("awo")[0]
        awo_slot = (await stack.services.booking.free_slots(awo_service.id, limit=1))[0]
        foreign = await person.console.post(
            url,
            data={"csrf": person.csrf, "slot": [awo_slot.key]},
            headers={"Accept": "application/json"},
        )
        assert foreign.status_code == 409 and foreign.json()["notice"] == "no_slot"
        nothing = await person.console.post(
            url, data={"csrf": person.csrf}, headers={"Accept": "application/json"}
        )
        assert nothing.json()["notice"] == "no_slot"
    async with stack.services.database.unit_of_work() as session:
        proposals = [
            m
            for m in await session.scalars(select(Message).where(Message.author == "adviser"))
            if isinstance(m.payload, dict) and "proposal" in m.payload
        ]
    assert proposals == []
    assert "proposed" not in await events_of(stack, person.ticket_id)


async def test_a_slot_taken_meanwhile_brings_the_next_free_times(stack: Stack) -> None:
    async with stack.console() as console:
        person = await with_adviser(stack, console)
        keys = (await offered_slots(person))[:3]
        await propose(person, keys)
        proposal = await received_proposal(stack, person)

        await fill(stack, keys[0])  # taken before the tap
        gone = await say(stack, person, proposal.buttons[0].payload)
        assert keys_of(gone) == ["proposal.slot_gone"], keys_of(gone)
        offered = gone[0].buttons
        assert len(offered) == 4 and offered[-1].payload == proposal.buttons[-1].payload
        assert await appointments_of(stack, person.client_id) == []

        assert keys_of(await say(stack, person, offered[0].payload)) == ["consent.booking.v1"]
        next_key = await _pending_slot(stack, person)
        assert next_key != keys[0]
        await fill(stack, next_key)  # taken between the consent question and the booking
        assert keys_of(await say(stack, person, "/consent_yes"))[-1] == "consent.reminders.v1"
        raced = await say(stack, person, "/consent_yes")
        assert keys_of(raced) == ["consent.granted", "proposal.slot_gone"], keys_of(raced)
        assert await appointments_of(stack, person.client_id) == []
        booked = await say(stack, person, raced[1].buttons[0].payload)  # both consents are on record now
        assert keys_of(booked) == ["booking.confirmed"], keys_of(booked)
    [appointment] = await appointments_of(stack, person.client_id)
    assert appointment.organisation == ORGANISATION
    taken = {Slot.parse(keys[0]).starts_at, Slot.parse(next_key).starts_at}
    assert appointment.starts_at.replace(tzinfo=None) not in {t.replace(tzinfo=None) for t in taken}
    kinds = await events_of(stack, person.ticket_id)
    assert kinds.count("proposal_slot_gone") == 2 and kinds[-1] == "appointment_booked"


async def _pending_slot(stack: Stack, person: Person) -> str:
    """The slot the pending consent question is about."""
    from bot.storage.models import Conversation

    async with stack.services.database.unit_of_work() as session:
        conversation = await session.get_one(Conversation, person.conversation_id)
    pending = conversation.pending or {}
    then = pending.get("then") or {}
    assert then.get("action") == "proposal", pending
    return str(then["slot"])
