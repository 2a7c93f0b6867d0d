"""The core: every inbound message is stored, its language decided, then answered by the engine
(or, in emergencies and for language choices, by the app itself) and the replies stored."""

from __future__ import annotations

import asyncio
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass

from bot import LANGUAGES
from bot.channels.base import Button, InboundMessage, OutboundMessage
from bot.conversations import add_message, find_or_create
from bot.engine import EngineClient, EngineReply
from bot.errors import EngineUnavailable
from bot.language import LanguageDecision, LanguageDetector, decide_language
from bot.lexicon import LexiconMatcher
from bot.storage.database import Database
from bot.storage.models import Conversation
from bot.texts import TextService

log = logging.getLogger(__name__)

_CHOOSE_LANGUAGE = re.compile(
    r'^/choose_language\s*(?:\{\s*"language"\s*:\s*"(?P<a>[a-z]{2})"\s*\}|(?P<b>[a-z]{2}))\s*$'
)
_KEEP_LANGUAGE = "/keep_language"
_INVISIBLE = re.compile(r"[\s\u200b-\u200f\u2060\ufeff\u00ad]+")
MEDIA_KINDS = ("photo", "sticker", "voice", "document", "location", "edited")


@dataclass(frozen=True, kw_only=True)
class RouterReply:
    """What the router answers with, and for whom."""

    conversation_id: str
    language: str
    messages: list[OutboundMessage]


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
        default_language: str = "de",
        max_chars: int = 4000,
    ) -> None:
        self.database = database
        self.engine = engine
        self.texts = texts
        self.detector = detector
        self.lexicon = lexicon
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
        detection = self.detector.detect(text) if text else self.detector.detect("")
        async with self.database.unit_of_work() as session:
            client, conversation, _new = await find_or_create(
                session, channel=inbound.channel, external_id=inbound.external_id
            )
            decision = decide_language(
                current=client.language,
                source=client.language_source,
                detection=detection,
                hint=inbound.language_hint,
                default=self.default_language,
            )
            chosen = _chosen_language(text)
            if chosen:
                decision = LanguageDecision(language=chosen, source="explicit", changed=True)
            if text.strip() == _KEEP_LANGUAGE and client.language:
                decision = LanguageDecision(language=client.language, source="explicit")
            client.language, client.language_source = decision.language, decision.source
            add_message(
                session,
                conversation=conversation,
                direction="in",
                author="client",
                kind=inbound.kind,
                text=inbound.text[: self.max_chars * 2],
                language=detection.language if detection.usable else None,
            )
            await session.commit()
            conversation_id, client_id = conversation.id, client.id

        replies = await self._answer(inbound, text, decision, chosen, conversation_id)

        async with self.database.unit_of_work() as session:
            conversation = await session.get_one(Conversation, conversation_id)
            for reply in replies:
                add_message(
                    session,
                    conversation=conversation,
                    direction="out",
                    author="bot",
                    text=reply.text,
                    language=reply.language,
                    content_key=reply.content_key,
                    machine_translated=reply.machine_translated,
                    payload={"buttons": [b.payload for b in reply.buttons]} if reply.buttons else None,
                )
            await session.commit()
        log.debug("answered %s message of client %s", inbound.channel, client_id)
        return RouterReply(conversation_id=conversation_id, language=decision.language, messages=replies)

    async def _answer(
        self,
        inbound: InboundMessage,
        text: str,
        decision: LanguageDecision,
        chosen: str | None,
        conversation_id: str,
    ) -> list[OutboundMessage]:
        lang = decision.language
        if inbound.kind in MEDIA_KINDS:
            return [await self.texts.message(f"input.{inbound.kind}", lang)]
        if inbound.kind != "text":
            return [await self.texts.message("input.unsupported", lang)]
        if chosen:
            return [
                await self.texts.message(
                    "language.set", lang, params={"language": self.texts.language_name(lang)}
                )
            ]
        if text.strip() == _KEEP_LANGUAGE:
            return [
                await self.texts.message(
                    "language.set", lang, params={"language": self.texts.language_name(lang)}
                )
            ]
        if not _INVISIBLE.sub("", text):
            replies = [await self.texts.message("input.empty", lang)]
            return replies + await self._first_contact_extras(decision)
        if len(text) > self.max_chars:
            return [await self.texts.message("input.too_long", lang, params={"limit": self.max_chars})]
        if self.lexicon.is_emergency(text):
            return [await self.texts.message("emergency", lang)]
        try:
            engine_replies = await self.engine.send(
                conversation_id, text, {"language": lang, "channel": inbound.channel}
            )
        except EngineUnavailable as exc:
            log.warning("engine unavailable: %s", exc)
            return [await self.texts.message("engine.unavailable", lang)]
        rendered = [await self._render(reply, lang) for reply in engine_replies]
        replies = [r for r in rendered if r is not None]
        if not replies:
            replies = [await self.texts.message("fallback.rephrase", lang)]
        if decision.ask_switch_to:
            other = decision.ask_switch_to
            ask = await self.texts.message(
                "language.ask_switch", other, params={"language": self.texts.language_name(other)}
            )
            yes, _ = await self.texts.text("button.yes", other)
            no, _ = await self.texts.text("button.no", other)
            replies.append(
                OutboundMessage(
                    text=ask.text,
                    language=other,
                    machine_translated=ask.machine_translated,
                    content_key=ask.content_key,
                    buttons=(
                        Button(title=yes, payload=f'/choose_language{{"language":"{other}"}}'),
                        Button(title=no, payload=_KEEP_LANGUAGE),
                    ),
                )
            )
        return replies + await self._first_contact_extras(decision)

    async def _first_contact_extras(self, decision: LanguageDecision) -> list[OutboundMessage]:
        """On first contact without a confident language: the picker, which never blocks."""
        if not decision.first_contact or decision.source == "detected":
            return []
        picker = await self.texts.message("language.choose", decision.language)
        return [
            OutboundMessage(
                text=picker.text,
                language=picker.language,
                machine_translated=picker.machine_translated,
                content_key=picker.content_key,
                buttons=self.texts.language_buttons(),
            )
        ]

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
        params = custom.get("params") if isinstance(custom.get("params"), dict) else None
        message = await self.texts.message(key, lang, params=params, buttons=buttons)
        if custom.get("language_buttons"):
            message = OutboundMessage(
                text=message.text,
                language=message.language,
                machine_translated=message.machine_translated,
                content_key=message.content_key,
                buttons=self.texts.language_buttons(),
            )
        return message

    async def apology(self, language_hint: str | None, *, storage: bool = False) -> OutboundMessage:
        """The reply when something failed before an answer existed."""
        lang = language_hint if language_hint in LANGUAGES else self.default_language
        return await self.texts.message("storage.unavailable" if storage else "error.generic", lang)


def _chosen_language(text: str) -> str | None:
    match = _CHOOSE_LANGUAGE.match(text.strip())
    if not match:
        return None
    code = match.group("a") or match.group("b")
    return code if code in LANGUAGES else None
