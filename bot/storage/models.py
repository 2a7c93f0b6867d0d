"""Typed SQLAlchemy models: clients, their channel identities, conversations, messages."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import (
    text as sql_text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    """Now, timezone-aware in UTC."""
    return datetime.now(UTC)


def as_utc(stamp: datetime) -> datetime:
    """A stored timestamp as timezone-aware UTC (SQLite hands back naive datetimes)."""
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def new_id() -> str:
    """A random identifier that says nothing about the client."""
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    """Declarative base of every table."""

    type_annotation_map = {datetime: DateTime(timezone=True), dict[str, Any]: JSON}


class Client(Base):
    """A person writing to Lotse, on one or more channels."""

    __tablename__ = "clients"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    language: Mapped[str | None] = mapped_column(String(2))
    language_source: Mapped[str] = mapped_column(String(16), default="none")
    under_16: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    identities: Mapped[list[ChannelIdentity]] = relationship(
        back_populates="client", cascade="all, delete-orphan"
    )
    conversations: Mapped[list[Conversation]] = relationship(
        back_populates="client", cascade="all, delete-orphan"
    )


class ChannelIdentity(Base):
    """How a client is known on one channel (a Telegram chat id, a widget session id, a REST sender)."""

    __tablename__ = "channel_identities"
    __table_args__ = (UniqueConstraint("channel", "external_id", name="uq_identity_channel_external"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    client: Mapped[Client] = relationship(back_populates="identities")


class Conversation(Base):
    """One conversation of a client on a channel; its id is also the engine's sender id."""

    __tablename__ = "conversations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="bot")
    pending: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """A question the app asked and awaits a yes/no for (consent, deletion), or None."""
    failed_turns: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    client: Mapped[Client] = relationship(back_populates="conversations")
    messages: Mapped[list[Message]] = relationship(
        back_populates="conversation", cascade="all, delete-orphan", order_by="Message.id"
    )


class Message(Base):
    """Every message in and out, stored before it is answered."""

    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_conversation_id_id", "conversation_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    direction: Mapped[str] = mapped_column(String(3))  # "in" | "out"
    author: Mapped[str] = mapped_column(String(8))  # "client" | "bot" | "adviser" | "system"
    kind: Mapped[str] = mapped_column(String(16), default="text")  # text, photo, sticker, ...
    text: Mapped[str] = mapped_column(Text, default="")
    language: Mapped[str | None] = mapped_column(String(2))
    content_key: Mapped[str | None] = mapped_column(String(96))
    machine_translated: Mapped[bool] = mapped_column(default=False)
    intent: Mapped[str | None] = mapped_column(String(48))
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    conversation: Mapped[Conversation] = relationship(back_populates="messages")


class Translation(Base):
    """Cached machine translations; ``client_id`` is set when the source text came from a client."""

    __tablename__ = "translations"
    __table_args__ = (
        UniqueConstraint(
            "provider", "source_language", "target_language", "source_hash", name="uq_translation"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(32))
    source_language: Mapped[str] = mapped_column(String(2))
    target_language: Mapped[str] = mapped_column(String(2))
    source_hash: Mapped[str] = mapped_column(String(64))
    source_text: Mapped[str] = mapped_column(Text)
    translated_text: Mapped[str] = mapped_column(Text)
    client_id: Mapped[str | None] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ConsentText(Base):
    """The exact consent text a client was shown, kept once per hash so every record stays provable."""

    __tablename__ = "consent_texts"

    text_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    text_id: Mapped[str] = mapped_column(String(64))  # e.g. "handoff-v1"
    language: Mapped[str] = mapped_column(String(2))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ConsentEvent(Base):
    """One consent given, declined or withdrawn; rows are only ever added, never changed."""

    __tablename__ = "consent_events"
    __table_args__ = (Index("ix_consent_client_scope", "client_id", "scope", "organisation"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    scope: Mapped[str] = mapped_column(String(16))  # handoff | booking | reminders | referral
    organisation: Mapped[str] = mapped_column(String(32), default="")
    target_organisation: Mapped[str] = mapped_column(String(32), default="")
    action: Mapped[str] = mapped_column(String(12))  # granted | declined | withdrawn
    version: Mapped[int] = mapped_column(Integer)
    text_id: Mapped[str] = mapped_column(String(64))
    text_hash: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(2))
    channel: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEntry(Base):
    """Who accessed or changed which conversation, without message contents."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    actor: Mapped[str] = mapped_column(String(64))  # "client", "system:retention", "adviser:<id>"
    action: Mapped[str] = mapped_column(String(32))
    conversation_id: Mapped[str | None] = mapped_column(String(32), index=True)
    client_ref: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TelegramUpdate(Base):
    """Telegram update ids already processed, so a repeated delivery is ignored."""

    __tablename__ = "telegram_updates"

    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class Appointment(Base):
    """A booked appointment with one service of one organisation; a slot seat is taken only once."""

    __tablename__ = "appointments"
    __table_args__ = (
        # No double booking: one booked appointment per service, location, start and seat. A partial index,
        # so a cancelled appointment frees its seat (PostgreSQL and SQLite both enforce it).
        Index(
            "uq_appointment_seat",
            "service_id",
            "location_id",
            "starts_at",
            "seat",
            unique=True,
            postgresql_where=sql_text("status = 'booked'"),
            sqlite_where=sql_text("status = 'booked'"),
        ),
        Index("ix_appointments_organisation_starts", "organisation", "starts_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    conversation_id: Mapped[str | None] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16))
    organisation: Mapped[str] = mapped_column(String(32))
    service_id: Mapped[str] = mapped_column(String(64))
    location_id: Mapped[str] = mapped_column(String(64))
    starts_at: Mapped[datetime] = mapped_column()
    ends_at: Mapped[datetime] = mapped_column()
    seat: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(12), default="booked")  # booked | cancelled
    language: Mapped[str] = mapped_column(String(2))
    topic: Mapped[str | None] = mapped_column(String(32))
    town: Mapped[str | None] = mapped_column(String(64))
    age_group: Mapped[str | None] = mapped_column(String(8))
    reason: Mapped[str] = mapped_column(String(200), default="")
    name: Mapped[str | None] = mapped_column(String(100))
    contact: Mapped[str | None] = mapped_column(String(120))
    moved_from: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    cancelled_at: Mapped[datetime | None] = mapped_column()

    reminders: Mapped[list[Reminder]] = relationship(
        back_populates="appointment", cascade="all, delete-orphan", order_by="Reminder.due_at"
    )


class Reminder(Base):
    """A reminder before an appointment; its job in the scheduler is ``reminder-<id>``."""

    __tablename__ = "reminders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    appointment_id: Mapped[str] = mapped_column(ForeignKey("appointments.id", ondelete="CASCADE"), index=True)
    lead_minutes: Mapped[int] = mapped_column(Integer)
    due_at: Mapped[datetime] = mapped_column()
    status: Mapped[str] = mapped_column(String(12), default="scheduled")  # scheduled|sent|missed|cancelled
    sent_at: Mapped[datetime | None] = mapped_column()
    detail: Mapped[str] = mapped_column(String(200), default="")

    appointment: Mapped[Appointment] = relationship(back_populates="reminders")


class Adviser(Base):
    """A human adviser of one organisation, who logs in to the console."""

    __tablename__ = "advisers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organisation: Mapped[str] = mapped_column(String(32), index=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AdviserSession(Base):
    """A console session; only the hash of the cookie's token is stored."""

    __tablename__ = "adviser_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    adviser_id: Mapped[int] = mapped_column(ForeignKey("advisers.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column()


class Ticket(Base):
    """A conversation handed to an organisation's advisers, after the client's consent."""

    __tablename__ = "tickets"
    __table_args__ = (Index("ix_tickets_organisation_status", "organisation", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="SET NULL"), index=True
    )
    client_id: Mapped[str | None] = mapped_column(ForeignKey("clients.id", ondelete="SET NULL"), index=True)
    organisation: Mapped[str] = mapped_column(String(32))
    service_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(12), default="waiting")  # waiting | claimed | closed
    adviser_id: Mapped[int | None] = mapped_column(ForeignKey("advisers.id", ondelete="SET NULL"))
    channel: Mapped[str] = mapped_column(String(16))
    language: Mapped[str] = mapped_column(String(2))
    topic: Mapped[str | None] = mapped_column(String(32))
    consent_scope: Mapped[str] = mapped_column(String(16), default="handoff")
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """The handover summary (topic, language, town, age group, answers given, open question)."""
    reason: Mapped[str] = mapped_column(String(32), default="requested")  # requested|failed|topic
    outcome: Mapped[str | None] = mapped_column(String(24))  # answered|booked|referred|no_reply|deleted
    rating: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column()
    closed_at: Mapped[datetime | None] = mapped_column()

    events: Mapped[list[TicketEvent]] = relationship(
        back_populates="ticket", cascade="all, delete-orphan", order_by="TicketEvent.id"
    )


class TicketEvent(Base):
    """A state change or note on a ticket (without client content)."""

    __tablename__ = "ticket_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(24))  # opened|claimed|released|handed_back|closed|referred|rated
    actor: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    ticket: Mapped[Ticket] = relationship(back_populates="events")


class TicketNote(Base):
    """An internal note on a ticket, visible only to its organisation."""

    __tablename__ = "ticket_notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    adviser_id: Mapped[int | None] = mapped_column(ForeignKey("advisers.id", ondelete="SET NULL"))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
