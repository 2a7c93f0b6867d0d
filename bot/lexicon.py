"""Matching the content lexicons: yes/no replies, emergencies, answer aspects."""

from __future__ import annotations

import re
from collections.abc import Iterable

from bot.content import Content, normalise


class LexiconMatcher:
    """Matches over every language's lexicon at once (clients mix languages)."""

    def __init__(self, content: Content) -> None:
        lexicons = content.lexicons.values()
        self._yes = frozenset().union(*(lex.yes for lex in lexicons))
        self._no = frozenset().union(*(lex.no for lex in lexicons))
        self._emergency = _alternation(p for lex in lexicons for p in lex.emergency)
        self._aspects: list[tuple[str, re.Pattern[str]]] = []
        names = sorted({a for lex in lexicons for a in lex.aspects})
        for aspect in names:
            words = [w for lex in lexicons for w in lex.aspects.get(aspect, ())]
            if words:
                self._aspects.append((aspect, _alternation(words)))

    def is_yes(self, text: str) -> bool:
        """The whole message is a yes."""
        return _strip(text) in self._yes

    def is_no(self, text: str) -> bool:
        """The whole message is a no."""
        return _strip(text) in self._no

    def is_emergency(self, text: str) -> bool:
        """The message names acute danger in any language."""
        return bool(self._emergency.pattern) and self._emergency.search(normalise(text)) is not None

    def aspects(self, text: str) -> list[str]:
        """The answer aspects a message asks about, most mentioned first."""
        normalised = normalise(text)
        counts = []
        for aspect, pattern in self._aspects:
            hits = len(pattern.findall(normalised))
            if hits:
                counts.append((hits, aspect))
        return [aspect for _hits, aspect in sorted(counts, key=lambda c: -c[0])]


SHORT_STEM = 5
"""Stems shorter than this match only as whole words ("zab" not in "yazabilir" or "zaban")."""


def _alternation(words: Iterable[str]) -> re.Pattern[str]:
    unique = sorted({w for w in words if w}, key=len, reverse=True)
    if not unique:
        return re.compile(r"(?!x)x")
    parts = [re.escape(w) if len(w) >= SHORT_STEM else rf"(?<!\w){re.escape(w)}(?!\w)" for w in unique]
    return re.compile("|".join(parts))


_EDGE_PUNCTUATION = re.compile(r"^[\s.!?,;:…؟。]+|[\s.!?,;:…؟。]+$")


def _strip(text: str) -> str:
    return _EDGE_PUNCTUATION.sub("", normalise(text))
