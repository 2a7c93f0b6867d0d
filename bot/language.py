"""The client's language: explicit choice first, then a hint, then confident detection of longer messages."""

from __future__ import annotations

from dataclasses import dataclass

from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

from bot import LANGUAGES

MIN_WORDS = 3
"""Messages with fewer words never change the language ("ok", "ja", "да")."""
MIN_LETTERS = 12
CONFIDENT = 0.75
"""Detection at or above this confidence (of lingua's relative values) may switch the language."""
UNSURE = 0.45


@dataclass(frozen=True, kw_only=True)
class Detection:
    """What the detector thinks of one message."""

    language: str | None
    confidence: float
    words: int

    @property
    def usable(self) -> bool:
        """Long enough to say anything about the language."""
        return self.language is not None and self.words >= MIN_WORDS


@dataclass(frozen=True, kw_only=True)
class LanguageDecision:
    """The language to answer in, and what to tell or ask the client."""

    language: str
    source: str  # explicit | detected | hint | default
    changed: bool = False
    ask_switch_to: str | None = None
    first_contact: bool = False


SCRIPT_LANGUAGES = {
    "arabic": ("ar", "fa"),
    "cyrillic": ("ru", "uk"),
    "latin": ("de", "en", "tr", "fr"),
}


def script_of(word: str) -> str | None:
    """The script of a word's letters: arabic, cyrillic, latin or None."""
    counts = {"arabic": 0, "cyrillic": 0, "latin": 0}
    for ch in word:
        if not ch.isalpha():
            continue
        code = ord(ch)
        if 0x0600 <= code <= 0x06FF or 0xFB50 <= code <= 0xFEFF:
            counts["arabic"] += 1
        elif 0x0400 <= code <= 0x04FF:
            counts["cyrillic"] += 1
        elif code < 0x0250:
            counts["latin"] += 1
    script, count = max(counts.items(), key=lambda item: item[1])
    return script if count else None


class LanguageDetector:
    """lingua restricted to our eight languages (built once, ~1.6 s), aware of scripts.

    Clients embed German administrative words ("Integrationskurs", "Termin") in sentences of
    their own language; those words are left out before detecting. A message mostly in Arabic
    script can only be Arabic or Persian, one in Cyrillic only Russian or Ukrainian.
    """

    def __init__(self, embedded_terms: frozenset[str] = frozenset()) -> None:
        languages = [Language.from_iso_code_639_1(getattr(IsoCode639_1, code.upper())) for code in LANGUAGES]
        self._detector = LanguageDetectorBuilder.from_languages(*languages).build()
        self.embedded_terms = embedded_terms

    def detect(self, text: str) -> Detection:
        """Detect the language of a message with a confidence between 0 and 1."""
        from bot.content import normalise

        words = [w for w in text.split() if any(ch.isalpha() for ch in w)]
        kept = [w for w in words if normalise(w).strip(".,!?;:()\"'") not in self.embedded_terms]
        if not kept:
            return Detection(language=None, confidence=0.0, words=0)
        by_script: dict[str, list[str]] = {}
        for word in kept:
            script = script_of(word)
            if script:
                by_script.setdefault(script, []).append(word)
        if not by_script:
            return Detection(language=None, confidence=0.0, words=0)
        script, script_words = max(by_script.items(), key=lambda item: sum(map(len, item[1])))
        sample = " ".join(script_words)
        letters = sum(ch.isalpha() for ch in sample)
        if letters < MIN_LETTERS // 2:
            return Detection(language=None, confidence=0.0, words=len(script_words))
        candidates = SCRIPT_LANGUAGES[script]
        values = {
            v.language.iso_code_639_1.name.lower(): v.value
            for v in self._detector.compute_language_confidence_values(sample)
        }
        total = sum(values.get(code, 0.0) for code in candidates)
        if total <= 0:
            return Detection(language=None, confidence=0.0, words=len(script_words))
        code = max(candidates, key=lambda c: values.get(c, 0.0))
        confidence = values.get(code, 0.0) / total
        if letters < MIN_LETTERS:
            confidence *= 0.5
        return Detection(language=code, confidence=confidence, words=len(script_words))


def decide_language(
    *,
    current: str | None,
    source: str,
    detection: Detection,
    hint: str | None,
    default: str,
) -> LanguageDecision:
    """Apply the policy: never flip on short or unsure messages; ask before overriding a choice."""
    hint = hint if hint in LANGUAGES else None
    confident = detection.usable and detection.confidence >= CONFIDENT
    if current is None:
        if confident and detection.language:
            return LanguageDecision(language=detection.language, source="detected", first_contact=True)
        if hint:
            return LanguageDecision(language=hint, source="hint", first_contact=True)
        return LanguageDecision(language=default, source="default", first_contact=True)
    if not confident or detection.language == current or detection.language is None:
        return LanguageDecision(language=current, source=source)
    if source == "explicit":
        return LanguageDecision(language=current, source=source, ask_switch_to=detection.language)
    return LanguageDecision(language=detection.language, source="detected", changed=True)
