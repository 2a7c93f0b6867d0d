"""Withdrawing consent takes back what was shared: an open handoff ends and the organisation's advisers no
longer see the conversation; booked appointments lose name and contact in the organisation's list."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from bot.bootstrap import Services
from bot.consent import ConsentRequest
from bot.storage.models import Appointment, Ticket, TicketEvent
from tests.auxil.clients import grant
from tests.auxil.console import adviser
from tests.auxil.libretranslate import FakeLibreTranslate
from tests.conftest import LiveStack
from tests.test_booking_dialogue import keys, payload
from tests.test_handoff_flow import ORGANISATION, conversation_of, desk, stack, waiting_client

__all__ = ["desk", "stack"]  # module fixtures shared with test_handoff_flow
SERVICE = "caritas-bueren-mbe"


async def test_withdrawal_with_an_adviser_closes_the_ticket_and_hides_the_conversation(
    stack: tuple[LiveStack, FakeLibreTranslate], desk: Services
) -> None:
    live, _fake = stack
    client, ticket = await waiting_client(live, desk)
    carla = await adviser(desk, ORGANISATION, f"carla-{uuid.uuid4().hex[:6]}")
    assert await desk.handoff.claim(ticket.id, carla)
    await desk.handoff.send(ticket.id, carla, "Guten Tag.")
    assert await desk.handoff.conversation(ORGANISATION, ticket.id), "the adviser reads the conversation"

    overview = client.say("/privacy")
    withdrawn = client.say(payload(overview, "/withdraw_consent"))
    assert "consent.withdrawn" in keys(withdrawn), keys(withdrawn)
    assert "consent.withdrawn_handoff" in keys(withdrawn), keys(withdrawn)

    async with desk.database.unit_of_work() as session:
        stored = await session.get_one(Ticket, ticket.id)
        query = select(TicketEvent.kind).where(TicketEvent.ticket_id == ticket.id)
        kinds = list(await session.scalars(query))
    assert stored.status == "closed" and stored.outcome == "withdrawn"
    assert stored.conversation_id is None and stored.client_id is None and stored.summary is None
    assert "withdrawn" in kinds
    assert await desk.handoff.conversation(ORGANISATION, ticket.id) == []
    assert ticket.id not in [t.id for t in await desk.handoff.queue(ORGANISATION)]
    conversation = await conversation_of(desk, client.sender)
    assert conversation.status == "bot"
    with_console = await desk.handoff.ticket(ORGANISATION, ticket.id)
    assert with_console is not None and with_console.summary is None

    again = client.say("Скільки коштує інтеграційний курс?")
    assert keys(again)[-1] == "answer.language_course.cost", keys(again)
    async with desk.database.unit_of_work() as session:
        assert not await desk.consent.may(
            session,
            client_id=conversation.client_id,
            request=ConsentRequest(scope="handoff", organisation=ORGANISATION),
        )


async def test_withdrawal_removes_name_and_contact_from_booked_appointments(
    stack: tuple[LiveStack, FakeLibreTranslate], desk: Services
) -> None:
    live, _fake = stack
    client, ticket = await waiting_client(live, desk)
    conversation = await conversation_of(desk, client.sender)
    service = desk.directory.services[SERVICE]
    async with desk.database.unit_of_work() as session:
        scopes = (("booking", service.organisation),)
        await grant(desk, session, client_id=conversation.client_id, scopes=scopes)
        await session.commit()
    slot = (await desk.booking.free_slots(SERVICE, limit=1))[0]
    booked = await desk.booking.book(
        client_id=conversation.client_id,
        conversation_id=conversation.id,
        channel="rest",
        slot=slot,
        language="uk",
        contact="olena@example.org",
    )
    assert booked.contact == "olena@example.org"
    withdrawn = client.say("/withdraw_consent")
    assert "consent.withdrawn_booking" in keys(withdrawn), keys(withdrawn)
    async with desk.database.unit_of_work() as session:
        appointment = await session.get_one(Appointment, booked.id)
        stored = await session.get_one(Ticket, ticket.id)
    assert appointment.status == "booked", "the reservation stays; only the shared details go"
    assert appointment.name is None and appointment.contact is None
    assert stored.status == "closed" and stored.outcome == "withdrawn"
