"""`/appointments` in the chat: the client's upcoming appointments with buttons to cancel or move them, and
the .ics file of an appointment. Booking itself is the engine's booking form (actions/booking.py)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import datetime

from bot.booking import BookingError, BookingService, Slot, SlotTaken
from bot.channels.base import Attachment, Button
from bot.data_rights import Outcome, Turn
from bot.storage.models import Appointment
from bot.texts import TextService

_PAYLOAD = re.compile(r"^/appointment_(?P<action>cancel|move|move_to)\s*(?P<data>\{.*\})$", re.DOTALL)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class AppointmentsDialogue:
    """Lists, cancels and moves a client's appointments; renders slot buttons and .ics files."""

    def __init__(self, booking: BookingService, texts: TextService) -> None:
        self.booking = booking
        self.texts = texts

    async def handle(self, turn: Turn, text: str) -> Outcome:
        """`/appointments` or one of its buttons."""
        match = _PAYLOAD.match(text)
        if match is None:
            return await self.overview(turn)
        try:
            data = json.loads(match.group("data"))
        except ValueError:
            data = {}
        appointment_id = str(data.get("id", "")) if isinstance(data, dict) else ""
        action = match.group("action")
        if action == "cancel":
            return await self.cancel(turn, appointment_id)
        if action == "move":
            return await self.offer_move(turn, appointment_id)
        return await self.move_to(
            turn, appointment_id, str(data.get("slot", "")) if isinstance(data, dict) else ""
        )

    async def overview(self, turn: Turn) -> Outcome:
        """The upcoming appointments, one message each with cancel/move buttons."""
        upcoming = await self.booking.upcoming(turn.client_id)
        if not upcoming:
            return Outcome(
                replies=[
                    await self.texts.message(
                        "appointments.none",
                        turn.language,
                        buttons=[("button.appointment", "/book_appointment")],
                    )
                ]
            )
        replies = [await self.texts.message("appointments.list", turn.language)]
        for appointment in upcoming:
            message = await self.texts.message(
                "appointments.item",
                turn.language,
                params=self.booking.describe(appointment),
                buttons=[
                    ("button.cancel_appointment", f'/appointment_cancel{{"id":"{appointment.id}"}}'),
                    ("button.move_appointment", f'/appointment_move{{"id":"{appointment.id}"}}'),
                ],
            )
            replies.append(message)
        replies.append(
            await self.texts.message(
                "appointments.more", turn.language, buttons=[("button.appointment", "/book_appointment")]
            )
        )
        return Outcome(replies=replies)

    async def cancel(self, turn: Turn, appointment_id: str) -> Outcome:
        """Cancel; a second cancel or an unknown id gets its own clear answer."""
        result, appointment = await self.booking.cancel(turn.client_id, appointment_id)
        if result == "unknown" or appointment is None:
            return Outcome(replies=[await self.texts.message("appointments.unknown", turn.language)])
        key = "appointments.cancelled" if result == "cancelled" else "appointments.already_cancelled"
        return Outcome(
            replies=[await self.texts.message(key, turn.language, params=self.booking.describe(appointment))]
        )

    async def offer_move(self, turn: Turn, appointment_id: str, *, after: datetime | None = None) -> Outcome:
        """The next free times of the same service, as buttons."""
        appointment = await self._own(turn, appointment_id)
        if appointment is None:
            return Outcome(replies=[await self.texts.message("appointments.unknown", turn.language)])
        slots = await self.booking.free_slots(appointment.service_id, after=after)
        buttons = []
        zone = self.booking.directory.timezone
        service = self.booking.directory.services.get(appointment.service_id)
        names = {loc.id: loc.name for loc in service.locations} if service else {}
        for slot in slots:
            title = await self.slot_title(
                slot.starts_at.astimezone(zone).isoformat(), names.get(slot.location_id, ""), turn.language
            )
            payload = f'/appointment_move_to{{"id":"{appointment.id}","slot":"{slot.key}"}}'
            buttons.append(Button(title=title, payload=payload))
        key = "appointments.move_choose" if slots else "booking.no_slots"
        message = await self.texts.message(key, turn.language, params=self.booking.describe(appointment))
        return Outcome(replies=[replace(message, buttons=tuple(buttons))])

    async def move_to(self, turn: Turn, appointment_id: str, slot_key: str) -> Outcome:
        """Move to the chosen time; a time taken meanwhile offers the next ones."""
        try:
            slot = Slot.parse(slot_key)
            moved = await self.booking.move(turn.client_id, appointment_id, slot)
        except SlotTaken:
            taken = await self.texts.message("booking.slot_taken", turn.language)
            offer = await self.offer_move(turn, appointment_id)
            return Outcome(replies=[taken, *offer.replies])
        except BookingError:
            return Outcome(replies=[await self.texts.message("appointments.unknown", turn.language)])
        params = {**self.booking.describe(moved), "calendar": self.booking.ics_url(moved.id)}
        message = await self.texts.message("appointments.moved", turn.language, params=params)
        attachment = await self.attachment(moved.id)
        return Outcome(replies=[replace(message, attachment=attachment)])

    async def _own(self, turn: Turn, appointment_id: str) -> Appointment | None:
        async with self.booking.database.unit_of_work() as session:
            appointment = await session.get(Appointment, appointment_id)
        if appointment is None or appointment.client_id != turn.client_id or appointment.status != "booked":
            return None
        return appointment

    async def slot_title(self, when: str, place: str, language: str) -> str:
        """A button title for a slot: weekday, date and time in the client's language, and the place."""
        moment = datetime.fromisoformat(when)
        weekday, _ = await self.texts.text(f"weekday.{WEEKDAYS[moment.weekday()]}", language)
        title = f"{weekday} {moment.strftime('%d.%m.')} {moment.strftime('%H:%M')}"
        return f"{title} · {place}" if place else title

    async def attachment(self, appointment_id: str) -> Attachment | None:
        """The appointment as an .ics file."""
        async with self.booking.database.unit_of_work() as session:
            appointment = await session.get(Appointment, appointment_id)
        if appointment is None:
            return None
        return Attachment(
            filename="termin.ics", mime_type="text/calendar", content=self.booking.ics([appointment])
        )
