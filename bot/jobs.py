"""Scheduled jobs: module-level functions with primitive arguments (they are stored by reference).

They run in the scheduler's worker threads (bot.scheduler) and hand their work to the app's event loop,
where the app's services live, waiting for the result."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from bot.privacy import TrackerEraser, audit, erase, expired_clients
from bot.storage.database import Database

log = logging.getLogger(__name__)
T = TypeVar("T")
JOB_TIMEOUT = 300.0
"""A job waits at most this long for its work on the loop."""

_runtime: dict[str, Any] = {}
"""Services of the running app, bound at start-up: reminder jobs need its channels (stored jobs hold
only primitive arguments)."""


def bind(**services: Any) -> None:
    """Make the running app's services and its event loop available to jobs (called at start-up)."""
    _runtime.update(services)
    with contextlib.suppress(RuntimeError):  # bound outside a loop: jobs run on a loop of their own
        _runtime["loop"] = asyncio.get_running_loop()


def _on_loop(work: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on the app's loop from a scheduler thread; its own loop when none is bound."""
    loop = _runtime.get("loop")
    if loop is None or loop.is_closed():
        return asyncio.run(work)
    return asyncio.run_coroutine_threadsafe(work, loop).result(JOB_TIMEOUT)


def send_reminder(*, reminder_id: int) -> str:
    """Send one appointment reminder (a stored job; see bot.booking for the misfire rule)."""
    return _on_loop(_send_reminder(reminder_id))


async def _send_reminder(reminder_id: int) -> str:
    booking = _runtime.get("booking")
    if booking is None:
        raise RuntimeError("reminder job ran outside the app: no booking service bound")
    result: str = await booking.send_reminder(reminder_id)
    log.info("reminder %s: %s", reminder_id, result)
    return result


def reconcile_reminders() -> int:
    """Give stored reminders whose job is missing (a failed write, an old backup) their job again."""
    return _on_loop(_reconcile())


async def _reconcile() -> int:
    booking = _runtime.get("booking")
    if booking is None:
        raise RuntimeError("reconcile job ran outside the app: no booking service bound")
    restored: int = await booking.reconcile_reminders()
    return restored


def purge_expired(*, database_url: str, tracker_url: str | None, days: int) -> int:
    """The retention purge as a stored job (see ``purge``)."""
    return _on_loop(purge(database_url=database_url, tracker_url=tracker_url, days=days))


async def purge(*, database_url: str, tracker_url: str | None, days: int) -> int:
    """Erase every client without an active consent whose last message is older than ``days``."""
    database = Database(database_url)
    erased_conversations: list[str] = []
    try:
        async with database.unit_of_work() as session:
            clients = await expired_clients(session, days=days)
            for client_id in clients:
                erased_conversations += await erase(session, client_id)
            if clients:
                audit(
                    session,
                    actor="system:retention",
                    action="purged",
                    detail=f"{len(clients)} clients, {len(erased_conversations)} conversations",
                )
            await session.commit()
    finally:
        await database.dispose()
    await asyncio.to_thread(TrackerEraser(tracker_url).erase, erased_conversations)
    log.info("retention purge: %d clients older than %d days without consent", len(clients), days)
    return len(clients)
