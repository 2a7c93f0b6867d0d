"""Render content keys in the client's language: authored text first, else marked machine
translation from German, else German with a one-line note in the client's language."""

from __future__ import annotations

import logging
from typing import Any

from bot import LANGUAGES
from bot.channels.base import Button, OutboundMessage
from bot.content import Content
from bot.errors import TranslationUnavailable
from bot.translation import TranslationService

log = logging.getLogger(__name__)

LANGUAGE_PAYLOAD = '/choose_language{{"language":"{code}"}}'


class TextService:
    """Looks texts up by key and language; never raises for a missing translation."""

    def __init__(self, content: Content, translation: TranslationService) -> None:
        self.content = content
        self.translation = translation

    async def text(self, key: str, language: str, params: dict[str, Any] | None = None) -> tuple[str, bool]:
        """The text and whether it is machine translated (marks are added by ``message``)."""
        params = {k: str(v) for k, v in (params or {}).items()}
        authored = self.content.text(key, language)
        if authored is not None:
            return _format(authored, params), False
        reference = _format(self.content.reference(key), params)
        try:
            translated = await self.translation.translate(reference, source="de", target=language)
        except TranslationUnavailable:
            note = self.content.text("translation.unavailable", language) or self.content.reference(
                "translation.unavailable"
            )
            return f"{reference}\n\n({note})", False
        mark = self.content.text("translation.machine", language) or "machine translation"
        return f"{translated.text}\n\n{mark}", True

    async def message(
        self,
        key: str,
        language: str,
        *,
        params: dict[str, Any] | None = None,
        buttons: list[tuple[str, str]] | None = None,
    ) -> OutboundMessage:
        """A reply for a content key with button keys rendered too; answers get links and "Stand:"."""
        text, machine = await self.text(key, language, params)
        meta = self.content.answers.get(key)
        if meta is not None:
            links_label, _ = await self.text("answer.links", language)
            footer, _ = await self.text(
                "answer.footer",
                language,
                {"date": (meta.stand or meta.reviewed).strftime("%d.%m.%Y"), "source": meta.source},
            )
            text = f"{text}\n\n{links_label}\n" + "\n".join(meta.links) + f"\n\n{footer}"
        rendered_buttons = []
        for button_key, payload in buttons or []:
            title, _ = await self.text(button_key, language)
            rendered_buttons.append(Button(title=title.split("\n\n")[0], payload=payload))
        reference = None
        german = self.content.texts["de"].get(key)
        if language != "de" and german is not None:
            reference = _format(german, {k: str(v) for k, v in (params or {}).items()})
        return OutboundMessage(
            text=text,
            language=language,
            buttons=tuple(rendered_buttons),
            machine_translated=machine,
            content_key=key,
            reference=reference,
        )

    def language_buttons(self) -> tuple[Button, ...]:
        """One button per language, each titled in its own language."""
        return tuple(
            Button(
                title=self.content.text("language.name", code) or code,
                payload=LANGUAGE_PAYLOAD.format(code=code),
            )
            for code in LANGUAGES
        )

    def language_name(self, code: str) -> str:
        """A language's own name (Deutsch, English, العربية …)."""
        return self.content.text("language.name", code) or code


def _format(text: str, params: dict[str, str]) -> str:
    try:
        return text.format(**params)
    except (KeyError, IndexError, ValueError):
        log.error("text placeholders do not match the parameters %s", sorted(params))
        return text
