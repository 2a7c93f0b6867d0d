"""Messages the client did not just ask for (an adviser's reply, a reminder, a referral question) sent on
the channel the client used. A channel that cannot push (REST) keeps them for the client's next message."""

from __future__ import annotations

import logging

from sqlalchemy import bindparam, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from bot.channels.base import OutboundMessage, OutputChannel
from bot.conversations import add_message
from bot.storage.models import ChannelIdentity, Conversation, Message

log = logging.getLogger(__name__)

UNDELIVERED = "undelivered"
OUTBOX_AUTHORS = ("adviser", "system")
"""Who writes through the outbox (adviser replies, reminders, hand-back and rating questions)."""


class Outbox:
    """Pushes stored messages to a client's channel; remembers what could not be pushed."""

    def __init__(self) -> None:
        self._senders: dict[str, OutputChannel] = {}

    def register(self, channel: str, sender: OutputChannel) -> None:
        """Let messages on ``channel`` be pushed through ``sender``."""
        self._senders[channel] = sender

    def can_push(self, channel: str) -> bool:
        """Whether messages on this channel reach the client without the client writing first."""
        return channel in self._senders

    def store(
        self,
        session: AsyncSession,
        *,
        conversation: Conversation,
        message: OutboundMessage,
        author: str,
        payload: dict[str, object] | None = None,
    ) -> Message:
        """Add the message to the conversation (the caller commits, then calls ``push``)."""
        if author not in OUTBOX_AUTHORS:
            raise ValueError(f"the outbox stores messages of {OUTBOX_AUTHORS}, not {author!r}")
        data = dict(payload or {})
        if message.buttons:
            data["buttons"] = [{"title": b.title, "payload": b.payload} for b in message.buttons]
        if message.reference is not None and "original" not in data:
            data["original"] = message.reference
        if not self.can_push(conversation.channel):
            data[UNDELIVERED] = True
        return add_message(
            session,
            conversation=conversation,
            direction="out",
            author=author,
            text=message.text,
            language=message.language,
            content_key=message.content_key,
            machine_translated=message.machine_translated,
            payload=data or None,
        )

    async def push(
        self, session: AsyncSession, *, conversation: Conversation, message: OutboundMessage
    ) -> bool:
        """Send to the client's channel now; False when the channel cannot push or the send failed."""
        sender = self._senders.get(conversation.channel)
        if sender is None:
            return False
        external_id = await session.scalar(
            select(ChannelIdentity.external_id).where(
                ChannelIdentity.client_id == conversation.client_id,
                ChannelIdentity.channel == conversation.channel,
            )
        )
        if external_id is None:
            return False
        try:
            await sender.send(external_id, message)
        except Exception:
            log.exception("could not push a message on %s; it stays in the history", conversation.channel)
            return False
        return True


_WAITING = (
    select(Message.id, Message.payload)
    .where(
        Message.conversation_id == bindparam("conversation"),
        Message.direction == "out",
        # only the outbox stores for channels that cannot push, and never as the bot's turn reply
        or_(*(Message.author == author for author in OUTBOX_AUTHORS)),  # no IN list to expand per call
    )
    .order_by(Message.id.desc())
    .limit(50)
)


def take_undelivered_sync(session: Session, conversation_id: str) -> list[Message]:
    """Stored messages not yet seen by a client on a channel that cannot push; marks them delivered."""
    # Plain rows first (called on every REST message, and there is seldom anything waiting).
    ids = [
        row.id
        for row in session.execute(_WAITING, {"conversation": conversation_id})
        if isinstance(row.payload, dict) and row.payload.get(UNDELIVERED)
    ]
    if not ids:
        return []
    waiting = list(session.scalars(select(Message).where(Message.id.in_(ids)).order_by(Message.id)))
    for message in waiting:
        message.payload = {k: v for k, v in (message.payload or {}).items() if k != UNDELIVERED}
    return waiting
