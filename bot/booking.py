"""Appointments: free slots from opening hours minus booked seats, booking without double booking (a
partial unique index plus a transaction), cancel and move, .ics files, and reminders in the scheduler."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.channels.base import OutboundMessage
from bot.consent import ConsentRequest, ConsentService
from bot.directory import Directory, Service, opening_slots
from bot.errors import LotseError
from bot.outbox import Outbox
from bot.privacy import audit
from bot.storage.database import Database
from bot.storage.models import Appointment, Conversation, Reminder, as_utc, utcnow
from bot.texts import TextService

log = logging.getLogger(__name__)

REMINDER_LEADS = (24 * 60, 2 * 60)
"""Minutes before the appointment at which the client is reminded."""
MIN_NOTICE = timedelta(hours=2)
"""No slot closer than this is offered (the organisation needs time to prepare)."""
HORIZON = timedelta(days=42)
"""How far ahead slots are offered."""
PAGE = 4
"""Slots shown at once; "later" shows the next ones."""


def misfire_grace(lead_minutes: int) -> int:
    """Seconds a reminder may still be sent late after the app was down: a quarter of its lead time.

    A 24-hour reminder missed by up to 6 hours is sent late; a 2-hour reminder missed by up to 30 minutes.
    Beyond that the reminder is not sent (it would arrive too close to or after the appointment) and its
    row is marked ``missed`` with the reason, so nothing disappears silently.
    """
    return lead_minutes * 60 // 4


class BookingError(LotseError):
    """A booking request that cannot be carried out as asked."""


class SlotTaken(BookingError):
    """Somebody else booked the last seat of the slot in the meantime."""


@dataclass(frozen=True, kw_only=True)
class Slot:
    """A bookable time at one location of a service."""

    service_id: str
    location_id: str
    starts_at: datetime

    @property
    def key(self) -> str:
        """The compact form used in button payloads."""
        return f"{self.service_id}|{self.location_id}|{self.starts_at.strftime('%Y%m%dT%H%MZ')}"

    @classmethod
    def parse(cls, key: str) -> Slot:
        """The slot of a payload key; raise BookingError when malformed."""
        try:
            service_id, location_id, stamp = key.split("|")
            starts_at = datetime.strptime(stamp, "%Y%m%dT%H%MZ").replace(tzinfo=UTC)
        except ValueError:
            raise BookingError(f"not a slot: {key[:60]!r}") from None
        return cls(service_id=service_id, location_id=location_id, starts_at=starts_at)


class BookingService:
    """Slots, appointments and reminders; every change is one transaction."""

    def __init__(
        self,
        *,
        database: Database,
        directory: Directory,
        texts: TextService,
        consent: ConsentService,
        outbox: Outbox,
        secret: str,
        public_url: str,
    ) -> None:
        self.database = database
        self.directory = directory
        self.texts = texts
        self.consent = consent
        self.outbox = outbox
        self.secret = secret.encode()
        self.public_url = public_url.rstrip("/")
        self.scheduler: Any = None
        """The running APScheduler (set by the app at start-up); reminders wait in its job store."""

    # ---- slots ----------------------------------------------------------------------------------------

    def service(self, service_id: str) -> Service:
        """A service of the directory; raise BookingError for an unknown id."""
        service = self.directory.services.get(service_id)
        if service is None:
            raise BookingError(f"unknown service {service_id!r}")
        return service

    async def free_slots(
        self,
        service_id: str,
        *,
        after: datetime | None = None,
        limit: int = PAGE,
        now: datetime | None = None,
    ) -> list[Slot]:
        """The next free slots of a service after ``after`` (never sooner than the minimum notice)."""
        service = self.service(service_id)
        now = now or datetime.now(UTC)
        start = max(after or now, now + MIN_NOTICE)
        async with self.database.unit_of_work() as session:
            rows = await session.execute(
                select(Appointment.location_id, Appointment.starts_at, func.count(Appointment.id))
                .where(
                    Appointment.service_id == service_id,
                    Appointment.status == "booked",
                    Appointment.starts_at >= start,
                )
                .group_by(Appointment.location_id, Appointment.starts_at)
            )
            taken = {(loc, as_utc(starts)): int(count) for loc, starts, count in rows}
        slots: list[Slot] = []
        for starts, location in opening_slots(service, self.directory, after=start, until=now + HORIZON):
            starts = as_utc(starts)
            if starts <= start and after is not None:
                continue
            if taken.get((location.id, starts), 0) >= service.capacity:
                continue
            slots.append(Slot(service_id=service_id, location_id=location.id, starts_at=starts))
            if len(slots) >= limit:
                break
        return slots

    # ---- appointments -------------------------------------------------------------------------------

    async def book(
        self,
        *,
        client_id: str,
        conversation_id: str | None,
        channel: str,
        slot: Slot,
        language: str,
        topic: str | None = None,
        town: str | None = None,
        age_group: str | None = None,
        reason: str = "",
        contact: str | None = None,
        moved_from: str | None = None,
        now: datetime | None = None,
    ) -> Appointment:
        """Book a seat of the slot after checking the booking consent; raise SlotTaken when none is free."""
        service = self.service(slot.service_id)
        now = now or datetime.now(UTC)
        if slot.starts_at < now + MIN_NOTICE / 2:
            raise BookingError("the slot is in the past or too soon")
        if not any(loc.id == slot.location_id for loc in service.locations):
            raise BookingError(f"unknown location {slot.location_id!r}")
        valid = {
            (loc.id, as_utc(s))
            for s, loc in opening_slots(
                service,
                self.directory,
                after=slot.starts_at - timedelta(minutes=1),
                until=slot.starts_at + timedelta(minutes=service.slot_minutes + 1),
            )
        }
        if (slot.location_id, slot.starts_at) not in valid:
            raise BookingError("the slot is outside the opening hours")
        request = ConsentRequest(scope="booking", organisation=service.organisation)
        for seat in range(service.capacity):
            async with self.database.unit_of_work() as session:
                if not await self.consent.may(session, client_id=client_id, request=request):
                    raise BookingError("no valid booking consent for this organisation")
                appointment = Appointment(
                    client_id=client_id,
                    conversation_id=conversation_id,
                    channel=channel,
                    organisation=service.organisation,
                    service_id=service.id,
                    location_id=slot.location_id,
                    starts_at=slot.starts_at,
                    ends_at=slot.starts_at + timedelta(minutes=service.slot_minutes),
                    seat=seat,
                    language=language,
                    topic=topic,
                    town=town,
                    age_group=age_group,
                    reason=reason[:200],
                    contact=(contact or None) and contact[:120],
                    moved_from=moved_from,
                )
                session.add(appointment)
                try:
                    await session.flush()
                except IntegrityError:
                    await session.rollback()
                    continue  # this seat was taken a moment ago; try the next one
                reminders = await self._add_reminders(session, appointment, now=now)
                audit(
                    session,
                    actor="client",
                    action="appointment_booked",
                    conversation_id=conversation_id,
                    detail=f"{service.organisation} {service.id}",
                )
                await session.commit()
                await self._schedule(reminders)
                return appointment
        raise SlotTaken(slot.key)

    async def _add_reminders(
        self, session: AsyncSession, appointment: Appointment, *, now: datetime
    ) -> list[Reminder]:
        """Reminder rows for the default lead times, only with the client's reminder consent."""
        allowed = await self.consent.may(
            session, client_id=appointment.client_id, request=ConsentRequest(scope="reminders")
        )
        if not allowed:
            return []
        reminders = []
        for lead in REMINDER_LEADS:
            due = as_utc(appointment.starts_at) - timedelta(minutes=lead)
            if due <= now:
                continue
            reminder = Reminder(appointment_id=appointment.id, lead_minutes=lead, due_at=due)
            session.add(reminder)
            reminders.append(reminder)
        await session.flush()
        return reminders

    async def _schedule(self, reminders: list[Reminder]) -> None:
        """Give committed reminder rows their jobs; the job store's writes run off the event loop.

        A failure is logged, not raised: the booking is stored, and ``reconcile_reminders`` (a job every
        few minutes on the scheduler owner) gives every scheduled row without a job its job again.
        """
        if self.scheduler is None:
            if reminders:
                log.warning("no scheduler: %d reminders stored but not scheduled", len(reminders))
            return
        specs = [(r.id, as_utc(r.due_at), r.lead_minutes) for r in reminders]
        if not specs:
            return
        try:
            await asyncio.to_thread(self._add_jobs, specs)
        except Exception:
            log.exception("could not schedule reminders %s; the reconcile job retries", [s[0] for s in specs])

    def _add_jobs(self, specs: list[tuple[int, datetime, int]]) -> None:
        for reminder_id, due_at, lead_minutes in specs:
            self.scheduler.add_job(
                "bot.jobs:send_reminder",
                "date",
                run_date=due_at,
                id=f"reminder-{reminder_id}",
                replace_existing=True,
                coalesce=True,
                misfire_grace_time=misfire_grace(lead_minutes),
                kwargs={"reminder_id": reminder_id},
            )

    async def _unschedule(self, reminder_ids: list[int]) -> None:
        """Remove the jobs of cancelled reminders (a job left behind finds its row cancelled and stops)."""
        if self.scheduler is None or not reminder_ids:
            return
        try:
            await asyncio.to_thread(self._remove_jobs, reminder_ids)
        except Exception:
            log.exception("could not remove the jobs of reminders %s", reminder_ids)

    def _remove_jobs(self, reminder_ids: list[int]) -> None:
        for reminder_id in reminder_ids:
            try:
                self.scheduler.remove_job(f"reminder-{reminder_id}")
            except Exception:  # JobLookupError: already sent or never scheduled
                log.debug("reminder %s had no job", reminder_id)

    async def reconcile_reminders(self, *, now: datetime | None = None) -> int:
        """Give every scheduled reminder row without a job its job again; return how many.

        One overdue beyond its grace time is then reported missed by the scheduler, like any other."""
        if self.scheduler is None:
            return 0
        now = now or datetime.now(UTC)
        async with self.database.unit_of_work() as session:
            rows = list(
                await session.scalars(
                    select(Reminder).where(
                        Reminder.status == "scheduled", Reminder.due_at > now - timedelta(days=1)
                    )
                )
            )
        known = await asyncio.to_thread(lambda: {job.id for job in self.scheduler.get_jobs()})
        orphans = [r for r in rows if f"reminder-{r.id}" not in known]
        if orphans:
            log.warning("reminders without a job: %s; scheduling them", [r.id for r in orphans])
            await self._schedule(orphans)
        return len(orphans)

    async def upcoming(self, client_id: str, *, now: datetime | None = None) -> list[Appointment]:
        """The client's booked appointments that have not started yet."""
        now = now or datetime.now(UTC)
        async with self.database.unit_of_work() as session:
            return list(
                await session.scalars(
                    select(Appointment)
                    .where(
                        Appointment.client_id == client_id,
                        Appointment.status == "booked",
                        Appointment.starts_at > now,
                    )
                    .order_by(Appointment.starts_at)
                )
            )

    async def cancel(self, client_id: str, appointment_id: str) -> tuple[str, Appointment | None]:
        """Cancel: ("cancelled" | "already" | "unknown", the appointment); its reminders go too."""
        async with self.database.unit_of_work() as session:
            appointment = await session.get(Appointment, appointment_id)
            if appointment is None or appointment.client_id != client_id:
                return "unknown", None
            if appointment.status != "booked":
                return "already", appointment
            appointment.status, appointment.cancelled_at = "cancelled", utcnow()
            reminder_ids = await self._cancel_reminders(session, appointment.id)
            audit(
                session,
                actor="client",
                action="appointment_cancelled",
                conversation_id=appointment.conversation_id,
                detail=appointment.organisation,
            )
            await session.commit()
        await self._unschedule(reminder_ids)
        return "cancelled", appointment

    async def move(self, client_id: str, appointment_id: str, slot: Slot) -> Appointment:
        """Book the new slot, then cancel the old appointment (its reminders move with it)."""
        async with self.database.unit_of_work() as session:
            old = await session.get(Appointment, appointment_id)
            if old is None or old.client_id != client_id or old.status != "booked":
                raise BookingError("no such booked appointment")
            details = (old.conversation_id, old.channel, old.language, old.topic, old.town, old.age_group)
            reason, contact = old.reason, old.contact
        conversation_id, channel, language, topic, town, age_group = details
        new = await self.book(
            client_id=client_id,
            conversation_id=conversation_id,
            channel=channel,
            slot=slot,
            language=language,
            topic=topic,
            town=town,
            age_group=age_group,
            reason=reason,
            contact=contact,
            moved_from=appointment_id,
        )
        await self.cancel(client_id, appointment_id)
        return new

    async def _cancel_reminders(self, session: AsyncSession, appointment_id: str) -> list[int]:
        reminders = list(
            await session.scalars(
                select(Reminder).where(
                    Reminder.appointment_id == appointment_id, Reminder.status == "scheduled"
                )
            )
        )
        for reminder in reminders:
            reminder.status = "cancelled"
        return [r.id for r in reminders]

    # ---- reminders ----------------------------------------------------------------------------------

    async def send_reminder(self, reminder_id: int, *, now: datetime | None = None) -> str:
        """Send one due reminder on the client's channel in their language; return what happened."""
        now = now or datetime.now(UTC)
        async with self.database.unit_of_work() as session:
            reminder = await session.get(Reminder, reminder_id)
            if reminder is None:
                return "gone"
            if reminder.status != "scheduled":
                return reminder.status
            appointment = await session.get_one(Appointment, reminder.appointment_id)
            if appointment.status != "booked":
                reminder.status = "cancelled"
                await session.commit()
                return "cancelled"
            if not await self.consent.may(
                session, client_id=appointment.client_id, request=ConsentRequest(scope="reminders")
            ):
                reminder.status, reminder.detail = "cancelled", "reminder consent withdrawn"
                await session.commit()
                return "cancelled"
            conversation = await self._conversation(session, appointment)
            message = await self.reminder_message(appointment)
            reminder.status, reminder.sent_at = "sent", now
            late = (now - as_utc(reminder.due_at)).total_seconds()
            reminder.detail = f"late {late:.1f}s" if late > 1 else ""
            if conversation is not None:
                self.outbox.store(session, conversation=conversation, message=message, author="system")
            await session.commit()
            if conversation is not None:
                await self.outbox.push(session, conversation=conversation, message=message)
        return "sent"

    async def mark_missed(self, reminder_id: int, detail: str) -> None:
        """Record that a reminder was not sent because the app was down too long."""
        async with self.database.unit_of_work() as session:
            reminder = await session.get(Reminder, reminder_id)
            if reminder is not None and reminder.status == "scheduled":
                reminder.status, reminder.detail = "missed", detail[:200]
                await session.commit()
        log.warning("reminder %s missed: %s", reminder_id, detail)

    async def _conversation(self, session: AsyncSession, appointment: Appointment) -> Conversation | None:
        """The client's newest conversation on the channel the appointment was booked on."""
        return await session.scalar(
            select(Conversation)
            .where(
                Conversation.client_id == appointment.client_id, Conversation.channel == appointment.channel
            )
            .order_by(Conversation.updated_at.desc())
            .limit(1)
        )

    # ---- texts and files ----------------------------------------------------------------------------

    def describe(self, appointment: Appointment) -> dict[str, str]:
        """Placeholders describing an appointment (local date and time, organisation, place)."""
        service = self.directory.services.get(appointment.service_id)
        location = (
            next((loc for loc in service.locations if loc.id == appointment.location_id), None)
            if service
            else None
        )
        local = as_utc(appointment.starts_at).astimezone(self.directory.timezone)
        place = location.name if location else appointment.location_id
        if location is not None and location.address:
            place = f"{place}, {location.address}"
        return {
            "organisation": self.directory.organisations.get(
                appointment.organisation, appointment.organisation
            ),
            "service": service.name if service else appointment.service_id,
            "date": local.strftime("%d.%m.%Y"),
            "time": local.strftime("%H:%M"),
            "place": place,
        }

    async def reminder_message(self, appointment: Appointment) -> OutboundMessage:
        """The reminder in the appointment's language."""
        return await self.texts.message(
            "booking.reminder",
            appointment.language,
            params=self.describe(appointment),
            buttons=[("button.appointments", "/appointments")],
        )

    def ics_token(self, appointment_id: str) -> str:
        """The secret that makes an appointment's .ics link work."""
        return hmac.new(self.secret, f"appointment:{appointment_id}".encode(), hashlib.sha256).hexdigest()[
            :32
        ]

    def ics_url(self, appointment_id: str) -> str:
        """The download link of an appointment's .ics file."""
        return f"{self.public_url}/appointments/{appointment_id}.ics?token={self.ics_token(appointment_id)}"

    def ics(self, appointments: list[Appointment], *, name: str = "Lotse") -> str:
        """An iCalendar document (RFC 5545) with the appointments; cancelled ones as CANCELLED."""
        from icalendar import Calendar, Event

        calendar = Calendar()
        calendar.add("prodid", "-//Lotse Kreis Paderborn//Termine//DE")
        calendar.add("version", "2.0")
        calendar.add("x-wr-calname", name)
        for appointment in appointments:
            info = self.describe(appointment)
            event = Event()
            event.add("uid", f"{appointment.id}@lotse")
            event.add("dtstamp", as_utc(appointment.created_at))
            event.add("dtstart", as_utc(appointment.starts_at))
            event.add("dtend", as_utc(appointment.ends_at))
            event.add("summary", f"{info['service']} – {info['organisation']}")
            event.add("location", info["place"])
            event.add("status", "CANCELLED" if appointment.status == "cancelled" else "CONFIRMED")
            calendar.add_component(event)
        return str(calendar.to_ical().decode("utf-8"))
