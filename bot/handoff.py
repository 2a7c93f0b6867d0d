"""Human handoff: the consent-gated ticket, the conversation's state machine, and the adviser's actions.

A conversation belongs to the bot, to the queue of one organisation (waiting), or to an adviser. Every
change goes through ``transition`` with the table below; each is recorded as a TicketEvent and published to
the organisation's consoles. Nothing reaches an organisation without a recorded handoff consent.
"""

from __future__ import annotations

import logging
import re
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.channels.base import Button, OutboundMessage
from bot.consent import ConsentRequest, ConsentService
from bot.data_rights import DataRightsDialogue, Outcome, Turn
from bot.errors import LotseError, TranslationUnavailable
from bot.hub import EventHub
from bot.outbox import Outbox
from bot.privacy import Revocation, audit
from bot.storage.database import Database
from bot.storage.models import Adviser, Client, Conversation, Message, Ticket, TicketEvent, as_utc, utcnow
from bot.texts import TextService
from bot.translation import TranslationService

log = logging.getLogger(__name__)

BOT, WAITING, ADVISER = "bot", "waiting", "adviser"
"""Conversation states: who answers the client."""

CONVERSATION_TRANSITIONS: dict[str, frozenset[str]] = {
    BOT: frozenset({WAITING}),
    WAITING: frozenset({ADVISER, BOT}),
    ADVISER: frozenset({WAITING, BOT}),
}
"""Allowed conversation state changes (bot -> waiting -> adviser -> bot; adviser may release to waiting)."""

TICKET_TRANSITIONS: dict[str, frozenset[str]] = {
    "waiting": frozenset({"claimed", "closed", "returned", "cancelled"}),
    "claimed": frozenset({"waiting", "closed", "returned"}),
    "closed": frozenset(),
    "returned": frozenset(),
    "cancelled": frozenset(),
}
"""Ticket states: waiting in the queue, claimed by an adviser, and the three ends (closed with an outcome,
returned to the bot, cancelled by the client who stopped waiting)."""

OPEN_TICKET_STATES = ("waiting", "claimed")
OUTCOMES = ("answered", "booked", "referred", "no_reply")
STOP_WAITING = "/stop_waiting"
RATE = re.compile(r'^/rate\s*\{\s*"rating"\s*:\s*"?(?P<n>[1-5])"?\s*\}$')
DEFAULT_WAIT_MINUTES = 10
_BERLIN = ZoneInfo("Europe/Berlin")


class HandoffError(LotseError):
    """An adviser action that is not possible in the ticket's state (or not for this adviser)."""


@dataclass(frozen=True, kw_only=True)
class HandoffRequest:
    """Why and about what the client wants a person; from the engine's slots where known."""

    reason: str = "requested"  # requested | failed | topic
    topic: str | None = None
    town: str | None = None
    age: str | None = None


class OrganisationChooser(Protocol):
    """Picks the organisation for a handoff and knows its office hours (the booking directory)."""

    def for_handoff(self, *, topic: str | None, town: str | None, age: str | None, language: str) -> str:
        """The organisation id whose advisers should take the conversation."""

    def next_opening(self, organisation: str, after: datetime) -> datetime | None:
        """None while the organisation is open, else when it opens next."""


class FixedChooser:
    """The cooperation's default organisation, always open (used when no directory is configured)."""

    def __init__(self, organisation: str) -> None:
        self.organisation = organisation

    def for_handoff(self, *, topic: str | None, town: str | None, age: str | None, language: str) -> str:
        """Always the same organisation."""
        return self.organisation

    def next_opening(self, organisation: str, after: datetime) -> datetime | None:
        """Always open."""
        return None


def check_transition(table: dict[str, frozenset[str]], current: str, new: str) -> None:
    """Raise HandoffError unless the table allows ``current -> new``."""
    if new not in table.get(current, frozenset()):
        raise HandoffError(f"not possible: {current} -> {new}")


class HandoffService:
    """Opens tickets after consent, routes messages while an adviser has the conversation, and carries out
    the advisers' actions."""

    def __init__(
        self,
        *,
        database: Database,
        texts: TextService,
        translation: TranslationService,
        consent: ConsentService,
        rights: DataRightsDialogue,
        hub: EventHub,
        outbox: Outbox,
        chooser: OrganisationChooser,
    ) -> None:
        self.database = database
        self.texts = texts
        self.translation = translation
        self.consent = consent
        self.rights = rights
        self.hub = hub
        self.outbox = outbox
        self.chooser = chooser
        self.notify: list[Callable[[Ticket], Awaitable[None]]] = []
        """Called after a ticket was opened (e.g. the Telegram group notification); never with content."""
        rights.continuations["handoff"] = self._after_handoff_consent
        rights.continuations["refer"] = self._after_referral_consent

    # ---- client side -------------------------------------------------------------------------------

    async def offer(self, turn: Turn, request: HandoffRequest) -> Outcome:
        """Explain what happens and ask for consent; with consent on record, open the ticket at once."""
        organisation = self.chooser.for_handoff(
            topic=request.topic, town=request.town, age=request.age, language=turn.language
        )
        consent = ConsentRequest(scope="handoff", organisation=organisation)
        async with self.database.unit_of_work() as session:
            client = await session.get_one(Client, turn.client_id)
            if client.under_16:
                return Outcome(
                    replies=[
                        await self.texts.message("handoff.under16", turn.language),
                        await self.texts.message("handoff.contacts", turn.language),
                    ]
                )
            allowed = await self.consent.may(session, client_id=turn.client_id, request=consent)
        if allowed:
            return await self.open_ticket(turn, organisation, request)
        explain = await self.texts.message(
            "handoff.explain", turn.language, params={"organisation": self._name(organisation)}
        )
        asked = await self.rights.ask_consent(
            turn,
            consent,
            then={
                "action": "handoff",
                "reason": request.reason,
                "topic": request.topic,
                "town": request.town,
                "age": request.age,
            },
        )
        return Outcome(replies=[explain, *asked.replies])

    async def _after_handoff_consent(self, turn: Turn, then: dict[str, Any], granted: bool) -> Outcome:
        if not granted:
            return Outcome(
                replies=[
                    await self.texts.message("consent.declined", turn.language),
                    await self.texts.message(
                        "handoff.contacts",
                        turn.language,
                        buttons=[("button.appointment", "/book_appointment")],
                    ),
                ]
            )
        organisation = str(then.get("organisation") or "")
        request = HandoffRequest(
            reason=str(then.get("reason") or "requested"),
            topic=_opt(then.get("topic")),
            town=_opt(then.get("town")),
            age=_opt(then.get("age")),
        )
        return await self.open_ticket(turn, organisation, request)

    async def open_ticket(self, turn: Turn, organisation: str, request: HandoffRequest) -> Outcome:
        """Put the conversation into the organisation's queue (only with a valid consent)."""
        consent = ConsentRequest(scope="handoff", organisation=organisation)
        async with self.database.unit_of_work() as session:
            if not await self.consent.may(session, client_id=turn.client_id, request=consent):
                log.warning("handoff refused: no valid consent for %s", organisation)
                return Outcome(replies=[await self.texts.message("handoff.contacts", turn.language)])
            conversation = await session.get_one(Conversation, turn.conversation_id)
            existing = await session.scalar(
                select(Ticket).where(
                    Ticket.conversation_id == conversation.id, Ticket.status.in_(OPEN_TICKET_STATES)
                )
            )
            if existing is not None:
                ticket = existing
            else:
                check_transition(CONVERSATION_TRANSITIONS, conversation.status, WAITING)
                ticket = Ticket(
                    conversation_id=conversation.id,
                    client_id=turn.client_id,
                    organisation=organisation,
                    channel=turn.channel,
                    language=turn.language,
                    topic=request.topic,
                    reason=request.reason,
                    summary=await self._summary(session, conversation.id, turn, request),
                )
                session.add(ticket)
                conversation.status = WAITING
                await session.flush()
                session.add(TicketEvent(ticket_id=ticket.id, kind="opened", actor="client"))
                audit(
                    session,
                    actor="client",
                    action="handoff_opened",
                    conversation_id=conversation.id,
                    detail=organisation,
                )
            position, minutes = await self._position(session, ticket)
            await session.commit()
            ticket_id, new = ticket.id, existing is None
        if new:
            await self.hub.publish(organisation, {"type": "ticket.opened", "ticket": ticket_id})
            for notify in self.notify:
                try:
                    await notify(ticket)
                except Exception:
                    log.exception("ticket notification failed")
        return Outcome(replies=await self._waiting_replies(turn.language, organisation, position, minutes))

    async def _waiting_replies(
        self, language: str, organisation: str, position: int, minutes: int
    ) -> list[OutboundMessage]:
        buttons = [("button.stop_waiting", STOP_WAITING), ("button.appointment", "/book_appointment")]
        opening = self.chooser.next_opening(organisation, datetime.now(UTC))
        if opening is not None:
            local = opening.astimezone(_BERLIN)
            return [
                await self.texts.message(
                    "handoff.outside_hours",
                    language,
                    params={
                        "organisation": self._name(organisation),
                        "date": local.strftime("%d.%m.%Y"),
                        "time": local.strftime("%H:%M"),
                    },
                    buttons=buttons,
                )
            ]
        return [
            await self.texts.message(
                "handoff.waiting",
                language,
                params={"organisation": self._name(organisation), "position": position, "minutes": minutes},
                buttons=buttons,
            )
        ]

    async def _position(self, session: AsyncSession, ticket: Ticket) -> tuple[int, int]:
        """Place in the queue and a rough wait: the median of the organisation's last claims, per place."""
        ahead = await session.scalar(
            select(func.count(Ticket.id)).where(
                Ticket.organisation == ticket.organisation,
                Ticket.status == "waiting",
                Ticket.id < ticket.id,
            )
        )
        position = int(ahead or 0) + 1
        recent = list(
            await session.execute(
                select(Ticket.created_at, Ticket.claimed_at)
                .where(Ticket.organisation == ticket.organisation, Ticket.claimed_at.is_not(None))
                .order_by(Ticket.id.desc())
                .limit(20)
            )
        )
        waits = [
            max(1.0, (as_utc(claimed) - as_utc(created)).total_seconds() / 60)
            for created, claimed in recent
            if claimed is not None
        ]
        per_place = statistics.median(waits) if waits else DEFAULT_WAIT_MINUTES
        return position, max(1, round(per_place * position))

    async def _summary(
        self, session: AsyncSession, conversation_id: str, turn: Turn, request: HandoffRequest
    ) -> dict[str, Any]:
        """The handover summary shown at the top of the ticket."""
        messages = list(
            await session.scalars(
                select(Message)
                .where(Message.conversation_id == conversation_id)
                .order_by(Message.id.desc())
                .limit(60)
            )
        )[::-1]
        answered = []
        for m in messages:
            if m.content_key and m.content_key.startswith("answer.") and m.content_key not in answered:
                answered.append(m.content_key)
        questions = [
            m.id
            for m in messages
            if m.direction == "in" and m.kind == "text" and m.text.strip() and not m.text.startswith("/")
        ]
        return {
            "topic": request.topic,
            "language": turn.language,
            "channel": turn.channel,
            "town": request.town,
            "age_group": _age_group(request.age),
            "answered": answered,
            "question_message_ids": questions[-3:],
            "consent_scope": "handoff",
            "reason": request.reason,
        }

    async def client_message(self, turn: Turn, status: str) -> Outcome:
        """A message while the conversation is with the queue or an adviser: to the console, not the bot."""
        text = turn.text.strip()
        if text == STOP_WAITING:
            return await self.stop_waiting(turn)
        async with self.database.unit_of_work() as session:
            ticket = await self._open_ticket_of(session, turn.conversation_id)
            if ticket is None:  # the state says handoff but no ticket is open: repair, back to the bot
                conversation = await session.get_one(Conversation, turn.conversation_id)
                conversation.status = BOT
                await session.commit()
                return Outcome(replies=[await self.texts.message("handoff.returned", turn.language)])
            organisation, ticket_id = ticket.organisation, ticket.id
            position, minutes = await self._position(session, ticket)
        await self.hub.publish(
            organisation, {"type": "message", "ticket": ticket_id, "message": turn.message_id}
        )
        if status == WAITING:
            return Outcome(
                replies=[
                    await self.texts.message(
                        "handoff.still_waiting",
                        turn.language,
                        params={"position": position, "minutes": minutes},
                        buttons=[("button.stop_waiting", STOP_WAITING)],
                    )
                ]
            )
        return Outcome(replies=[])

    async def stop_waiting(self, turn: Turn) -> Outcome:
        """The client returns to the bot; a waiting ticket is cancelled, a claimed one returned."""
        async with self.database.unit_of_work() as session:
            ticket = await self._open_ticket_of(session, turn.conversation_id)
            conversation = await session.get_one(Conversation, turn.conversation_id)
            organisation = None
            if ticket is not None:
                new = "cancelled" if ticket.status == "waiting" else "returned"
                check_transition(TICKET_TRANSITIONS, ticket.status, new)
                ticket.status, ticket.closed_at = new, utcnow()
                session.add(TicketEvent(ticket_id=ticket.id, kind="client_left", actor="client"))
                organisation = ticket.organisation
            if conversation.status != BOT:
                conversation.status = BOT
            await session.commit()
            ticket_id = ticket.id if ticket is not None else None
        if organisation is not None:
            await self.hub.publish(organisation, {"type": "ticket.closed", "ticket": ticket_id})
        return Outcome(replies=[await self.texts.message("handoff.stopped", turn.language)])

    async def rate(self, turn: Turn, pending: dict[str, Any]) -> Outcome | None:
        """The one-tap rating after a closed ticket; None when the message is not a rating."""
        match = RATE.match(turn.text.strip()) or re.fullmatch(r"\s*(?P<n>[1-5])\s*", turn.text)
        if match is None:
            return None
        async with self.database.unit_of_work() as session:
            ticket = await session.get(Ticket, int(pending.get("ticket", 0)))
            conversation = await session.get_one(Conversation, turn.conversation_id)
            conversation.pending = None
            if ticket is not None and ticket.client_id == turn.client_id:
                ticket.rating = int(match.group("n"))
                session.add(TicketEvent(ticket_id=ticket.id, kind="rated", actor="client"))
            await session.commit()
        return Outcome(replies=[await self.texts.message("rating.thanks", turn.language)])

    # ---- adviser side ------------------------------------------------------------------------------

    async def queue(self, organisation: str) -> list[Ticket]:
        """The organisation's open tickets, oldest first."""
        async with self.database.unit_of_work() as session:
            return list(
                await session.scalars(
                    select(Ticket)
                    .where(Ticket.organisation == organisation, Ticket.status.in_(OPEN_TICKET_STATES))
                    .order_by(Ticket.id)
                )
            )

    async def ticket(self, organisation: str, ticket_id: int) -> Ticket | None:
        """A ticket of this organisation, or None (also for other organisations' tickets)."""
        async with self.database.unit_of_work() as session:
            ticket = await session.get(Ticket, ticket_id)
            return ticket if ticket is not None and ticket.organisation == organisation else None

    async def conversation(self, organisation: str, ticket_id: int) -> list[Message]:
        """The bot history and the live chat of a ticket's conversation (empty for other organisations)."""
        async with self.database.unit_of_work() as session:
            ticket = await session.get(Ticket, ticket_id)
            if ticket is None or ticket.organisation != organisation or ticket.conversation_id is None:
                return []
            return list(
                await session.scalars(
                    select(Message)
                    .where(Message.conversation_id == ticket.conversation_id)
                    .order_by(Message.id)
                )
            )

    async def claim(self, ticket_id: int, adviser: Adviser) -> bool:
        """Take a waiting ticket; exactly one of several advisers claiming at once succeeds."""
        async with self.database.unit_of_work() as session:
            result = await session.execute(
                update(Ticket)
                .where(
                    Ticket.id == ticket_id,
                    Ticket.organisation == adviser.organisation,
                    Ticket.status == "waiting",
                )
                .values(status="claimed", adviser_id=adviser.id, claimed_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                await session.rollback()
                return False
            ticket = await session.get_one(Ticket, ticket_id)
            session.add(TicketEvent(ticket_id=ticket_id, kind="claimed", actor=f"adviser:{adviser.id}"))
            conversation = await self._conversation_of(session, ticket)
            message = None
            if conversation is not None:
                if conversation.status != ADVISER:
                    conversation.status = ADVISER
                message = await self.texts.message(
                    "handoff.claimed",
                    ticket.language,
                    params={"organisation": self._name(ticket.organisation)},
                )
                self.outbox.store(session, conversation=conversation, message=message, author="system")
            audit(
                session,
                actor=f"adviser:{adviser.id}",
                action="ticket_claimed",
                conversation_id=ticket.conversation_id,
            )
            await session.commit()
            if conversation is not None and message is not None:
                await self.outbox.push(session, conversation=conversation, message=message)
        await self.hub.publish(adviser.organisation, {"type": "ticket.claimed", "ticket": ticket_id})
        return True

    async def release(self, ticket_id: int, adviser: Adviser) -> None:
        """Put a claimed ticket back into the queue."""
        async with self.database.unit_of_work() as session:
            ticket = await self._own(session, ticket_id, adviser)
            check_transition(TICKET_TRANSITIONS, ticket.status, "waiting")
            ticket.status, ticket.adviser_id = "waiting", None
            session.add(TicketEvent(ticket_id=ticket_id, kind="released", actor=f"adviser:{adviser.id}"))
            conversation = await self._conversation_of(session, ticket)
            if conversation is not None:
                conversation.status = WAITING
            await session.commit()
        await self.hub.publish(adviser.organisation, {"type": "ticket.released", "ticket": ticket_id})

    async def send(self, ticket_id: int, adviser: Adviser, text: str, *, translate: bool = True) -> Message:
        """The adviser's German reply, in the client's language on the client's channel (marked)."""
        text = text.strip()
        if not text:
            raise HandoffError("empty message")
        async with self.database.unit_of_work() as session:
            ticket = await self._own(session, ticket_id, adviser, claimed=True)
            language = ticket.language
        shown, machine = text, False
        if translate and language != "de":
            try:
                translated = await self.translation.translate(text, source="de", target=language)
                mark, _ = await self.texts.text("translation.machine", language)
                shown, machine = f"{translated.text}\n\n{mark}", True
            except TranslationUnavailable:
                note, _ = await self.texts.text("translation.unavailable", language)
                shown = f"{text}\n\n({note})"
        message = OutboundMessage(text=shown, language=language, machine_translated=machine)
        return await self._deliver(
            ticket_id,
            adviser,
            message,
            payload={"original": text, "adviser": adviser.id, "translate": translate},
        )

    async def propose(
        self,
        ticket_id: int,
        adviser: Adviser,
        message: OutboundMessage,
        *,
        payload: dict[str, object],
        detail: str,
    ) -> Message:
        """An appointment proposal (slot buttons, built by bot/proposals.py), delivered like a reply and
        recorded as a ``proposed`` ticket event."""
        stored = await self._deliver(ticket_id, adviser, message, payload=payload)
        async with self.database.unit_of_work() as session:
            session.add(
                TicketEvent(
                    ticket_id=ticket_id, kind="proposed", actor=f"adviser:{adviser.id}", detail=detail[:200]
                )
            )
            await session.commit()
        return stored

    async def send_module(self, ticket_id: int, adviser: Adviser, key: str) -> Message:
        """A prepared text module in its authored translation."""
        if not key.startswith("module.") or key not in self.texts.content.texts["de"]:
            raise HandoffError(f"unknown text module {key!r}")
        async with self.database.unit_of_work() as session:
            ticket = await self._own(session, ticket_id, adviser, claimed=True)
            language = ticket.language
        message = await self.texts.message(key, language)
        return await self._deliver(
            ticket_id, adviser, message, payload={"module": key, "adviser": adviser.id}
        )

    async def _deliver(
        self, ticket_id: int, adviser: Adviser, message: OutboundMessage, *, payload: dict[str, object]
    ) -> Message:
        async with self.database.unit_of_work() as session:
            ticket = await self._own(session, ticket_id, adviser, claimed=True)
            conversation = await self._conversation_of(session, ticket)
            if conversation is None:
                raise HandoffError("the client's conversation no longer exists")
            stored = self.outbox.store(
                session, conversation=conversation, message=message, author="adviser", payload=payload
            )
            await session.commit()
            await self.outbox.push(session, conversation=conversation, message=message)
            organisation = ticket.organisation
        await self.hub.publish(organisation, {"type": "message", "ticket": ticket_id, "message": stored.id})
        return stored

    async def hand_back(self, ticket_id: int, adviser: Adviser) -> None:
        """Return the conversation to the bot, which greets the client again."""
        await self._end(ticket_id, adviser, status="returned", outcome=None, key="handoff.returned")

    async def close(self, ticket_id: int, adviser: Adviser, outcome: str) -> None:
        """Close with an outcome; the client is asked for a one-tap rating."""
        if outcome not in OUTCOMES:
            raise HandoffError(f"unknown outcome {outcome!r}")
        await self._end(ticket_id, adviser, status="closed", outcome=outcome, key="handoff.closed")

    async def _end(
        self, ticket_id: int, adviser: Adviser, *, status: str, outcome: str | None, key: str
    ) -> None:
        async with self.database.unit_of_work() as session:
            ticket = await self._own(session, ticket_id, adviser)
            check_transition(TICKET_TRANSITIONS, ticket.status, status)
            ticket.status, ticket.outcome, ticket.closed_at = status, outcome, utcnow()
            session.add(
                TicketEvent(
                    ticket_id=ticket_id, kind=status, actor=f"adviser:{adviser.id}", detail=outcome or ""
                )
            )
            conversation = await self._conversation_of(session, ticket)
            messages: list[OutboundMessage] = []
            if conversation is not None:
                conversation.status = BOT
                buttons = [
                    ("button.topic.language_course", "/ask_language_course"),
                    ("button.topic.recognition", "/ask_recognition"),
                    ("button.topic.qualification", "/ask_qualification"),
                ]
                messages.append(await self.texts.message(key, ticket.language, buttons=buttons))
                if status == "closed":
                    question = await self.texts.message("rating.ask", ticket.language)
                    stars = tuple(
                        Button(title="★" * n, payload=f'/rate{{"rating":{n}}}') for n in range(1, 6)
                    )
                    messages.append(replace(question, buttons=stars))
                    conversation.pending = {"type": "rating", "ticket": ticket_id}
                for message in messages:
                    self.outbox.store(session, conversation=conversation, message=message, author="system")
            audit(
                session,
                actor=f"adviser:{adviser.id}",
                action=f"ticket_{status}",
                conversation_id=ticket.conversation_id,
                detail=outcome or "",
            )
            await session.commit()
            if conversation is not None:
                for message in messages:
                    await self.outbox.push(session, conversation=conversation, message=message)
        await self.hub.publish(
            adviser.organisation, {"type": f"ticket.{status}", "ticket": ticket_id, "outcome": outcome}
        )

    async def revoked(self, revocation: Revocation) -> None:
        """A client withdrew consent: their tickets leave the organisations' consoles live."""
        closed = set(revocation.closed)
        for organisation, ticket_id in revocation.tickets:
            kind = "ticket.closed" if (organisation, ticket_id) in closed else "ticket.withdrawn"
            await self.hub.publish(organisation, {"type": kind, "ticket": ticket_id, "outcome": "withdrawn"})

    async def refer(self, ticket_id: int, adviser: Adviser, target: str) -> None:
        """Ask the client whether the case may go to another organisation; nothing moves before a yes."""
        if target not in self.texts.content.organisations or target == adviser.organisation:
            raise HandoffError(f"unknown or same organisation {target!r}")
        async with self.database.unit_of_work() as session:
            ticket = await self._own(session, ticket_id, adviser, claimed=True)
            conversation = await self._conversation_of(session, ticket)
            if conversation is None or ticket.client_id is None:
                raise HandoffError("the client's conversation no longer exists")
            turn = Turn(
                client_id=ticket.client_id,
                conversation_id=conversation.id,
                channel=conversation.channel,
                language=ticket.language,
                text="",
            )
            session.add(
                TicketEvent(
                    ticket_id=ticket_id, kind="referral_asked", actor=f"adviser:{adviser.id}", detail=target
                )
            )
            await session.commit()
        asked = await self.rights.ask_consent(
            turn,
            ConsentRequest(scope="referral", organisation=adviser.organisation, target=target),
            then={"action": "refer", "ticket": ticket_id, "adviser": adviser.id},
        )
        async with self.database.unit_of_work() as session:
            conversation = await session.get_one(Conversation, turn.conversation_id)
            for message in asked.replies:
                self.outbox.store(session, conversation=conversation, message=message, author="system")
            await session.commit()
            for message in asked.replies:
                await self.outbox.push(session, conversation=conversation, message=message)

    async def _after_referral_consent(self, turn: Turn, then: dict[str, Any], granted: bool) -> Outcome:
        ticket_id = int(then.get("ticket", 0))
        async with self.database.unit_of_work() as session:
            ticket = await session.get(Ticket, ticket_id)
            if (
                ticket is None
                or ticket.client_id != turn.client_id
                or ticket.status not in OPEN_TICKET_STATES
            ):
                return Outcome(replies=[await self.texts.message("consent.declined", turn.language)])
            source, target = ticket.organisation, str(then.get("target") or "")
            if not granted:
                session.add(TicketEvent(ticket_id=ticket_id, kind="referral_declined", actor="client"))
                await session.commit()
                await self.hub.publish(source, {"type": "ticket.updated", "ticket": ticket_id})
                return Outcome(replies=[await self.texts.message("handoff.referral_declined", turn.language)])
            ticket.status, ticket.outcome, ticket.closed_at = "closed", "referred", utcnow()
            session.add(TicketEvent(ticket_id=ticket_id, kind="closed", actor="client", detail="referred"))
            referred = Ticket(
                conversation_id=ticket.conversation_id,
                client_id=ticket.client_id,
                organisation=target,
                channel=ticket.channel,
                language=ticket.language,
                topic=ticket.topic,
                reason="referred",
                consent_scope="referral",
                summary={**(ticket.summary or {}), "consent_scope": "referral", "referred_by": source},
            )
            session.add(referred)
            conversation = await session.get_one(Conversation, turn.conversation_id)
            conversation.status = WAITING
            await session.flush()
            session.add(
                TicketEvent(ticket_id=referred.id, kind="opened", actor="client", detail=f"from {source}")
            )
            audit(session, actor="client", action="referred", conversation_id=conversation.id, detail=target)
            await session.commit()
            new_id = referred.id
        await self.hub.publish(source, {"type": "ticket.closed", "ticket": ticket_id, "outcome": "referred"})
        await self.hub.publish(target, {"type": "ticket.opened", "ticket": new_id})
        async with self.database.unit_of_work() as session:
            opened = await session.get(Ticket, new_id)
        for notify in self.notify:
            if opened is None:
                break
            try:
                await notify(opened)
            except Exception:
                log.exception("ticket notification failed")
        return Outcome(
            replies=[
                await self.texts.message(
                    "handoff.referred", turn.language, params={"organisation": self._name(target)}
                )
            ]
        )

    async def german(self, message: Message) -> tuple[str, str]:
        """A message in German for the adviser: (text, "authored" | "machine" | "unavailable")."""
        if message.language in (None, "de") or message.kind != "text":
            return message.text, "authored"
        if message.direction == "out" and isinstance(message.payload, dict):
            original = message.payload.get("original")
            if isinstance(original, str):
                return original, "authored"
        if message.direction == "out" and message.content_key:
            reference = self.texts.content.texts["de"].get(message.content_key)
            if (
                reference is not None
                and "{" not in reference
                and message.content_key not in self.texts.content.answers
            ):
                return reference, "authored"
        try:
            translated = await self.translation.translate(
                message.text, source=message.language or "auto", target="de"
            )
        except TranslationUnavailable:
            return "", "unavailable"
        return translated.text, "machine"

    # ---- helpers -----------------------------------------------------------------------------------

    def _name(self, organisation: str) -> str:
        return self.texts.content.organisations.get(organisation, organisation)

    async def _open_ticket_of(self, session: AsyncSession, conversation_id: str) -> Ticket | None:
        return await session.scalar(
            select(Ticket)
            .where(Ticket.conversation_id == conversation_id, Ticket.status.in_(OPEN_TICKET_STATES))
            .order_by(Ticket.id.desc())
            .limit(1)
        )

    async def _own(
        self, session: AsyncSession, ticket_id: int, adviser: Adviser, *, claimed: bool = False
    ) -> Ticket:
        ticket = await session.get(Ticket, ticket_id)
        if ticket is None or ticket.organisation != adviser.organisation:
            raise HandoffError("no such ticket")
        if claimed and (ticket.status != "claimed" or ticket.adviser_id != adviser.id):
            raise HandoffError("claim the ticket first")
        return ticket

    async def _conversation_of(self, session: AsyncSession, ticket: Ticket) -> Conversation | None:
        if ticket.conversation_id is None:
            return None
        return await session.get(Conversation, ticket.conversation_id)


def _opt(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _age_group(age: str | None) -> str | None:
    if age in ("under27", "27plus"):
        return age
    try:
        years = int(str(age))
    except (TypeError, ValueError):
        return None
    return "under27" if years < 27 else "27plus"
