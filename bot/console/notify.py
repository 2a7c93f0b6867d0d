"""Tells an organisation's adviser group chat on Telegram about a new ticket, without any client content."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy import func, select

from bot.console.labels import LANGUAGE_NAMES, TOPICS, label
from bot.storage.database import Database
from bot.storage.models import Ticket, as_utc, utcnow

log = logging.getLogger(__name__)

Sender = Callable[[str, str], Awaitable[object]]
"""Sends a text to a Telegram chat id."""

SEND_TIMEOUT = 15.0


def notification_text(
    *, ticket_id: int, language: str, topic: str | None, waiting: int, oldest_minutes: int, link: str
) -> str:
    """The group-chat message: ticket number, language, topic, queue state, console link."""
    return (
        f"Neues Ticket #{ticket_id}, Sprache: {label(LANGUAGE_NAMES, language)}, "
        f"Thema: {label(TOPICS, topic)}.\n"
        f"Wartend: {waiting}, längste Wartezeit {oldest_minutes} Min.\n{link}"
    )


class TicketNotifier:
    """Called by HandoffService after a ticket was opened; sends in the background so the client waits not."""

    def __init__(self, *, database: Database, chats: dict[str, str], send: Sender, public_url: str) -> None:
        self.database = database
        self.chats = chats
        self.send = send
        self.public_url = public_url.rstrip("/")
        self._tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, ticket: Ticket) -> None:
        """Schedule the notification of a new ticket (nothing when the organisation has no chat)."""
        chat = self.chats.get(ticket.organisation)
        if chat is None:
            return
        task = asyncio.create_task(self.notify(chat, ticket.id, ticket.organisation))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def notify(self, chat: str, ticket_id: int, organisation: str) -> None:
        """Send the message now; failures are logged, never raised to the client's turn."""
        try:
            async with self.database.unit_of_work() as session:
                ticket = await session.get(Ticket, ticket_id)
                waiting, oldest = (
                    await session.execute(
                        select(func.count(Ticket.id), func.min(Ticket.created_at)).where(
                            Ticket.organisation == organisation, Ticket.status == "waiting"
                        )
                    )
                ).one()
            if ticket is None:
                return
            text = notification_text(
                ticket_id=ticket_id,
                language=ticket.language,
                topic=ticket.topic,
                waiting=int(waiting or 0),
                oldest_minutes=_minutes_since(oldest),
                link=f"{self.public_url}/console/tickets/{ticket_id}",
            )
            await asyncio.wait_for(self.send(chat, text), timeout=SEND_TIMEOUT)
        except Exception:  # a notification is a courtesy: log it, keep the queue going
            log.exception("could not notify %s about ticket %s", organisation, ticket_id)

    async def drain(self) -> None:
        """Wait for notifications still being sent (tests, shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _minutes_since(moment: datetime | None) -> int:
    if moment is None:
        return 0
    return max(0, int((utcnow() - as_utc(moment)).total_seconds() // 60))
