"""Scheduled jobs: module-level functions with primitive arguments (they are stored by reference)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from bot.privacy import TrackerEraser, audit, erase, expired_clients
from bot.storage.database import Database

log = logging.getLogger(__name__)

_runtime: dict[str, Any] = {}
"""Services of the running app, bound at start-up: reminder jobs need its channels (stored jobs hold
only primitive arguments)."""


def bind(**services: Any) -> None:
    """Make the running app's services available to jobs (called by the app at start-up)."""
    _runtime.update(services)


async def send_reminder(*, reminder_id: int) -> str:
    """Send one appointment reminder (a stored job; see bot.booking for the misfire rule)."""
    booking = _runtime.get("booking")
    if booking is None:
        raise RuntimeError("reminder job ran outside the app: no booking service bound")
    result: str = await booking.send_reminder(reminder_id)
    log.info("reminder %s: %s", reminder_id, result)
    return result


async def purge_expired(*, database_url: str, tracker_url: str | None, days: int) -> int:
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
