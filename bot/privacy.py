"""The client's data rights and retention: export, erasure everywhere, scheduled purge, audit log."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, create_engine, delete, select, text, update
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.storage.models import (
    Appointment,
    AuditEntry,
    ChannelIdentity,
    Client,
    ConsentEvent,
    Conversation,
    Message,
    Ticket,
    TicketEvent,
    Translation,
    as_utc,
    utcnow,
)

log = logging.getLogger(__name__)


def audit(
    session: AsyncSession, *, actor: str, action: str, conversation_id: str | None = None, detail: str = ""
) -> None:
    """Record who did what with which conversation; never message contents."""
    session.add(AuditEntry(actor=actor, action=action, conversation_id=conversation_id, detail=detail[:200]))


async def export(session: AsyncSession, client_id: str) -> dict[str, Any]:
    """Everything stored about a client, as JSON-ready data."""
    client = await session.get_one(Client, client_id)
    identities = await session.scalars(select(ChannelIdentity).where(ChannelIdentity.client_id == client_id))
    conversations = list(
        await session.scalars(
            select(Conversation).where(Conversation.client_id == client_id).order_by(Conversation.created_at)
        )
    )
    consents = await session.scalars(
        select(ConsentEvent).where(ConsentEvent.client_id == client_id).order_by(ConsentEvent.id)
    )
    result: dict[str, Any] = {
        "exported_at": utcnow().isoformat(),
        "client": {
            "language": client.language,
            "language_source": client.language_source,
            "created_at": client.created_at.isoformat(),
        },
        "channels": [{"channel": i.channel, "id": i.external_id} for i in identities],
        "conversations": [],
        "consents": [
            {
                "scope": c.scope,
                "organisation": c.organisation,
                "target_organisation": c.target_organisation,
                "action": c.action,
                "text": c.text_id,
                "text_sha256": c.text_hash,
                "language": c.language,
                "channel": c.channel,
                "at": c.created_at.isoformat(),
            }
            for c in consents
        ],
    }
    for conversation in conversations:
        messages = await session.scalars(
            select(Message).where(Message.conversation_id == conversation.id).order_by(Message.id)
        )
        result["conversations"].append(
            {
                "channel": conversation.channel,
                "status": conversation.status,
                "started_at": conversation.created_at.isoformat(),
                "messages": [
                    {
                        "at": m.created_at.isoformat(),
                        "from": m.author,
                        "kind": m.kind,
                        "text": m.text,
                        "language": m.language,
                        "machine_translated": m.machine_translated,
                    }
                    for m in messages
                ],
            }
        )
    return result


async def erase(session: AsyncSession, client_id: str) -> list[str]:
    """Delete a client and everything that refers to them; return their conversation ids."""
    conversation_ids = list(
        await session.scalars(select(Conversation.id).where(Conversation.client_id == client_id))
    )
    # Tickets stay for the organisations' figures, emptied and shown as "closed as deleted".
    await session.execute(
        update(Ticket)
        .where(Ticket.client_id == client_id)
        .values(client_id=None, conversation_id=None, summary=None, outcome="deleted", status="closed")
    )
    if conversation_ids:
        await session.execute(delete(Message).where(Message.conversation_id.in_(conversation_ids)))
    await session.execute(delete(Conversation).where(Conversation.client_id == client_id))
    await session.execute(delete(ConsentEvent).where(ConsentEvent.client_id == client_id))
    await session.execute(delete(Translation).where(Translation.client_id == client_id))
    await session.execute(delete(ChannelIdentity).where(ChannelIdentity.client_id == client_id))
    await session.execute(delete(Client).where(Client.id == client_id))
    return conversation_ids


@dataclass(frozen=True)
class Revocation:
    """What a withdrawal took back from the organisations."""

    tickets: tuple[tuple[str, int], ...] = ()
    """(organisation, ticket id) of every ticket the organisation can no longer read."""
    closed: tuple[tuple[str, int], ...] = ()
    """The subset that was still waiting or with an adviser and is now closed."""
    appointments: int = 0
    """Booked appointments whose name and contact were removed from the organisation's view."""


def _organisations(events: list[ConsentEvent], scopes: set[str]) -> set[str] | None:
    """The organisations whose grant of one of ``scopes`` went; None means every organisation."""
    organisations: set[str] = set()
    for event in events:
        if event.scope not in scopes:
            continue
        organisation = event.target_organisation if event.scope == "referral" else event.organisation
        if not organisation:
            return None
        organisations.add(organisation)
    return organisations


async def revoke(session: AsyncSession, client_id: str, withdrawn: list[ConsentEvent]) -> Revocation:
    """Take back what the withdrawn consents had shared; the caller commits.

    Handoff or referral withdrawn: the organisation's tickets of this client are detached from the
    conversation (advisers no longer see its messages, the summary or who it was); a ticket still waiting
    or with an adviser is closed as "withdrawn" and the conversation returns to the bot. The tickets stay,
    empty, for the anonymous figures, as after an erasure. Internal notes stay: they are the
    organisation's own record. Booking withdrawn: booked appointments stay reserved for the client, but
    name and contact disappear from the organisation's list. Reminder consent is checked when each
    reminder is due (`BookingService.send_reminder`), so nothing is needed here.
    """
    tickets: list[tuple[str, int]] = []
    closed: list[tuple[str, int]] = []
    sharing = _organisations(withdrawn, {"handoff", "referral"})
    if sharing is None or sharing:
        query = select(Ticket).where(Ticket.client_id == client_id)
        if sharing is not None:
            query = query.where(Ticket.organisation.in_(sharing))
        for ticket in await session.scalars(query):
            if ticket.status in ("waiting", "claimed"):
                ticket.status, ticket.outcome, ticket.closed_at = "closed", "withdrawn", utcnow()
                closed.append((ticket.organisation, ticket.id))
                if ticket.conversation_id is not None:
                    conversation = await session.get(Conversation, ticket.conversation_id)
                    if conversation is not None and conversation.status != "bot":
                        conversation.status = "bot"
            session.add(
                TicketEvent(ticket_id=ticket.id, kind="withdrawn", actor="client", detail="consent withdrawn")
            )
            ticket.client_id, ticket.conversation_id, ticket.summary = None, None, None
            tickets.append((ticket.organisation, ticket.id))
    booking = _organisations(withdrawn, {"booking"})
    appointments = 0
    if booking is None or booking:
        statement = (
            update(Appointment)
            .where(
                Appointment.client_id == client_id,
                Appointment.status == "booked",
                Appointment.name.is_not(None) | Appointment.contact.is_not(None),
            )
            .values(name=None, contact=None)
        )
        if booking is not None:
            statement = statement.where(Appointment.organisation.in_(booking))
        result = await session.execute(statement)
        appointments = int(getattr(result, "rowcount", 0) or 0)
    return Revocation(tickets=tuple(tickets), closed=tuple(closed), appointments=appointments)


class TrackerEraser:
    """Removes conversations from the engine's SQL tracker store (Rasa has no delete endpoint)."""

    def __init__(self, tracker_url: str | None) -> None:
        self.tracker_url = tracker_url

    def erase(self, sender_ids: list[str]) -> int:
        """Delete every tracker event of these senders; return how many rows went."""
        if not self.tracker_url or not sender_ids:
            return 0
        engine = create_engine(self.tracker_url)
        try:
            with engine.begin() as connection:
                statement = text("DELETE FROM events WHERE sender_id IN :ids").bindparams(
                    bindparam("ids", expanding=True)
                )
                result = connection.execute(statement, {"ids": sender_ids})
                return int(result.rowcount or 0)
        except (OperationalError, ProgrammingError) as exc:
            if "no such table" in str(exc) or "does not exist" in str(exc):
                return 0  # the engine has not stored anything yet
            raise
        finally:
            engine.dispose()


async def expired_clients(session: AsyncSession, *, days: int, now: datetime | None = None) -> list[str]:
    """Clients whose last activity is older than ``days`` and who have no active consent."""
    cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
    rows = await session.execute(select(Conversation.client_id, Conversation.updated_at))
    last: dict[str, datetime] = {}
    for client_id, updated in rows:
        stamp = as_utc(updated)
        last[client_id] = max(stamp, last.get(client_id, stamp))
    candidates = [client_id for client_id, stamp in last.items() if stamp < cutoff]
    if not candidates:
        return []
    granted = await session.execute(
        select(
            ConsentEvent.client_id,
            ConsentEvent.scope,
            ConsentEvent.organisation,
            ConsentEvent.target_organisation,
            ConsentEvent.action,
        )
        .where(ConsentEvent.client_id.in_(candidates))
        .order_by(ConsentEvent.id)
    )
    state: dict[tuple[str, str, str, str], str] = {}
    for client_id, scope, organisation, target, action in granted:
        state[(client_id, scope, organisation, target)] = action
    with_consent = {key[0] for key, action in state.items() if action == "granted"}
    return [client_id for client_id in candidates if client_id not in with_consent]
