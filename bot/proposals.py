"""Appointment proposals from the adviser console: the adviser picks free slots of the ticket's organisation,
the client gets one button per slot (and "none fits"), and a tap books that slot for that client with that
organisation, after the booking consent and with reminders only after the reminder consent.

A proposal is the adviser's message itself: its payload names the ticket and the offered slot keys, and the
buttons carry only the proposal's random id and a slot number (Telegram allows 64 bytes per button). The
router hands ``/proposal{...}`` payloads here before a conversation with an adviser forwards anything, so a
tap works while the client waits, talks to the adviser, or is back with the bot. The adviser sees what
happened as a system line in the ticket (a ``note`` message the client never receives) and a ticket event.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.appointments import AppointmentsDialogue
from bot.booking import PAGE, BookingError, BookingService, Slot, SlotTaken
from bot.channels.base import Button
from bot.consent import ConsentRequest, ConsentService
from bot.conversations import add_message
from bot.data_rights import DataRightsDialogue, Outcome, Turn
from bot.directory import Service
from bot.handoff import HandoffError, HandoffService
from bot.hub import EventHub
from bot.storage.database import Database
from bot.storage.models import Adviser, Conversation, Message, Reminder, Ticket, TicketEvent, as_utc
from bot.texts import TextService

log = logging.getLogger(__name__)

PROPOSAL = re.compile(r"^/proposal\s*(?P<data>\{.*\})$", re.DOTALL)
"""A tap on a proposal button: ``/proposal{"id":"<proposal id>","n":<1-based slot number or "none">}``."""
MAX_SLOTS = 5
"""At most this many slots in one proposal (one button each)."""
OPTIONS = 8
"""Free slots shown to the adviser to choose from."""
NEXT_SLOTS = 3
"""Slots offered when the chosen one is no longer free."""
SEARCHED = 200
"""How many of the conversation's newest adviser messages are searched for a proposal id."""
_GERMAN_WEEKDAYS = ("Mo", "Di", "Mi", "Do", "Fr", "Sa", "So")


@dataclass(frozen=True, kw_only=True)
class SlotOption:
    """A free slot as the adviser sees it."""

    key: str
    starts_at: datetime
    """Local time of the directory (Europe/Berlin)."""
    service: str
    place: str

    @property
    def label(self) -> str:
        """German: "Di 10.03. 10:00 · Paderborn, Beratungsstelle (Migrationsberatung)"."""
        when = f"{_GERMAN_WEEKDAYS[self.starts_at.weekday()]} {self.starts_at.strftime('%d.%m. %H:%M')}"
        return f"{when} · {self.place} ({self.service})"


class ProposalService:
    """Proposes slots for the adviser and books the one the client taps."""

    def __init__(
        self,
        *,
        database: Database,
        booking: BookingService,
        appointments: AppointmentsDialogue,
        handoff: HandoffService,
        rights: DataRightsDialogue,
        consent: ConsentService,
        texts: TextService,
        hub: EventHub,
    ) -> None:
        self.database = database
        self.booking = booking
        self.appointments = appointments
        self.handoff = handoff
        self.rights = rights
        self.consent = consent
        self.texts = texts
        self.hub = hub
        rights.continuations["proposal"] = self._after_booking_consent
        rights.continuations["proposal_reminders"] = self._after_reminders_consent

    # ---- adviser side -------------------------------------------------------------------------------

    def services_for(self, ticket: Ticket) -> list[Service]:
        """The ticket's service if it names one, else the organisation's services for its topic (or all)."""
        directory = self.booking.directory
        chosen = directory.services.get(ticket.service_id or "")
        if chosen is not None and chosen.organisation == ticket.organisation:
            return [chosen]
        services = directory.services_of(ticket.organisation)
        matching = [s for s in services if ticket.topic and ticket.topic in s.topics]
        return matching or services

    async def options(self, ticket: Ticket, *, after: datetime | None = None) -> list[SlotOption]:
        """The organisation's next free slots for this ticket, soonest first, across its services."""
        found: list[tuple[datetime, int, Slot]] = []
        services = self.services_for(ticket)
        for order, service in enumerate(services):
            for slot in await self.booking.free_slots(service.id, after=after, limit=OPTIONS):
                found.append((slot.starts_at, order, slot))
        found.sort(key=lambda item: (item[0], item[1]))
        return [self._option(slot) for _starts, _order, slot in found[:OPTIONS]]

    async def propose(self, ticket_id: int, adviser: Adviser, keys: list[str]) -> Message:
        """Send the client the chosen slots as buttons; raise HandoffError when that is not possible."""
        ticket = await self.handoff.ticket(adviser.organisation, ticket_id)
        if ticket is None:
            raise HandoffError("no such ticket")
        keys = list(dict.fromkeys(k.strip() for k in keys if k.strip()))
        if not 1 <= len(keys) <= MAX_SLOTS:
            raise HandoffError("no slot chosen (one to five)")
        slots: list[Slot] = []
        for key in keys:
            try:
                slot = Slot.parse(key)
                service = self.booking.service(slot.service_id)
            except BookingError:
                raise HandoffError("no slot chosen (unknown slot)") from None
            if service.organisation != ticket.organisation:
                raise HandoffError("no slot chosen (another organisation's slot)")
            if not await self._is_free(slot):
                raise HandoffError("slot no longer free")
            slots.append(slot)
        slots.sort(key=lambda s: s.starts_at)
        proposal_id = secrets.token_hex(6)
        language = ticket.language
        name = self._name(ticket.organisation)
        message = await self.texts.message("proposal.offer", language, params={"organisation": name})
        buttons = [
            Button(title=await self._title(slot, language), payload=_payload(proposal_id, index))
            for index, slot in enumerate(slots, start=1)
        ]
        none, _ = await self.texts.text("button.proposal_none", language)
        buttons.append(Button(title=none, payload=_payload(proposal_id, "none")))
        if any(self.booking.service(s.service_id).to_confirm for s in slots):
            note, _ = await self.texts.text("booking.to_confirm", language)
            message = replace(message, text=f"{message.text}\n\n{note}")
        message = replace(message, buttons=tuple(buttons))
        german, _ = await self.texts.text("proposal.offer", "de", {"organisation": name})
        original = german + "\n" + "\n".join(f"• {self._option(s).label}" for s in slots)
        return await self.handoff.propose(
            ticket_id,
            adviser,
            message,
            payload={
                "original": original,
                "adviser": adviser.id,
                "proposal": {"id": proposal_id, "ticket": ticket_id, "slots": [s.key for s in slots]},
            },
            detail=f"{proposal_id} {len(slots)} slots",
        )

    # ---- client side --------------------------------------------------------------------------------

    async def choose(self, turn: Turn, text: str) -> Outcome:
        """A tap on a proposal button."""
        match = PROPOSAL.match(text.strip())
        try:
            data = json.loads(match.group("data")) if match else {}
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        proposal_id, choice = str(data.get("id") or ""), data.get("n")
        found = await self._find(turn, proposal_id)
        if found is None:
            return await self._say(turn, "proposal.unknown")
        proposal, ticket = found
        if choice == "none":
            await self._tell_adviser(
                ticket, "proposal_none", "Keiner der vorgeschlagenen Termine passt der Person.", proposal_id
            )
            return await self._say(turn, "proposal.none")
        slots: list[str] = proposal["slots"]
        number = choice if isinstance(choice, int) and not isinstance(choice, bool) else 0
        if not 1 <= number <= len(slots):
            return await self._say(turn, "proposal.unknown")
        key = slots[number - 1]
        try:
            slot = Slot.parse(key)
        except BookingError:
            return await self._say(turn, "proposal.unknown")
        if not await self._is_free(slot):
            return await self._slot_gone(turn, ticket, proposal_id, slot)
        then = {"action": "proposal", "proposal": proposal_id, "slot": key}
        request = ConsentRequest(scope="booking", organisation=ticket.organisation)
        async with self.database.unit_of_work() as session:
            allowed = await self.consent.may(session, client_id=turn.client_id, request=request)
        if not allowed:
            return await self.rights.ask_consent(turn, request, then=then)
        return await self._reminders_step(turn, then)

    async def _after_booking_consent(self, turn: Turn, then: dict[str, Any], granted: bool) -> Outcome:
        found = await self._find(turn, str(then.get("proposal") or ""))
        if found is None:
            return await self._say(turn, "proposal.unknown")
        _proposal, ticket = found
        if not granted:
            await self._tell_adviser(
                ticket,
                "proposal_declined",
                "Keine Zustimmung der Person zur Terminbuchung; es wurde nichts gebucht.",
                str(then.get("proposal")),
            )
            return await self._say(turn, "proposal.no_consent")
        return await self._reminders_step(turn, then)

    async def _reminders_step(self, turn: Turn, then: dict[str, Any]) -> Outcome:
        """Ask for the reminder consent unless it is on record; then book."""
        request = ConsentRequest(scope="reminders")
        async with self.database.unit_of_work() as session:
            allowed = await self.consent.may(session, client_id=turn.client_id, request=request)
        if allowed:
            return await self._book(turn, then)
        follow = {"action": "proposal_reminders", "proposal": then.get("proposal"), "slot": then.get("slot")}
        return await self.rights.ask_consent(turn, request, then=follow)

    async def _after_reminders_consent(self, turn: Turn, then: dict[str, Any], granted: bool) -> Outcome:
        return await self._book(turn, then)  # reminders are added only if the consent was granted

    async def _book(self, turn: Turn, then: dict[str, Any]) -> Outcome:
        proposal_id, key = str(then.get("proposal") or ""), str(then.get("slot") or "")
        found = await self._find(turn, proposal_id)
        if found is None or key not in found[0]["slots"]:
            return await self._say(turn, "proposal.unknown")
        _proposal, ticket = found
        slot = Slot.parse(key)
        summary = ticket.summary or {}
        town = summary.get("town")
        age_group = summary.get("age_group")
        try:
            appointment = await self.booking.book(
                client_id=turn.client_id,
                conversation_id=turn.conversation_id,
                channel=turn.channel,
                slot=slot,
                language=turn.language,
                topic=ticket.topic,
                town=town if town in self.booking.directory.towns else None,
                age_group=age_group if age_group in ("under27", "27plus") else None,
                reason="proposal",
            )
        except SlotTaken:
            return await self._slot_gone(turn, ticket, proposal_id, slot)
        except BookingError as exc:
            if "consent" not in str(exc):
                return await self._slot_gone(turn, ticket, proposal_id, slot)
            log.warning("proposal %s not booked: %s", proposal_id, exc)
            await self._tell_adviser(
                ticket, "proposal_failed", "Der Termin konnte nicht gebucht werden.", proposal_id
            )
            return await self._say(turn, "proposal.failed")
        reminders = await self._reminder_count(appointment.id)
        info = self.booking.describe(appointment)
        local = as_utc(appointment.starts_at).astimezone(self.booking.directory.timezone)
        await self._tell_adviser(
            ticket,
            "appointment_booked",
            f"Termin gebucht: {_GERMAN_WEEKDAYS[local.weekday()]} {info['date']}, {info['time']} Uhr, "
            f"{info['service']}, {info['place']}. Erinnerungen: {'ja' if reminders else 'nein'}.",
            appointment.id,
            used=appointment.id,
        )
        message = await self.texts.message(
            "booking.confirmed",
            turn.language,
            params={**info, "calendar": self.booking.ics_url(appointment.id)},
            buttons=[("button.appointments", "/appointments")],
        )
        if self.booking.service(appointment.service_id).to_confirm:  # booked, so the service exists
            note, _ = await self.texts.text("booking.to_confirm", turn.language)
            message = replace(message, text=f"{message.text}\n\n{note}")
        attachment = await self.appointments.attachment(appointment.id)
        return Outcome(replies=[replace(message, attachment=attachment)])

    async def _slot_gone(self, turn: Turn, ticket: Ticket, proposal_id: str, slot: Slot) -> Outcome:
        """The chosen time is no longer free: say so and offer the service's next free times."""
        name = self._name(ticket.organisation)
        try:
            upcoming = await self.booking.free_slots(slot.service_id, limit=NEXT_SLOTS)
        except BookingError:
            upcoming = []
        numbers = await self._extend(turn, proposal_id, [s.key for s in upcoming])
        when = self._option(slot).label
        if not upcoming or not numbers:
            await self._tell_adviser(
                ticket,
                "proposal_slot_gone",
                f"Der gewählte Termin ({when}) war nicht mehr frei; es ist kein weiterer Termin frei.",
                proposal_id,
            )
            return await self._say(turn, "proposal.no_slots", organisation=name)
        await self._tell_adviser(
            ticket,
            "proposal_slot_gone",
            f"Der gewählte Termin ({when}) war nicht mehr frei; die nächsten Termine wurden angeboten.",
            proposal_id,
        )
        message = await self.texts.message("proposal.slot_gone", turn.language, params={"organisation": name})
        buttons = [
            Button(title=await self._title(s, turn.language), payload=_payload(proposal_id, n))
            for s, n in zip(upcoming, numbers, strict=True)
        ]
        none, _ = await self.texts.text("button.proposal_none", turn.language)
        buttons.append(Button(title=none, payload=_payload(proposal_id, "none")))
        return Outcome(replies=[replace(message, buttons=tuple(buttons))])

    # ---- helpers ------------------------------------------------------------------------------------

    async def _find(self, turn: Turn, proposal_id: str) -> tuple[dict[str, Any], Ticket] | None:
        """The open (not yet used) proposal with this id in the client's conversation, and its ticket."""
        if not re.fullmatch(r"[0-9a-f]{12}", proposal_id):
            return None
        async with self.database.unit_of_work() as session:
            message = await self._proposal_message(session, turn.conversation_id, proposal_id)
            if message is None:
                return None
            proposal = dict((message.payload or {})["proposal"])
            ticket = await session.get(Ticket, int(proposal.get("ticket") or 0))
        if (
            ticket is None
            or ticket.client_id != turn.client_id
            or ticket.conversation_id != turn.conversation_id
            or proposal.get("booked")
            or not isinstance(proposal.get("slots"), list)
        ):
            return None
        return proposal, ticket

    @staticmethod
    async def _proposals(session: AsyncSession, conversation_id: str) -> list[tuple[Message, dict[str, Any]]]:
        """The conversation's newest adviser messages that carry a proposal, with it."""
        rows = await session.scalars(
            select(Message)
            .where(
                Message.conversation_id == conversation_id,
                Message.direction == "out",
                Message.author == "adviser",
            )
            .order_by(Message.id.desc())
            .limit(SEARCHED)
        )
        found = []
        for message in rows:
            proposal = (message.payload if isinstance(message.payload, dict) else {}).get("proposal")
            if isinstance(proposal, dict):
                found.append((message, proposal))
        return found

    async def _proposal_message(
        self, session: AsyncSession, conversation_id: str, proposal_id: str
    ) -> Message | None:
        for message, proposal in await self._proposals(session, conversation_id):
            if proposal.get("id") == proposal_id:
                return message
        return None

    async def _extend(self, turn: Turn, proposal_id: str, keys: list[str]) -> list[int]:
        """Add slots to a proposal (so their buttons work); their 1-based numbers in it."""
        async with self.database.unit_of_work() as session:
            message = await self._proposal_message(session, turn.conversation_id, proposal_id)
            if message is None:
                return []
            payload = dict(message.payload or {})
            proposal = dict(payload["proposal"])
            slots = list(proposal.get("slots") or [])
            numbers = []
            for key in keys:
                if key not in slots:
                    slots.append(key)
                numbers.append(slots.index(key) + 1)
            proposal["slots"] = slots
            payload["proposal"] = proposal
            message.payload = payload
            await session.commit()
        return numbers

    async def _tell_adviser(
        self, ticket: Ticket, kind: str, line: str, detail: str, *, used: str | None = None
    ) -> None:
        """A system line in the ticket's conversation (never sent to the client), a ticket event, and a
        live event to the organisation's consoles."""
        async with self.database.unit_of_work() as session:
            conversation = await session.get(Conversation, ticket.conversation_id or "")
            if conversation is None:
                return
            note = add_message(
                session,
                conversation=conversation,
                direction="out",
                author="system",
                kind="note",
                text=line,
                language="de",
            )
            session.add(TicketEvent(ticket_id=ticket.id, kind=kind, actor="client", detail=detail[:200]))
            if used is not None:
                await self._mark_used(session, conversation.id, ticket.id, used)
            await session.commit()
            note_id = note.id
        await self.hub.publish(
            ticket.organisation, {"type": "message", "ticket": ticket.id, "message": note_id}
        )

    async def _mark_used(
        self, session: AsyncSession, conversation_id: str, ticket_id: int, appointment_id: str
    ) -> None:
        """Every open proposal of the ticket is used up once one of them was booked."""
        for message, proposal in await self._proposals(session, conversation_id):
            if proposal.get("ticket") == ticket_id and not proposal.get("booked"):
                booked = {**proposal, "booked": appointment_id}
                message.payload = {**(message.payload or {}), "proposal": booked}

    async def _reminder_count(self, appointment_id: str) -> int:
        async with self.database.unit_of_work() as session:
            count = await session.scalar(
                select(func.count(Reminder.id)).where(Reminder.appointment_id == appointment_id)
            )
        return int(count or 0)

    async def _is_free(self, slot: Slot) -> bool:
        """Whether a seat of the slot is free (and it is not too soon)."""
        service = self.booking.directory.services.get(slot.service_id)
        if service is None:
            return False
        free = await self.booking.free_slots(
            slot.service_id,
            after=slot.starts_at - timedelta(minutes=1),
            limit=max(PAGE, len(service.locations) + 1),
        )
        return any(s.location_id == slot.location_id and s.starts_at == slot.starts_at for s in free)

    def _option(self, slot: Slot) -> SlotOption:
        service = self.booking.directory.services.get(slot.service_id)
        locations = service.locations if service is not None else ()
        place = next((loc.name for loc in locations if loc.id == slot.location_id), slot.location_id)
        return SlotOption(
            key=slot.key,
            starts_at=slot.starts_at.astimezone(self.booking.directory.timezone),
            service=service.name if service is not None else slot.service_id,
            place=place,
        )

    async def _title(self, slot: Slot, language: str) -> str:
        option = self._option(slot)
        return await self.appointments.slot_title(option.starts_at.isoformat(), option.place, language)

    async def _say(self, turn: Turn, key: str, **params: object) -> Outcome:
        return Outcome(replies=[await self.texts.message(key, turn.language, params=params or None)])

    def _name(self, organisation: str) -> str:
        return self.texts.content.organisations.get(organisation, organisation)


def _payload(proposal_id: str, number: int | str) -> str:
    """A button payload; at most 40 bytes, so it fits Telegram's 64."""
    return "/proposal" + json.dumps({"id": proposal_id, "n": number}, separators=(",", ":"))
