"""The data-rights dialogue: privacy overview, export, confirmed erasure, withdrawal, and the
yes/no answer to a pending consent question. Channel-independent; used by the router."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from bot.channels.base import Attachment, OutboundMessage
from bot.consent import ConsentPrompt, ConsentRequest, ConsentService, text_hash
from bot.content import CONSENT_SCOPES
from bot.lexicon import LexiconMatcher
from bot.privacy import Revocation, TrackerEraser, audit, erase, export, revoke
from bot.storage.database import Database
from bot.storage.models import Client, ConsentEvent, Conversation
from bot.texts import TextService

log = logging.getLogger(__name__)

YES_PAYLOADS = frozenset({"/affirm", "/consent_yes", "/confirm_delete"})
NO_PAYLOADS = frozenset({"/deny", "/consent_no", "/keep"})


@dataclass(frozen=True, kw_only=True)
class Turn:
    """One client message as the dialogue sees it."""

    client_id: str
    conversation_id: str
    channel: str
    language: str
    text: str
    message_id: int | None = None


@dataclass(kw_only=True)
class Outcome:
    """The replies, and whether the client no longer exists (then nothing more is stored)."""

    replies: list[OutboundMessage]
    erased: bool = False


class DataRightsDialogue:
    """Privacy overview, export, erasure and consent answers."""

    def __init__(
        self,
        *,
        database: Database,
        texts: TextService,
        consent: ConsentService,
        lexicon: LexiconMatcher,
        trackers: TrackerEraser,
    ) -> None:
        self.database = database
        self.texts = texts
        self.consent = consent
        self.lexicon = lexicon
        self.trackers = trackers
        self.continuations: dict[str, Continuation] = {}
        """What happens after a consent answer whose question named a ``then`` action (handoff, refer)."""
        self.on_revoked: Callable[[Revocation], Awaitable[None]] | None = None
        """Told after a withdrawal closed or detached tickets (the console's live queue listens)."""

    def answer_of(self, text: str) -> bool | None:
        """True for yes, False for no, None for anything else (buttons or free text, any language)."""
        stripped = text.strip()
        if stripped in YES_PAYLOADS or self.lexicon.is_yes(stripped):
            return True
        if stripped in NO_PAYLOADS or self.lexicon.is_no(stripped):
            return False
        return None

    async def _scopes(self, active: list[ConsentEvent], language: str) -> str:
        """A readable list of consents ("Weitergabe des Gesprächs (AWO …)"), or "none"."""
        names = self.consent.content.organisations
        parts = []
        for event in active:
            label, _ = await self.texts.text(f"consent.scope.{event.scope}", language)
            parts.append(f"{label} ({names.get(event.organisation, event.organisation)})")
        if parts:
            return "; ".join(parts)
        none, _ = await self.texts.text("data.none", language)
        return none

    async def overview(self, turn: Turn) -> Outcome:
        """What is stored, the active consents, and buttons for the rights."""
        info = await self.texts.message(
            "privacy.info",
            turn.language,
            buttons=[
                ("button.show_data", "/show_my_data"),
                ("button.withdraw", "/withdraw_consent"),
                ("button.delete_data", "/delete_my_data"),
            ],
        )
        async with self.database.unit_of_work() as session:
            active = await self.consent.active(session, turn.client_id)
        scopes = await self._scopes(active, turn.language)
        key = "consent.active_list" if active else "consent.none_active"
        listing = await self.texts.message(key, turn.language, params={"scopes": scopes})
        return Outcome(replies=[info, listing])

    async def export(self, turn: Turn) -> Outcome:
        """A readable summary and the full data as a JSON file."""
        async with self.database.unit_of_work() as session:
            data = await export(session, turn.client_id)
            scopes = await self._scopes(await self.consent.active(session, turn.client_id), turn.language)
            audit(session, actor="client", action="export", conversation_id=turn.conversation_id)
            await session.commit()
        messages = sum(len(c["messages"]) for c in data["conversations"])
        since = min((c["started_at"] for c in data["conversations"]), default=data["exported_at"])[:10]
        summary, _ = await self.texts.text(
            "data.summary",
            turn.language,
            {
                "messages": messages,
                "since": since,
                "language": self.texts.language_name(data["client"]["language"] or turn.language),
                "channels": ", ".join(sorted({c["channel"] for c in data["channels"]})),
                "consents": scopes,
            },
        )
        message = await self.texts.message("data.export", turn.language, params={"summary": summary})
        attachment = Attachment(
            filename="lotse-data.json",
            mime_type="application/json",
            content=json.dumps(data, ensure_ascii=False, indent=2),
        )
        return Outcome(replies=[replace(message, attachment=attachment)])

    async def ask_delete(self, turn: Turn) -> Outcome:
        """Ask once for confirmation before erasing."""
        await self._set_pending(turn.conversation_id, {"type": "delete"})
        question = await self.texts.message(
            "delete.confirm",
            turn.language,
            buttons=[("button.delete_confirm", "/confirm_delete"), ("button.keep", "/keep")],
        )
        return Outcome(replies=[question])

    async def withdraw(self, turn: Turn) -> Outcome:
        """Withdraw every active consent."""
        async with self.database.unit_of_work() as session:
            withdrawn = await self.consent.withdraw_all(
                session, client_id=turn.client_id, language=turn.language, channel=turn.channel
            )
            revocation = Revocation()
            if withdrawn:
                revocation = await revoke(session, turn.client_id, withdrawn)
                audit(
                    session,
                    actor="client",
                    action="consent_withdrawn",
                    conversation_id=turn.conversation_id,
                    detail=",".join(sorted({w.scope for w in withdrawn})),
                )
            await session.commit()
        if not withdrawn:
            return Outcome(replies=[await self.texts.message("consent.none_active", turn.language)])
        if revocation.tickets and self.on_revoked is not None:
            try:
                await self.on_revoked(revocation)
            except Exception:  # the withdrawal is stored; a missed live update only delays the console
                log.exception("could not announce a revocation")
        scopes = await self._scopes(withdrawn, turn.language)
        replies = [await self.texts.message("consent.withdrawn", turn.language, params={"scopes": scopes})]
        if revocation.closed:
            replies.append(await self.texts.message("consent.withdrawn_handoff", turn.language))
        if revocation.appointments:
            replies.append(await self.texts.message("consent.withdrawn_booking", turn.language))
        return Outcome(replies=replies)

    async def ask_consent(
        self, turn: Turn, request: ConsentRequest, *, then: dict[str, Any] | None = None
    ) -> Outcome:
        """Ask for a consent with yes/no buttons and remember what was asked (and what follows a yes/no)."""
        version = self.consent.content.consent.current(request.scope)
        message = await self.texts.message(
            version.key,
            turn.language,
            params=self.consent.params(request),
            buttons=[("button.yes", "/consent_yes"), ("button.no", "/consent_no")],
        )
        prompt = {
            "type": "consent",
            "scope": request.scope,
            "organisation": request.organisation,
            "target": request.target,
            "version": version.version,
            "text_id": version.text_id,
            "language": message.language,
            "text": message.text,
        }
        if then is not None:
            prompt["then"] = {**then, "organisation": request.organisation, "target": request.target}
        await self._set_pending(turn.conversation_id, prompt)
        return Outcome(replies=[message])

    async def resolve_pending(self, turn: Turn, pending: dict[str, Any]) -> Outcome | None:
        """Handle the answer to a pending question; None when the message is not an answer."""
        answer = self.answer_of(turn.text)
        if answer is None:
            await self._set_pending(turn.conversation_id, None)
            return None
        if pending.get("type") == "delete":
            if answer:
                return await self._erase(turn)
            await self._set_pending(turn.conversation_id, None)
            return Outcome(replies=[await self.texts.message("delete.cancelled", turn.language)])
        if pending.get("type") == "consent" and pending.get("scope") in CONSENT_SCOPES:
            request = ConsentRequest(
                scope=pending["scope"],
                organisation=pending.get("organisation", ""),
                target=pending.get("target", ""),
            )
            prompt = ConsentPrompt(
                request=request,
                text=pending["text"],
                language=pending["language"],
                version=int(pending["version"]),
                text_id=pending["text_id"],
                text_hash=text_hash(pending["text"]),
            )
            async with self.database.unit_of_work() as session:
                await self.consent.record(
                    session, client_id=turn.client_id, prompt=prompt, granted=answer, channel=turn.channel
                )
                conversation = await session.get_one(Conversation, turn.conversation_id)
                conversation.pending = None
                await session.commit()
            then = pending.get("then")
            if isinstance(then, dict) and then.get("action") in self.continuations:
                followed = await self.continuations[str(then["action"])](turn, then, answer)
                if answer:
                    granted = await self.texts.message("consent.granted", turn.language)
                    followed.replies.insert(0, granted)
                return followed
            key = "consent.granted" if answer else "consent.declined"
            replies = [await self.texts.message(key, turn.language)]
            if not answer:
                replies.append(await self.texts.message("handoff.contacts", turn.language))
            return Outcome(replies=replies)
        await self._set_pending(turn.conversation_id, None)
        return None

    async def _erase(self, turn: Turn) -> Outcome:
        async with self.database.unit_of_work() as session:
            conversation_ids = await erase(session, turn.client_id)
            audit(session, actor="client", action="erased", detail=f"{len(conversation_ids)} conversations")
            await session.commit()
        try:
            removed = await asyncio.to_thread(self.trackers.erase, conversation_ids)
            log.info("erased a client: %d conversations, %d engine events", len(conversation_ids), removed)
        except Exception:
            log.exception("engine trackers of an erased client could not be removed; retry by retention job")
        return Outcome(replies=[await self.texts.message("delete.done", turn.language)], erased=True)

    async def _set_pending(self, conversation_id: str, pending: dict[str, Any] | None) -> None:
        async with self.database.unit_of_work() as session:
            conversation = await session.get_one(Conversation, conversation_id)
            conversation.pending = pending
            await session.commit()

    async def note_age(self, turn: Turn, age: Any) -> OutboundMessage | None:
        """Under 16: remember it (no sharing without a guardian) and tell the client once."""
        try:
            years = int(str(age).strip().translate(_DIGITS))
        except ValueError:
            return None
        if not 5 <= years < 16:
            return None
        async with self.database.unit_of_work() as session:
            client = await session.get_one(Client, turn.client_id)
            if client.under_16:
                return None
            client.under_16 = True
            await session.commit()
        return await self.texts.message("age.under16", turn.language)


Continuation = Callable[[Turn, dict[str, Any], bool], Awaitable[Outcome]]
"""Carries on after a consent answer: (turn, the question's ``then``, granted?)."""

_DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹", "01234567890123456789")
