"""Data functions for clients, identities, conversations and messages (the caller commits)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, insert, null, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from bot.storage.models import ChannelIdentity, Client, Conversation, Message, new_id, utcnow


async def find_or_create(
    session: AsyncSession, *, channel: str, external_id: str
) -> tuple[Client, Conversation, bool]:
    """``find_or_create_sync`` in an async session."""
    return await session.run_sync(find_or_create_sync, channel=channel, external_id=external_id)


def add_message(
    session: AsyncSession,
    *,
    conversation: Conversation,
    direction: str,
    author: str,
    text: str,
    language: str | None,
    kind: str = "text",
    content_key: str | None = None,
    machine_translated: bool = False,
    payload: dict[str, Any] | None = None,
) -> Message:
    """Add a message row to the session."""
    message = Message(
        conversation_id=conversation.id,
        direction=direction,
        author=author,
        kind=kind,
        text=text,
        language=language,
        content_key=content_key,
        machine_translated=machine_translated,
        payload=payload,
    )
    session.add(message)
    conversation.updated_at = utcnow()
    return message


# The router's hot path (two units of work per client message) runs these statements. They are built
# once with bound parameters: building a statement costs more than running it from SQLAlchemy's
# compiled cache (py-spy and cProfile, issue 8: building and the ORM's bookkeeping were most of a unit).
_LOCATE = (
    select(
        Client.id.label("client_id"),
        Client.language,
        Client.language_source,
        Conversation.id.label("conversation_id"),
        Conversation.status,
        Conversation.pending,
    )
    .select_from(ChannelIdentity)
    .join(Client, Client.id == ChannelIdentity.client_id)
    .outerjoin(
        Conversation,
        and_(
            Conversation.client_id == Client.id,
            Conversation.channel == bindparam("channel"),
            Conversation.status != "closed",
        ),
    )
    .where(
        ChannelIdentity.channel == bindparam("channel"),
        ChannelIdentity.external_id == bindparam("external_id"),
    )
    .order_by(Conversation.created_at.desc())
    .limit(1)
)
_CLIENTS, _CONVERSATIONS, _MESSAGES = (cast(Table, m.__table__) for m in (Client, Conversation, Message))
_SET_LANGUAGE = (
    update(_CLIENTS)
    .where(_CLIENTS.c.id == bindparam("client"))
    .values(language=bindparam("language"), language_source=bindparam("source"), updated_at=bindparam("now"))
)
_TOUCH = (
    update(_CONVERSATIONS)
    .where(_CONVERSATIONS.c.id == bindparam("conversation"))
    .values(updated_at=bindparam("now"))
    .returning(_CONVERSATIONS.c.status)
)
_INSERT_CLIENT = insert(_CLIENTS)
_INSERT_IDENTITY = insert(cast(Table, ChannelIdentity.__table__))
_INSERT_CONVERSATION = insert(_CONVERSATIONS)
_INSERT_MESSAGE = _MESSAGES.insert().returning(_MESSAGES.c.id, sort_by_parameter_order=True)
_MESSAGE_DEFAULTS: dict[str, Any] = {
    "kind": "text",
    "text": "",
    "language": None,
    "content_key": None,
    "machine_translated": False,
    "intent": None,
    "payload": None,
}


@dataclass(frozen=True, kw_only=True)
class Located:
    """The client and open conversation behind a channel identity, as plain values."""

    client_id: str
    language: str | None
    language_source: str
    conversation_id: str
    status: str
    pending: dict[str, Any] | None
    new: bool
    """The client was created just now."""


def locate_sync(session: Session, *, channel: str, external_id: str) -> Located:
    """``find_or_create_sync`` for the hot path, in plain statements: one SELECT for a known client
    with an open conversation; INSERTs of what is missing (a new client is one in eight turns or so)."""
    row = session.execute(_LOCATE, {"channel": channel, "external_id": external_id}).first()
    now = utcnow()
    if row is None:
        client_id = new_id()
        session.execute(_INSERT_CLIENT, {"id": client_id, "created_at": now, "updated_at": now})
        session.execute(
            _INSERT_IDENTITY,
            {"client_id": client_id, "channel": channel, "external_id": external_id, "created_at": now},
        )
        language, source, new = None, "none", True
    else:
        if row.conversation_id is not None:
            return Located(
                client_id=row.client_id,
                language=row.language,
                language_source=row.language_source,
                conversation_id=row.conversation_id,
                status=row.status,
                pending=row.pending,
                new=False,
            )
        client_id, language, source, new = row.client_id, row.language, row.language_source, False
    conversation_id = new_id()
    session.execute(
        _INSERT_CONVERSATION,
        {
            "id": conversation_id,
            "client_id": client_id,
            "channel": channel,
            "created_at": now,
            "updated_at": now,
        },
    )
    return Located(
        client_id=client_id,
        language=language,
        language_source=source,
        conversation_id=conversation_id,
        status="bot",
        pending=None,
        new=new,
    )


def find_or_create_sync(
    session: Session, *, channel: str, external_id: str
) -> tuple[Client, Conversation, bool]:
    """``locate_sync`` as ORM objects in the session; True when the client is new."""
    located = locate_sync(session, channel=channel, external_id=external_id)
    client = session.get(Client, located.client_id)
    conversation = session.get(Conversation, located.conversation_id)
    assert client is not None and conversation is not None  # found or inserted just now
    return client, conversation, located.new


def set_language(session: Session, client_id: str, language: str, source: str) -> None:
    """Record the client's language and where it came from."""
    session.execute(
        _SET_LANGUAGE, {"client": client_id, "language": language, "source": source, "now": utcnow()}
    )


def insert_messages(session: Session, conversation_id: str, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert message rows (``add_message``'s fields) in one statement; their ids in order.

    For the router's hot path: no ORM objects to track (the unit of work's flushes were about 40 % of
    the app's CPU per turn, measured with py-spy), one prepared INSERT ... RETURNING.
    """
    if not rows:
        return []
    now = utcnow()
    values = []
    for row in rows:
        value = {**_MESSAGE_DEFAULTS, "created_at": now, **row, "conversation_id": conversation_id}
        if value["payload"] is None:
            value["payload"] = null()  # SQL NULL, as for an ORM row without payload (JSON's None is 'null')
        values.append(value)
    return list(session.scalars(_INSERT_MESSAGE, values))


def touch_conversation(session: Session, conversation_id: str) -> str | None:
    """Mark a conversation as just active; its status, or None when it no longer exists."""
    status: str | None = session.execute(
        _TOUCH, {"conversation": conversation_id, "now": utcnow()}
    ).scalar_one_or_none()
    return status


async def history(session: AsyncSession, conversation_id: str) -> list[Message]:
    """A conversation's messages in order."""
    rows = await session.scalars(
        select(Message).where(Message.conversation_id == conversation_id).order_by(Message.id)
    )
    return list(rows)
