"""Load and validate content/: texts per language, answer metadata, lexicons, glossary."""

from __future__ import annotations

import re
import string
import unicodedata
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from bot import LANGUAGES
from bot.errors import ContentError

KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
TOPICS = ("language_course", "recognition", "qualification", "counselling")
ASPECTS = (
    "overview", "course_types", "entitlement", "cost", "registration", "childcare", "exam",
    "berufssprachkurs", "where_to_apply", "documents", "outcome", "zab", "advice",
    "bildungsgutschein", "umschulung", "teilqualifizierung", "ausbildung",
)  # fmt: skip

REQUIRED_KEYS = (
    "greet", "help", "goodbye", "thanks_reply", "language.choose", "language.set",
    "language.ask_switch", "language.name", "topic.choose", "aspect.more", "fallback.rephrase",
    "fallback.offer_human", "out_of_scope", "engine.unavailable", "storage.unavailable",
    "error.generic", "input.empty", "input.too_long", "input.unsupported", "input.photo",
    "input.sticker", "input.voice", "input.document", "input.location", "input.edited",
    "translation.machine", "translation.unavailable", "answer.footer", "answer.links",
    "emergency", "handoff.contacts", "privacy.info", "button.yes", "button.no",
    "button.topic.language_course",
    "button.topic.recognition", "button.topic.qualification", "button.appointment",
    "button.human", "button.language",
) + tuple(f"aspect.{a}" for a in ASPECTS)  # fmt: skip
"""Keys the code looks up; the reference language must have each of them."""

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u200e\u200f"), " ") | {
    ord("’"): "'",
    ord("ʼ"): "'",
    ord("`"): "'",
}


def normalise(text: str) -> str:
    """Lower case, no Latin diacritics, no zero-width characters, single spaces: for matching."""
    text = unicodedata.normalize("NFKC", text).translate(_ZERO_WIDTH).casefold()
    text = text.replace("ß", "ss").replace("ı", "i")
    kept: list[str] = []
    base_is_latin = False
    for ch in unicodedata.normalize("NFD", text):
        if unicodedata.combining(ch):
            if base_is_latin:
                continue  # ü -> u, é -> e, ş -> s; Cyrillic й/ї and Arabic marks stay
        else:
            base_is_latin = ch.isascii()
        kept.append(ch)
    result = unicodedata.normalize("NFC", "".join(kept)).translate(_ARABIC_VARIANTS)
    return " ".join(result.split())


_ARABIC_VARIANTS = str.maketrans({"ي": "ی", "ك": "ک", "ى": "ی", "ة": "ه", "أ": "ا", "إ": "ا", "آ": "ا"})
"""Arabic/Persian letter variants that clients mix freely."""


def placeholders(text: str) -> frozenset[str]:
    """The ``{name}`` placeholders of a text; raise ValueError on stray braces."""
    names = set()
    for _literal, name, _spec, _conv in string.Formatter().parse(text):
        if name is not None:
            if not name.isidentifier():
                raise ValueError(f"placeholder {{{name}}} is not a plain name")
            names.add(name)
    return frozenset(names)


@dataclass(frozen=True, kw_only=True)
class AnswerMeta:
    """What the app adds to an answer text: links, source and the "Stand:" date."""

    key: str
    topic: str
    aspect: str
    links: tuple[str, ...]
    source: str
    reviewed: date
    stand: date | None
    needs_adviser: bool


@dataclass(frozen=True, kw_only=True)
class Lexicon:
    """Words matched in one language (normalised)."""

    language: str
    yes: frozenset[str]
    no: frozenset[str]
    emergency: tuple[str, ...]
    aspects: dict[str, tuple[str, ...]]
    glossary: dict[str, str]
    embedded_terms: frozenset[str] = frozenset()


CONSENT_SCOPES = ("handoff", "booking", "reminders", "referral")


@dataclass(frozen=True, kw_only=True)
class ConsentVersion:
    """One version of a consent text."""

    scope: str
    version: int
    date: date
    material: bool

    @property
    def key(self) -> str:
        """The text key of this version."""
        return f"consent.{self.scope}.v{self.version}"

    @property
    def text_id(self) -> str:
        """The identifier recorded with a consent."""
        return f"{self.scope}-v{self.version}"


@dataclass(frozen=True, kw_only=True)
class ConsentPolicy:
    """Consent versions per scope and the retention period."""

    retention_days: int
    versions: dict[str, tuple[ConsentVersion, ...]]

    def current(self, scope: str) -> ConsentVersion:
        """The version clients are asked with now."""
        return self.versions[scope][-1]

    def required(self, scope: str) -> int:
        """The lowest version a consent must have to be valid (the newest material change)."""
        return max(v.version for v in self.versions[scope] if v.material)


@dataclass(frozen=True, kw_only=True)
class Content:
    """The validated content tree."""

    texts: dict[str, dict[str, str]]
    answers: dict[str, AnswerMeta]
    lexicons: dict[str, Lexicon]
    glossary: dict[str, dict[str, str]]
    consent: ConsentPolicy
    organisations: dict[str, str]
    source_files: dict[str, Path] = field(default_factory=dict)

    def text(self, key: str, language: str) -> str | None:
        """The authored text of a key in a language, or None when it is not authored there."""
        return self.texts.get(language, {}).get(key)

    def reference(self, key: str) -> str:
        """The German reference text of a key; raise KeyError if the key does not exist."""
        return self.texts["de"][key]

    def missing(self) -> list[tuple[str, str]]:
        """(language, key) pairs that are authored in German but not in that language."""
        reference = self.texts["de"]
        return [(lang, key) for lang in LANGUAGES for key in reference if key not in self.texts.get(lang, {})]

    def answer_key(self, topic: str, aspect: str) -> str | None:
        """The answer key for a topic and aspect, if such an answer exists."""
        key = f"answer.{topic}.{aspect}"
        return key if key in self.answers else None

    def aspects_of(self, topic: str) -> list[str]:
        """The aspects that have an answer under a topic, in content order."""
        return [meta.aspect for meta in self.answers.values() if meta.topic == topic]


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ContentError(f"{path}: file is missing") from None
    except UnicodeDecodeError as exc:
        raise ContentError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except yaml.YAMLError as exc:
        raise ContentError(f"{path}: invalid YAML: {exc}") from None
    except ValueError as exc:  # PyYAML builds dates such as 2026-02-30 without converting the error
        raise ContentError(f"{path}: invalid value: {exc}") from None


def _check_url(where: str, url: Any) -> str:
    if not isinstance(url, str):
        raise ContentError(f"{where}: link must be a string, got {url!r}")
    parsed = urlparse(url)
    if parsed.scheme != "https" or "." not in parsed.netloc or " " in url:
        raise ContentError(f"{where}: link {url!r} is not a valid https URL")
    return url


def _load_texts(directory: Path) -> tuple[dict[str, dict[str, str]], dict[str, Path]]:
    texts: dict[str, dict[str, str]] = {}
    files: dict[str, Path] = {}
    for path in sorted((directory / "texts").glob("*.yml")):
        lang = path.stem
        if lang not in LANGUAGES:
            raise ContentError(f"{path}: unknown language {lang!r} (allowed: {', '.join(LANGUAGES)})")
        data = _load_yaml(path)
        if not isinstance(data, dict):
            raise ContentError(f"{path}: must be a mapping of key: text")
        entries: dict[str, str] = {}
        for key, value in data.items():
            if not isinstance(key, str) or not KEY_PATTERN.match(key):
                raise ContentError(f"{path}: key {key!r} is not a dotted lower-case name")
            if not isinstance(value, str) or not value.strip():
                raise ContentError(f"{path}: key {key!r} has an empty or non-text value")
            try:
                placeholders(value)
            except ValueError as exc:
                raise ContentError(f"{path}: key {key!r}: {exc}") from None
            entries[key] = value.strip()
        texts[lang] = entries
        files[lang] = path
    if "de" not in texts:
        raise ContentError(f"{directory / 'texts' / 'de.yml'}: the German reference texts are missing")
    reference = texts["de"]
    for key in REQUIRED_KEYS:
        if key not in reference:
            raise ContentError(f"{files['de']}: required key {key!r} is missing")
    for lang, entries in texts.items():
        for key, value in entries.items():
            if key not in reference:
                raise ContentError(f"{files[lang]}: key {key!r} does not exist in the reference texts/de.yml")
            if placeholders(value) != placeholders(reference[key]):
                raise ContentError(
                    f"{files[lang]}: key {key!r} has placeholders {sorted(placeholders(value))}, "
                    f"the reference has {sorted(placeholders(reference[key]))}"
                )
    return texts, files


def _load_answers(directory: Path, reference: dict[str, str]) -> dict[str, AnswerMeta]:
    path = directory / "answers.yml"
    data = _load_yaml(path)
    if not isinstance(data, dict):
        raise ContentError(f"{path}: must be a mapping of answer key: metadata")
    answers: dict[str, AnswerMeta] = {}
    for key, meta in data.items():
        where = f"{path}: {key}"
        if not isinstance(meta, dict):
            raise ContentError(f"{where}: must be a mapping")
        if key not in reference:
            raise ContentError(f"{where}: no text for this answer in texts/de.yml")
        topic, aspect = meta.get("topic"), meta.get("aspect")
        if topic not in TOPICS:
            raise ContentError(f"{where}: topic {topic!r} is not one of {', '.join(TOPICS)}")
        if aspect not in ASPECTS or key != f"answer.{topic}.{aspect}":
            raise ContentError(f"{where}: aspect {aspect!r} does not match the key answer.<topic>.<aspect>")
        links = meta.get("links") or []
        if not isinstance(links, list) or not 1 <= len(links) <= 3:
            raise ContentError(f"{where}: needs one to three links")
        reviewed, stand = meta.get("reviewed"), meta.get("stand")
        if not isinstance(reviewed, date):
            raise ContentError(f"{where}: reviewed must be a date (YYYY-MM-DD), got {reviewed!r}")
        if stand is not None and not isinstance(stand, date):
            raise ContentError(f"{where}: stand must be a date (YYYY-MM-DD), got {stand!r}")
        source = meta.get("source")
        if not isinstance(source, str) or not source.strip():
            raise ContentError(f"{where}: source is missing")
        answers[key] = AnswerMeta(
            key=key,
            topic=topic,
            aspect=aspect,
            links=tuple(_check_url(where, url) for url in links),
            source=source.strip(),
            reviewed=reviewed,
            stand=stand,
            needs_adviser=bool(meta.get("needs_adviser", False)),
        )
    for key in reference:
        if key.startswith("answer.") and key not in ("answer.footer", "answer.links") and key not in answers:
            raise ContentError(f"{path}: answer {key!r} of texts/de.yml has no metadata")
    return answers


def _str_list(where: str, value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
        raise ContentError(f"{where}: must be a list of words")
    return [normalise(str(v)) for v in value if str(v).strip()]


def _load_lexicons(directory: Path) -> dict[str, Lexicon]:
    lexicons: dict[str, Lexicon] = {}
    for path in sorted((directory / "lexicon").glob("*.yml")):
        lang = path.stem
        if lang not in LANGUAGES:
            raise ContentError(f"{path}: unknown language {lang!r}")
        data = _load_yaml(path) or {}
        if not isinstance(data, dict):
            raise ContentError(f"{path}: must be a mapping")
        aspects_raw = data.get("aspects") or {}
        if not isinstance(aspects_raw, dict):
            raise ContentError(f"{path}: aspects must be a mapping of aspect: [words]")
        aspects: dict[str, tuple[str, ...]] = {}
        for aspect, words in aspects_raw.items():
            if aspect not in ASPECTS:
                raise ContentError(f"{path}: aspects: unknown aspect {aspect!r}")
            aspects[aspect] = tuple(w for w in _str_list(f"{path}: aspects.{aspect}", words) if len(w) >= 3)
        glossary_raw = data.get("glossary") or {}
        if not isinstance(glossary_raw, dict):
            raise ContentError(f"{path}: glossary must be a mapping of German term: translation")
        lexicons[lang] = Lexicon(
            language=lang,
            # YAML 1.1 reads an unquoted `yes:` / `no:` key as a boolean: accept both spellings.
            yes=frozenset(_str_list(f"{path}: yes", data.get("yes", data.get(True)))),
            no=frozenset(_str_list(f"{path}: no", data.get("no", data.get(False)))),
            emergency=tuple(w for w in _str_list(f"{path}: emergency", data.get("emergency")) if len(w) >= 4),
            aspects=aspects,
            glossary={str(k): str(v) for k, v in glossary_raw.items() if str(v).strip()},
            embedded_terms=frozenset(_str_list(f"{path}: embedded_terms", data.get("embedded_terms"))),
        )
    return lexicons


def _load_glossary(directory: Path) -> dict[str, dict[str, str]]:
    path = directory / "glossary.yml"
    if not path.exists():
        return {}
    data = _load_yaml(path) or {}
    if not isinstance(data, dict):
        raise ContentError(f"{path}: must be a mapping of German term: details")
    glossary: dict[str, dict[str, str]] = {}
    for term, entry in data.items():
        if not isinstance(entry, dict) or not str(entry.get("explanation", "")).strip():
            raise ContentError(f"{path}: {term}: needs an explanation")
        glossary[str(term)] = {str(k): str(v) for k, v in entry.items()}
    return glossary


def _load_consent(directory: Path, reference: dict[str, str]) -> ConsentPolicy:
    path = directory / "consent.yml"
    data = _load_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("scopes"), dict):
        raise ContentError(f"{path}: must have retention_days and scopes")
    days = data.get("retention_days")
    if not isinstance(days, int) or not 1 <= days <= 3650:
        raise ContentError(f"{path}: retention_days must be a whole number of days (1-3650)")
    versions: dict[str, tuple[ConsentVersion, ...]] = {}
    for scope in CONSENT_SCOPES:
        entry_of_scope = data["scopes"].get(scope)
        raw = entry_of_scope.get("versions") if isinstance(entry_of_scope, dict) else None
        if not isinstance(raw, list) or not raw:
            raise ContentError(f"{path}: scope {scope!r} needs at least one version")
        parsed = []
        for entry in raw:
            if not isinstance(entry, dict) or not isinstance(entry.get("version"), int):
                raise ContentError(f"{path}: {scope}: each version needs a number")
            if not isinstance(entry.get("date"), date):
                raise ContentError(f"{path}: {scope} v{entry['version']}: date must be YYYY-MM-DD")
            version = ConsentVersion(
                scope=scope,
                version=entry["version"],
                date=entry["date"],
                material=bool(entry.get("material")),
            )
            if version.key not in reference:
                raise ContentError(
                    f"{path}: {scope} v{version.version}: no text {version.key!r} in texts/de.yml"
                )
            parsed.append(version)
        numbers = [v.version for v in parsed]
        if numbers != sorted(set(numbers)) or not parsed[0].material:
            raise ContentError(f"{path}: {scope}: versions must increase and the first must be material")
        versions[scope] = tuple(parsed)
    return ConsentPolicy(retention_days=days, versions=versions)


def _load_organisations(directory: Path) -> dict[str, str]:
    path = directory / "organisations.yml"
    data = _load_yaml(path)
    if not isinstance(data, dict) or not data:
        raise ContentError(f"{path}: must map organisation ids to their details")
    names: dict[str, str] = {}
    for org_id, entry in data.items():
        if not isinstance(org_id, str) or not re.fullmatch(r"[a-z][a-z0-9-]{1,31}", org_id):
            raise ContentError(
                f"{path}: organisation id {org_id!r} must be lower-case letters, digits, dashes"
            )
        if not isinstance(entry, dict) or not str(entry.get("name", "")).strip():
            raise ContentError(f"{path}: {org_id}: name is missing")
        names[org_id] = str(entry["name"]).strip()
    return names


def load_content(directory: Path) -> Content:
    """Load and validate the whole tree; raise ContentError naming the file and key."""
    if not directory.is_dir():
        raise ContentError(f"{directory}: content directory not found")
    texts, files = _load_texts(directory)
    return Content(
        texts=texts,
        answers=_load_answers(directory, texts["de"]),
        lexicons=_load_lexicons(directory),
        glossary=_load_glossary(directory),
        consent=_load_consent(directory, texts["de"]),
        organisations=_load_organisations(directory),
        source_files=files,
    )
