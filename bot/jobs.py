"""Scheduled jobs: module-level functions with primitive arguments (they are stored by reference)."""

from __future__ import annotations

import asyncio
import logging

from bot.privacy import TrackerEraser, audit, erase, expired_clients
from bot.storage.database import Database

log = logging.getLogger(__name__)


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
