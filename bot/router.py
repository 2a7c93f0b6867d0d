"""The core: every inbound message is stored, its language decided, then answered by the engine
(or, in emergencies and for language choices, by the app itself) and the replies stored."""

from __future__ import annotations

import asyncio
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.orm import Session

from bot import LANGUAGES
from bot.appointments import AppointmentsDialogue
from bot.channels.base import Button, InboundMessage, OutboundMessage
from bot.consent import ConsentRequest
from bot.conversations import insert_messages, locate_sync, set_language, touch_conversation
from bot.data_rights import DataRightsDialogue, Outcome, Turn
from bot.engine import EngineClient, EngineReply
from bot.errors import EngineUnavailable, StorageUnavailable
from bot.handoff import ADVISER, STOP_WAITING, WAITING, HandoffRequest, HandoffService
from bot.language import Detection, LanguageDecision, LanguageDetector, decide_language
from bot.lexicon import LexiconMatcher
from bot.outbox import Outbox, take_undelivered_sync
from bot.proposals import PROPOSAL, ProposalService
from bot.storage.database import Database
from bot.storage.models import Message
from bot.texts import TextService

log = logging.getLogger(__name__)

_CHOOSE_LANGUAGE = re.compile(
    r'^/choose_language\s*(?:\{\s*"language"\s*:\s*"(?P<a>[a-z]{2})"\s*\}|(?P<b>[a-z]{2}))\s*$'
)
_KEEP_LANGUAGE = "/keep_language"
_APPOINTMENT = re.compile(r"^/appointment_(cancel|move|move_to)\s*\{.*\}$", re.DOTALL)
_INVISIBLE = re.compile(r"[\s\u200b-\u200f\u2060\ufeff\u00ad]+")
MEDIA_KINDS = ("photo", "sticker", "voice", "document", "location", "edited")
ENGINE_COMMANDS = {
    "/start": "/greet",
    "/help": "/ask_help",
    "/adviser": "/request_human",
    "/appointments": "/book_appointment",
}
"""Channel commands that are the same as an intent; the engine answers them."""
ROUTER_COMMANDS = ("/privacy", "/delete", "/language")
"""Channel commands the router answers itself."""
PRIVACY_ACTIONS = ("overview", "export", "delete", "withdraw")
HANDOFF_PRIVACY_PAYLOADS = {"/show_my_data": "export", "/withdraw_consent": "withdraw"}
"""Data-rights buttons the router answers itself while the conversation is with an adviser."""


@dataclass(frozen=True, kw_only=True)
class RouterReply:
    """What the router answers with, and for whom."""

    conversation_id: str
    language: str
    messages: list[OutboundMessage]
    forwarded: bool = False
    """The message went to the organisation's console (queue or adviser); the bot does not answer it."""


@dataclass(frozen=True, kw_only=True)
class _Inbound:
    """What the first unit of work of a message found and decided."""

    decision: LanguageDecision
    turn: Turn
    chosen: str | None
    pending: dict[str, object] | None
    status: str
    earlier: list[OutboundMessage]


@dataclass(kw_only=True)
class _Forwarded(Outcome):
    """The outcome of a message handed to the handoff while the conversation is not the bot's."""


class ConversationRouter:
    """Decides who answers a message; keeps one conversation's messages in order."""

    def __init__(
        self,
        *,
        database: Database,
        engine: EngineClient,
        texts: TextService,
        detector: LanguageDetector,
        lexicon: LexiconMatcher,
        rights: DataRightsDialogue,
        handoff: HandoffService,
        outbox: Outbox,
        appointments: AppointmentsDialogue,
        proposals: ProposalService | None = None,
        default_language: str = "de",
        max_chars: int = 4000,
    ) -> None:
        self.database = database
        self.engine = engine
        self.texts = texts
        self.detector = detector
        self.lexicon = lexicon
        self.rights = rights
        self.rights.continuations["engine"] = self._continue_in_engine
        self.handoff = handoff
        self.appointments = appointments
        self.proposals = proposals
        """Taps on an adviser's appointment proposal (bot/proposals.py), answered in every state."""
        self.outbox = outbox
        self.default_language = default_language
        self.max_chars = max_chars
        self._locks: OrderedDict[tuple[str, str], asyncio.Lock] = OrderedDict()

    def _lock(self, channel: str, external_id: str) -> asyncio.Lock:
        key = (channel, external_id)
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
            while len(self._locks) > 10_000:  # forget idle conversations, never a held lock
                oldest_key, oldest = next(iter(self._locks.items()))
                if oldest.locked():
                    break
                del self._locks[oldest_key]
        else:
            self._locks.move_to_end(key)
        return lock

    async def handle(self, inbound: InboundMessage) -> RouterReply:
        """Store, decide, answer, store; messages of one client are handled one at a time."""
        async with self._lock(inbound.channel, inbound.external_id):
            return await self._handle(inbound)

    async def _handle(self, inbound: InboundMessage) -> RouterReply:
        text = inbound.text if inbound.kind == "text" else ""
        detection = self.detector.detect(text)
        stored = await self.database.run(self._store_inbound, inbound, text, detection)
        decision, turn = stored.decision, stored.turn
        outcome = await self._answer(inbound, turn, decision, stored.chosen, stored.pending, stored.status)
        forwarded = False
        if not outcome.erased:
            forwarded = await self.database.run(self._store_replies, turn, outcome, decision.language)
        return RouterReply(
            conversation_id=turn.conversation_id,
            language=decision.language,
            messages=stored.earlier + outcome.replies,
            forwarded=forwarded,
        )

    def _store_inbound(
        self, session: Session, inbound: InboundMessage, text: str, detection: Detection
    ) -> _Inbound:
        """Unit of work 1 (on a database thread): the client, the language decision, the message."""
        located = locate_sync(session, channel=inbound.channel, external_id=inbound.external_id)
        decision = decide_language(
            current=located.language,
            source=located.language_source,
            detection=detection,
            hint=inbound.language_hint,
            default=self.default_language,
        )
        chosen = _chosen_language(text)
        if chosen:
            decision = LanguageDecision(language=chosen, source="explicit", changed=True)
        if text.strip() == _KEEP_LANGUAGE and located.language:
            decision = LanguageDecision(language=located.language, source="explicit")
        if (decision.language, decision.source) != (located.language, located.language_source):
            set_language(session, located.client_id, decision.language, decision.source)
        (message_id,) = insert_messages(
            session,
            located.conversation_id,
            [
                {
                    "direction": "in",
                    "author": "client",
                    "kind": inbound.kind,
                    "text": inbound.text[: self.max_chars * 2],
                    # Too short to detect: the conversation's language, so the console translates it too.
                    "language": detection.language if detection.usable else decision.language,
                }
            ],
        )
        touch_conversation(session, located.conversation_id)
        earlier = []
        if not self.outbox.can_push(inbound.channel):
            earlier = [_stored_reply(m) for m in take_undelivered_sync(session, located.conversation_id)]
        session.commit()
        turn = Turn(
            client_id=located.client_id,
            conversation_id=located.conversation_id,
            channel=inbound.channel,
            language=decision.language,
            text=text,
            message_id=message_id,
        )
        return _Inbound(
            decision=decision,
            turn=turn,
            chosen=chosen,
            pending=located.pending,
            status=located.status,
            earlier=earlier,
        )

    @staticmethod
    def _store_replies(session: Session, turn: Turn, outcome: Outcome, language: str) -> bool:
        """Unit of work 2 (on a database thread): the replies; True when the message was passed on."""
        status = touch_conversation(session, turn.conversation_id)
        if status is None:
            return False
        # Still with the queue or an adviser afterwards: the message reached the console.
        forwarded = isinstance(outcome, _Forwarded) and status in (WAITING, ADVISER)
        if forwarded:
            # Kept with the message, so the widget shows "passed on" again after a reload.
            sent = session.get(Message, turn.message_id)
            if sent is not None:
                sent.payload = {**(sent.payload or {}), "forwarded": language}
        insert_messages(
            session,
            turn.conversation_id,
            [
                {
                    "direction": "out",
                    "author": "bot",
                    "text": reply.text,
                    "language": reply.language,
                    "content_key": reply.content_key,
                    "machine_translated": reply.machine_translated,
                    "payload": _reply_payload(reply),
                }
                for reply in outcome.replies
            ],
        )
        session.commit()
        return forwarded

    async def _answer(
        self,
        inbound: InboundMessage,
        turn: Turn,
        decision: LanguageDecision,
        chosen: str | None,
        pending: dict[str, object] | None,
        status: str = "bot",
    ) -> Outcome:
        lang = decision.language
        text = turn.text

        async def say(key: str, **params: object) -> Outcome:
            return Outcome(replies=[await self.texts.message(key, lang, params=params or None)])

        if inbound.kind in MEDIA_KINDS:
            return await say(f"input.{inbound.kind}")
        if inbound.kind != "text":
            return await say("input.unsupported")
        if chosen or text.strip() == _KEEP_LANGUAGE:
            return await say("language.set", language=self.texts.language_name(lang))
        if not _INVISIBLE.sub("", text):
            outcome = await say("input.empty")
            outcome.replies += await self._first_contact_extras(decision)
            return outcome
        if len(text) > self.max_chars:
            return await say("input.too_long", limit=self.max_chars)
        if self.lexicon.is_emergency(text):
            return await say("emergency")
        if pending and pending.get("type") == "rating":
            rated = await self.handoff.rate(turn, dict(pending))
            if rated is not None:
                return rated
        if pending:
            resolved = await self.rights.resolve_pending(turn, dict(pending))
            if resolved is not None:
                return resolved
        if self.proposals is not None and PROPOSAL.match(text.strip()):
            # Before the handoff forwarding: the client taps the adviser's proposal while talking to them.
            return await self.proposals.choose(turn, text.strip())
        command = text.strip().split()[0].lower() if text.strip().startswith("/") else ""
        if command == "/privacy":
            return await self.rights.overview(turn)
        if command == "/delete":
            return await self.rights.ask_delete(turn)
        if command == "/language":
            return Outcome(replies=[await self._picker(lang)])
        if status in (WAITING, ADVISER) and command in HANDOFF_PRIVACY_PAYLOADS:
            # The privacy overview's buttons are engine intents; with an adviser they must not be forwarded.
            action = HANDOFF_PRIVACY_PAYLOADS[command]
            return await (self.rights.export(turn) if action == "export" else self.rights.withdraw(turn))
        if command == STOP_WAITING or status in (WAITING, ADVISER):
            handed = await self.handoff.client_message(turn, status)
            return handed if command == STOP_WAITING else _Forwarded(replies=handed.replies)
        if command == "/appointments" or _APPOINTMENT.match(text.strip()):
            return await self.appointments.handle(turn, text.strip())
        try:
            replies = await self._engine_turn(turn, ENGINE_COMMANDS.get(command, text))
        except EngineUnavailable as exc:
            log.warning("engine unavailable: %s", exc)
            outcome = await say("engine.unavailable")
            outcome.replies += await self._first_contact_extras(decision)
            return outcome
        if not replies:
            replies = [await self.texts.message("fallback.rephrase", lang)]
        if decision.ask_switch_to:
            replies.append(await self._ask_switch(decision.ask_switch_to))
        return Outcome(replies=replies + await self._first_contact_extras(decision))

    async def _engine_turn(self, turn: Turn, text: str) -> list[OutboundMessage]:
        """Send a message to the engine and turn its answers into replies (raises EngineUnavailable)."""
        lang = turn.language
        engine_replies = await self.engine.send(
            turn.conversation_id, text, {"language": lang, "channel": turn.channel}
        )
        replies: list[OutboundMessage] = []
        for engine_reply in engine_replies:
            custom = engine_reply.get("custom")
            action = custom.get("privacy") if isinstance(custom, dict) else None
            if action in PRIVACY_ACTIONS:
                handler = {
                    "overview": self.rights.overview,
                    "export": self.rights.export,
                    "delete": self.rights.ask_delete,
                    "withdraw": self.rights.withdraw,
                }[str(action)]
                outcome = await handler(turn)
                replies += outcome.replies
                continue
            if isinstance(custom, dict) and custom.get("appointments") == "list":
                replies += (await self.appointments.overview(turn)).replies
                continue
            handoff = custom.get("handoff") if isinstance(custom, dict) else None
            if isinstance(handoff, dict):
                offered = await self.handoff.offer(
                    turn,
                    HandoffRequest(
                        reason=str(handoff.get("reason") or "requested"),
                        topic=_text_or_none(handoff.get("topic")),
                        town=_text_or_none(handoff.get("town")),
                        age=_text_or_none(handoff.get("age")),
                    ),
                )
                replies += offered.replies
                continue
            rendered = await self._render(engine_reply, lang)
            if rendered is not None:
                replies.append(rendered)
            if isinstance(custom, dict) and isinstance(custom.get("consent"), dict):
                replies += await self._ask_consent_for_engine(turn, custom)
            if isinstance(custom, dict) and custom.get("age") is not None:
                note = await self.rights.note_age(turn, custom["age"])
                if note is not None:
                    replies.append(note)
        return replies

    async def _ask_consent_for_engine(self, turn: Turn, custom: dict[str, Any]) -> list[OutboundMessage]:
        """An action asks for a consent; the app asks, records the answer, then tells the engine."""
        consent, then = custom["consent"], custom.get("then")
        try:
            request = ConsentRequest(
                scope=str(consent.get("scope")), organisation=str(consent.get("organisation") or "")
            )
        except ValueError:
            log.error("engine asked for an unknown consent scope %r", consent.get("scope"))
            return []
        follow = {"action": "engine", **(then if isinstance(then, dict) else {})}
        return (await self.rights.ask_consent(turn, request, then=follow)).replies

    async def _continue_in_engine(self, turn: Turn, then: dict[str, Any], granted: bool) -> Outcome:
        """After a consent answer the app recorded: tell the engine yes or no and show its answers."""
        payload = then.get("yes" if granted else "no")
        if not isinstance(payload, str):
            return Outcome(replies=[])
        try:
            return Outcome(replies=await self._engine_turn(turn, payload))
        except EngineUnavailable:
            return Outcome(replies=[await self.texts.message("engine.unavailable", turn.language)])

    async def _ask_switch(self, other: str) -> OutboundMessage:
        ask = await self.texts.message(
            "language.ask_switch", other, params={"language": self.texts.language_name(other)}
        )
        yes, _ = await self.texts.text("button.yes", other)
        no, _ = await self.texts.text("button.no", other)
        return _with_buttons(
            ask,
            (
                Button(title=yes, payload=f'/choose_language{{"language":"{other}"}}'),
                Button(title=no, payload=_KEEP_LANGUAGE),
            ),
        )

    async def _first_contact_extras(self, decision: LanguageDecision) -> list[OutboundMessage]:
        """On first contact without a confident language: the picker, which never blocks."""
        if not decision.first_contact or decision.source == "detected":
            return []
        return [await self._picker(decision.language)]

    async def _picker(self, lang: str) -> OutboundMessage:
        """The language question with one button per language."""
        picker = await self.texts.message("language.choose", lang)
        return _with_buttons(picker, self.texts.language_buttons())

    async def _render(self, reply: EngineReply, lang: str) -> OutboundMessage | None:
        custom = reply.get("custom")
        if not isinstance(custom, dict) or not isinstance(custom.get("key"), str):
            if reply.get("text"):
                log.error("engine sent a text without a content key; not shown to the client")
            return None
        key = custom["key"]
        if key not in self.texts.content.texts["de"]:
            log.error("engine asked for unknown content key %r", key)
            return await self.texts.message("error.generic", lang)
        buttons = [
            (b["key"], b["payload"])
            for b in custom.get("buttons", [])
            if isinstance(b, dict) and isinstance(b.get("key"), str) and isinstance(b.get("payload"), str)
        ]
        params: dict[str, Any] = dict(custom["params"]) if isinstance(custom.get("params"), dict) else {}
        reason = custom.get("reason")
        if (
            isinstance(reason, dict)
            and isinstance(reason.get("key"), str)
            and reason["key"] in self.texts.content.texts["de"]
        ):
            reason_params = reason.get("params") if isinstance(reason.get("params"), dict) else None
            params["reason"], _ = await self.texts.text(reason["key"], lang, reason_params)
        appointment = custom.get("appointment")
        if isinstance(appointment, str):
            params["calendar"] = self.appointments.booking.ics_url(appointment)
        message = await self.texts.message(key, lang, params=params or None, buttons=buttons)
        extra: list[Button] = []
        for raw in custom.get("raw_buttons") or []:
            if (
                isinstance(raw, dict)
                and isinstance(raw.get("text"), str)
                and isinstance(raw.get("payload"), str)
            ):
                extra.append(Button(title=raw["text"], payload=raw["payload"]))
        for choice in custom.get("language_choices") or []:
            if isinstance(choice, dict) and choice.get("code") in LANGUAGES:
                extra.append(
                    Button(title=self.texts.language_name(choice["code"]), payload=str(choice["payload"]))
                )
        for choice in custom.get("slot_choices") or []:
            if isinstance(choice, dict) and isinstance(choice.get("when"), str):
                title = await self.appointments.slot_title(choice["when"], str(choice.get("place", "")), lang)
                extra.append(Button(title=title, payload=str(choice["payload"])))
        if extra:
            message = _with_buttons(message, (*extra, *message.buttons))
        if custom.get("to_confirm"):
            note, _ = await self.texts.text("booking.to_confirm", lang)
            message = replace(message, text=f"{message.text}\n\n{note}")
        if isinstance(appointment, str):
            attachment = await self.appointments.attachment(appointment)
            if attachment is not None:
                message = replace(message, attachment=attachment)
        if custom.get("language_buttons"):
            message = _with_buttons(message, self.texts.language_buttons())
        return message

    async def replies_or_apology(self, inbound: InboundMessage) -> list[OutboundMessage]:
        """The replies, or a localized apology when storage or anything else failed (logged first)."""
        return (await self.reply_or_apology(inbound)).messages

    async def reply_or_apology(self, inbound: InboundMessage) -> RouterReply:
        """The whole reply (with the conversation's language), or an apology as in ``replies_or_apology``."""
        try:
            return await self.handle(inbound)
        except StorageUnavailable:
            log.exception("storage unavailable while answering a %s message", inbound.channel)
            apology = await self.apology(inbound.language_hint, storage=True)
        except Exception:
            log.exception("unexpected error while answering a %s message", inbound.channel)
            apology = await self.apology(inbound.language_hint)
        return RouterReply(conversation_id="", language=apology.language, messages=[apology])

    async def apology(self, language_hint: str | None, *, storage: bool = False) -> OutboundMessage:
        """The reply when something failed before an answer existed."""
        lang = language_hint if language_hint in LANGUAGES else self.default_language
        return await self.texts.message("storage.unavailable" if storage else "error.generic", lang)


def _text_or_none(value: object) -> str | None:
    return str(value) if isinstance(value, str | int) and str(value).strip() else None


def _stored_reply(message: Message) -> OutboundMessage:
    """A stored message the client has not seen yet, as a reply."""
    payload = message.payload if isinstance(message.payload, dict) else {}
    return OutboundMessage(
        text=message.text,
        language=message.language or "de",
        machine_translated=message.machine_translated,
        content_key=message.content_key,
        buttons=tuple(
            Button(title=str(b.get("title", "")), payload=str(b.get("payload", "")))
            for b in payload.get("buttons", [])
            if isinstance(b, dict)
        ),
    )


def _with_buttons(message: OutboundMessage, buttons: tuple[Button, ...]) -> OutboundMessage:
    return replace(message, buttons=buttons)


def _chosen_language(text: str) -> str | None:
    match = _CHOOSE_LANGUAGE.match(text.strip())
    if not match:
        return None
    code = match.group("a") or match.group("b")
    return code if code in LANGUAGES else None


def _reply_payload(reply: OutboundMessage) -> dict[str, Any] | None:
    """What is stored beside a bot reply: its button payloads and the German the adviser reads."""
    payload: dict[str, Any] = {}
    if reply.buttons:
        payload["buttons"] = [b.payload for b in reply.buttons]
    if reply.reference is not None:
        payload["original"] = reply.reference
    return payload or None
