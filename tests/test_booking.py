"""BookingService on a real database: slots, no double booking (also 20 at once on PostgreSQL), cancel,
move, .ics, and reminders in the persistent job store across a restart, sent late or recorded as missed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from icalendar import Calendar
from sqlalchemy import create_engine, select, text

from bot.booking import MIN_NOTICE, BookingError, Slot, SlotTaken, misfire_grace
from bot.bootstrap import Services, bootstrap
from bot.language import LanguageDetector
from bot.scheduler import build_scheduler
from bot.storage.models import Appointment, Message, Reminder
from tests.auxil.clients import new_client
from tests.conftest import make_settings

SERVICE = "caritas-bueren-mbe"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
async def services(tmp_path: Path, detector: LanguageDetector) -> AsyncIterator[Services]:
    built = bootstrap(make_settings(tmp_path), detector=detector)
    yield built
    await built.close()


def organisation(services: Services) -> str:
    return services.directory.services[SERVICE].organisation


async def book(services: Services, client: tuple[str, str], slot: Slot) -> Appointment:
    return await services.booking.book(
        client_id=client[0],
        conversation_id=client[1],
        channel="rest",
        slot=slot,
        language="uk",
        topic="counselling",
    )


async def test_free_slots_lie_in_opening_hours_after_the_notice(services: Services) -> None:
    now = datetime.now(UTC)
    slots = await services.booking.free_slots(SERVICE, limit=6)
    assert len(slots) == 6
    assert all(s.starts_at >= now + MIN_NOTICE for s in slots)
    assert [s.starts_at for s in slots] == sorted(s.starts_at for s in slots)
    later = await services.booking.free_slots(SERVICE, after=slots[-1].starts_at, limit=2)
    assert later and later[0].starts_at > slots[-1].starts_at
    assert Slot.parse(slots[0].key) == slots[0]


async def test_booking_needs_consent_and_a_taken_seat_is_not_booked_twice(services: Services) -> None:
    slot = (await services.booking.free_slots(SERVICE, limit=1))[0]
    without = await new_client(services)
    with pytest.raises(BookingError, match="consent"):
        await book(services, without, slot)
    capacity = services.directory.services[SERVICE].capacity
    clients = [
        await new_client(services, scopes=(("booking", organisation(services)),)) for _ in range(capacity + 1)
    ]
    booked = [await book(services, c, slot) for c in clients[:capacity]]
    assert sorted(a.seat for a in booked) == list(range(capacity))
    with pytest.raises(SlotTaken):
        await book(services, clients[-1], slot)
    assert slot not in await services.booking.free_slots(SERVICE, limit=50)


async def test_past_or_invented_slots_are_refused(services: Services) -> None:
    client = await new_client(services, scopes=(("booking", organisation(services)),))
    real = (await services.booking.free_slots(SERVICE, limit=1))[0]
    past = Slot(
        service_id=SERVICE, location_id=real.location_id, starts_at=datetime.now(UTC) - timedelta(days=1)
    )
    with pytest.raises(BookingError, match="past"):
        await book(services, client, past)
    odd = Slot(
        service_id=SERVICE, location_id=real.location_id, starts_at=real.starts_at + timedelta(minutes=7)
    )
    with pytest.raises(BookingError, match="opening hours"):
        await book(services, client, odd)
    with pytest.raises(BookingError):
        Slot.parse("not|a-slot")


async def test_cancel_twice_move_and_ics(services: Services) -> None:
    client = await new_client(services, scopes=(("booking", organisation(services)), ("reminders", "")))
    first, second = await services.booking.free_slots(SERVICE, limit=2)
    appointment = await book(services, client, first)
    async with services.database.unit_of_work() as session:
        reminders = list(
            await session.scalars(select(Reminder).where(Reminder.appointment_id == appointment.id))
        )
    assert {r.lead_minutes for r in reminders} <= {24 * 60, 2 * 60} and reminders
    moved = await services.booking.move(client[0], appointment.id, second)
    assert moved.moved_from == appointment.id and moved.starts_at == second.starts_at
    result, old = await services.booking.cancel(client[0], appointment.id)
    assert result == "already" and old is not None and old.status == "cancelled"
    async with services.database.unit_of_work() as session:
        statuses = set(
            await session.scalars(select(Reminder.status).where(Reminder.appointment_id == appointment.id))
        )
    assert statuses == {"cancelled"}
    assert (await services.booking.cancel(client[0], moved.id))[0] == "cancelled"
    assert (await services.booking.cancel(client[0], moved.id))[0] == "already"
    other = await new_client(services)
    assert (await services.booking.cancel(other[0], moved.id))[0] == "unknown"
    async with services.database.unit_of_work() as session:
        stored = [await session.get_one(Appointment, i) for i in (moved.id, appointment.id)]
    calendar = Calendar.from_ical(services.booking.ics(stored))
    events = list(calendar.walk("VEVENT"))
    assert len(events) == 2 and {str(e["status"]) for e in events} == {"CANCELLED"}
    assert events[0].decoded("dtstart") == second.starts_at
    assert services.booking.ics_token(moved.id) != services.booking.ics_token(appointment.id)


async def test_no_reminders_without_the_reminder_consent(services: Services) -> None:
    client = await new_client(services, scopes=(("booking", organisation(services)),))
    slot = (await services.booking.free_slots(SERVICE, limit=1, after=datetime.now(UTC) + timedelta(days=3)))[
        0
    ]
    appointment = await book(services, client, slot)
    async with services.database.unit_of_work() as session:
        assert not list(
            await session.scalars(select(Reminder).where(Reminder.appointment_id == appointment.id))
        )


async def test_a_reminder_survives_a_restart_and_a_missed_one_is_recorded(services: Services) -> None:
    """Scheduled before a restart, sent after it (late, within the grace time); beyond the grace: missed."""
    client = await new_client(services, scopes=(("booking", organisation(services)), ("reminders", "")))
    slot = (await services.booking.free_slots(SERVICE, limit=1, after=datetime.now(UTC) + timedelta(days=3)))[
        0
    ]
    appointment = await book(services, client, slot)  # no scheduler yet: rows only
    async with services.database.unit_of_work() as session:
        reminders = list(
            await session.scalars(select(Reminder).where(Reminder.appointment_id == appointment.id))
        )
        late, missed = reminders[0], reminders[1]
        now = datetime.now(UTC)
        # pretend the app was down: one reminder is due 2 s from now, the other was due beyond its grace time
        late.due_at = now + timedelta(seconds=2)
        missed.due_at = now - timedelta(seconds=misfire_grace(missed.lead_minutes) + 60)
        await session.commit()
        late_id, missed_id = late.id, missed.id

    from bot import jobs

    jobs.bind(booking=services.booking)
    first = build_scheduler(services.settings)
    first.start(paused=True)
    services.booking.scheduler = first
    async with services.database.unit_of_work() as session:
        await services.booking._schedule(
            list(await session.scalars(select(Reminder).where(Reminder.id.in_([late_id, missed_id]))))
        )
    first.shutdown(wait=False)  # the app stops before anything fires

    from apscheduler.events import EVENT_JOB_MISSED

    second = build_scheduler(services.settings)
    missed_events: list[str] = []
    second.add_listener(lambda event: missed_events.append(event.job_id), EVENT_JOB_MISSED)
    services.booking.scheduler = second
    second.start()
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while asyncio.get_running_loop().time() < deadline:
            async with services.database.unit_of_work() as session:
                sent = await session.get_one(Reminder, late_id)
                if sent.status == "sent":
                    break
            await asyncio.sleep(0.2)
    finally:
        second.shutdown(wait=False)
        services.booking.scheduler = None
    assert f"reminder-{missed_id}" in missed_events
    await services.booking.mark_missed(missed_id, "missed in test")
    async with services.database.unit_of_work() as session:
        sent = await session.get_one(Reminder, late_id)
        gone = await session.get_one(Reminder, missed_id)
        texts = list(
            await session.scalars(
                select(Message.text).where(Message.conversation_id == client[1], Message.direction == "out")
            )
        )
    assert sent.status == "sent" and sent.sent_at is not None
    assert gone.status == "missed"
    reminder_text = services.content.text("booking.reminder", "uk")
    assert reminder_text is not None and any(t.startswith(reminder_text.split("{")[0]) for t in texts)


@pytest.fixture
async def pg_services(tmp_path: Path, detector: LanguageDetector) -> AsyncIterator[Services]:
    name = f"lotse_booking_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        built = bootstrap(
            make_settings(tmp_path, LOTSE_DATABASE_URL=f"postgresql://postgres@127.0.0.1:5432/{name}"),
            detector=detector,
        )
        yield built
        await built.close()
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


async def test_twenty_clients_take_one_slot_at_once_on_postgresql(pg_services: Services) -> None:
    """Exactly as many win as the slot has seats; the others get SlotTaken and are offered the next slot."""
    services = pg_services
    slot = (await services.booking.free_slots(SERVICE, limit=1))[0]
    clients = [await new_client(services, scopes=(("booking", organisation(services)),)) for _ in range(20)]
    results = await asyncio.gather(*(book(services, c, slot) for c in clients), return_exceptions=True)
    won = [r for r in results if isinstance(r, Appointment)]
    lost = [r for r in results if isinstance(r, SlotTaken)]
    capacity = services.directory.services[SERVICE].capacity
    assert len(won) == capacity and len(lost) == 20 - capacity
    async with services.database.unit_of_work() as session:
        stored = list(
            await session.scalars(select(Appointment).where(Appointment.starts_at == slot.starts_at))
        )
    assert len(stored) == capacity
    following = await services.booking.free_slots(SERVICE, limit=1)
    assert (
        following and following[0].starts_at != slot.starts_at or following[0].location_id != slot.location_id
    )


async def test_reminder_jobs_are_written_while_the_loop_holds_the_sqlite_write_lock(
    services: Services,
) -> None:
    """The job store writes off the event loop: an open transaction of the app on the same SQLite file
    no longer blocks them both until "database is locked" (make bench lost reminders that way)."""
    from bot.privacy import audit

    client = await new_client(services, scopes=(("booking", organisation(services)), ("reminders", "")))
    after = datetime.now(UTC) + timedelta(days=3)
    slot = (await services.booking.free_slots(SERVICE, limit=1, after=after))[0]
    appointment = await book(services, client, slot)  # no scheduler yet: rows only
    scheduler = build_scheduler(services.settings)
    scheduler.start(paused=True)
    services.booking.scheduler = scheduler
    try:
        async with services.database.unit_of_work() as session:
            reminders = list(
                await session.scalars(select(Reminder).where(Reminder.appointment_id == appointment.id))
            )
        async with services.database.unit_of_work() as session:
            audit(session, actor="test", action="holds the write lock")
            await session.flush()  # this transaction now holds SQLite's write lock
            writing = asyncio.create_task(services.booking._schedule(reminders))
            await asyncio.sleep(0.5)  # the loop keeps running while the job store waits for the lock
            assert not writing.done()
            await session.commit()
        await asyncio.wait_for(writing, timeout=30)
        jobs = await asyncio.to_thread(lambda: {job.id for job in scheduler.get_jobs()})
        assert {f"reminder-{r.id}" for r in reminders} <= jobs
    finally:
        scheduler.shutdown(wait=False)
        services.booking.scheduler = None


async def test_reconcile_gives_reminders_without_a_job_their_job(services: Services) -> None:
    client = await new_client(services, scopes=(("booking", organisation(services)), ("reminders", "")))
    after = datetime.now(UTC) + timedelta(days=3)
    slot = (await services.booking.free_slots(SERVICE, limit=1, after=after))[0]
    appointment = await book(services, client, slot)  # no scheduler: rows without jobs, as after a failure
    scheduler = build_scheduler(services.settings)
    scheduler.start(paused=True)
    services.booking.scheduler = scheduler
    try:
        assert await services.booking.reconcile_reminders() == 2
        jobs = await asyncio.to_thread(lambda: {job.id for job in scheduler.get_jobs()})
        async with services.database.unit_of_work() as session:
            query = select(Reminder.id).where(Reminder.appointment_id == appointment.id)
            ids = list(await session.scalars(query))
        assert {f"reminder-{i}" for i in ids} <= jobs
        assert await services.booking.reconcile_reminders() == 0, "nothing twice"
    finally:
        scheduler.shutdown(wait=False)
        services.booking.scheduler = None
