"""Machine translation behind one interface: deep-translator providers, a database cache, a deadline.

deep-translator's calls block and have no timeout, so they run in a small thread pool with a
deadline. After a failure the provider is skipped for a short while, so an unreachable provider
costs one deadline, not one per message. German administrative terms are protected from the
provider and come back as "translation (German term)".
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bot.errors import TranslationUnavailable
from bot.storage.database import Database
from bot.storage.models import Translation

log = logging.getLogger(__name__)

RETRY_AFTER_FAILURE = 30.0
_TOKEN = re.compile(r"\[\s*\[\s*(\d+)\s*\]\s*\]")


class Translator(Protocol):
    """A blocking translation provider."""

    name: str

    def translate(self, text: str, source: str, target: str) -> str:
        """Translate text from source to target language (ISO 639-1)."""


class NoTranslator:
    """Translation switched off (LOTSE_TRANSLATOR=none)."""

    name = "none"

    def translate(self, text: str, source: str, target: str) -> str:
        """Always unavailable."""
        raise TranslationUnavailable("machine translation is switched off")


class DeepTranslator:
    """A deep-translator provider chosen by name: google, deepl, microsoft or libre."""

    def __init__(self, provider: str, *, url: str | None = None, key: str | None = None) -> None:
        self.name = provider
        self._url = url
        self._key = key

    def _client(self, source: str, target: str) -> Any:
        import deep_translator

        if self.name == "google":
            return deep_translator.GoogleTranslator(source=source, target=target)
        if self.name == "deepl":
            return deep_translator.DeeplTranslator(
                api_key=self._key, source=source, target=target, use_free_api=True
            )
        if self.name == "microsoft":
            return deep_translator.MicrosoftTranslator(api_key=self._key, source=source, target=target)
        raise TranslationUnavailable(f"unknown provider {self.name!r}")

    def _libre(self, text: str, source: str, target: str) -> str:
        """LibreTranslate's HTTP API directly: deep-translator's client rejects languages the server
        knows (Ukrainian, Persian) and waits without a timeout."""
        import httpx

        form = {"q": text, "source": source, "target": target, "format": "text"}
        if self._key:
            form["api_key"] = self._key
        response = httpx.post((self._url or "").rstrip("/") + "/translate", data=form, timeout=30.0)
        response.raise_for_status()
        translated = response.json().get("translatedText")
        return translated if isinstance(translated, str) else ""

    def translate(self, text: str, source: str, target: str) -> str:
        """Translate with the provider; any provider or network error becomes TranslationUnavailable."""
        try:
            if self.name == "libre":
                result = self._libre(text, source, target)
            else:
                result = self._client(source, target).translate(text)
        except TranslationUnavailable:
            raise
        except Exception as exc:  # deep-translator raises many unrelated types (requests, its own)
            raise TranslationUnavailable(f"{self.name}: {type(exc).__name__}: {exc}") from exc
        if not isinstance(result, str) or not result.strip():
            raise TranslationUnavailable(f"{self.name}: empty translation")
        return result


@dataclass(frozen=True, kw_only=True)
class Translated:
    """A machine translation (always to be marked as such)."""

    text: str
    provider: str
    cached: bool


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class TranslationService:
    """Cached, deadline-bounded machine translation with protected glossary terms."""

    def __init__(
        self,
        translator: Translator,
        database: Database,
        *,
        timeout: float,
        glossary: dict[str, dict[str, str]] | None = None,
    ) -> None:
        self.translator = translator
        self.database = database
        self.timeout = timeout
        self._glossary = glossary or {}
        self._terms = sorted(
            {term for entry in self._glossary.values() for term in entry}, key=len, reverse=True
        )
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="translate")
        self._down_until = 0.0

    @property
    def available(self) -> bool:
        """False while translation is off or the provider recently failed."""
        return self.translator.name != "none" and time.monotonic() >= self._down_until

    def _protect(self, text: str, source: str) -> tuple[str, list[str]]:
        if source != "de":
            return text, []
        found: list[str] = []
        for term in self._terms:
            pattern = re.compile(rf"(?<!\w){re.escape(term)}(?!\w)")
            if pattern.search(text):
                text = pattern.sub(f"[[{len(found)}]]", text)
                found.append(term)
        return text, found

    def _restore(self, text: str, terms: list[str], target: str) -> str:
        def replace(match: re.Match[str]) -> str:
            index = int(match.group(1))
            if index >= len(terms):
                return match.group(0)
            term = terms[index]
            local = self._glossary.get(target, {}).get(term)
            return f"{local} ({term})" if local and target != "de" else term

        return _TOKEN.sub(replace, text)

    async def translate(
        self, text: str, *, source: str, target: str, client_id: str | None = None
    ) -> Translated:
        """Translate text; raise TranslationUnavailable when off, failing or too slow."""
        if source == target:
            return Translated(text=text, provider="identity", cached=True)
        if not self.available:
            raise TranslationUnavailable("translation provider unavailable")
        provider = self.translator.name
        digest = _hash(text)
        async with self.database.unit_of_work() as session:
            hit = await session.scalar(
                select(Translation.translated_text).where(
                    Translation.provider == provider,
                    Translation.source_language == source,
                    Translation.target_language == target,
                    Translation.source_hash == digest,
                )
            )
        if hit is not None:
            return Translated(text=hit, provider=provider, cached=True)
        protected, terms = self._protect(text, source)
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, self.translator.translate, protected, source, target)
        try:
            raw = await asyncio.wait_for(future, timeout=self.timeout)
        except TimeoutError:
            self._down_until = time.monotonic() + RETRY_AFTER_FAILURE
            log.warning("translation by %s timed out after %.1f s", provider, self.timeout)
            raise TranslationUnavailable(f"{provider} did not answer within {self.timeout} s") from None
        except TranslationUnavailable as exc:
            self._down_until = time.monotonic() + RETRY_AFTER_FAILURE
            log.warning("translation by %s failed: %s", provider, exc)
            raise
        result = self._restore(raw, terms, target)
        async with self.database.unit_of_work() as session:
            session.add(
                Translation(
                    provider=provider,
                    source_language=source,
                    target_language=target,
                    source_hash=digest,
                    source_text=text,
                    translated_text=result,
                    client_id=client_id,
                )
            )
            try:
                await session.commit()
            except IntegrityError:
                await session.rollback()  # another message cached the same text meanwhile
        return Translated(text=result, provider=provider, cached=False)

    def close(self) -> None:
        """Stop the thread pool without waiting for a hung provider."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def build_translator(name: str, *, url: str | None, key: str | None) -> Translator:
    """The provider named in the settings."""
    if name == "none":
        return NoTranslator()
    return DeepTranslator(name, url=url, key=key)
