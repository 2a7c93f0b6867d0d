"""The booking directory: services of the partners, the towns of Kreis Paderborn, opening hours, slots."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from bot import LANGUAGES
from bot.content import TOPICS, normalise
from bot.errors import ContentError

__all__ = [
    "KINDS",
    "Directory",
    "ExceptionDay",
    "Location",
    "NameMatcher",
    "OpeningHours",
    "Service",
    "day_hours",
    "load_directory",
    "opening_slots",
    "public_holidays",
    "read_yaml",
    "slot_end",
]

DIRECTORY_FILE = "directory.yml"

KINDS = ("mbe", "jmd", "recognition", "jobcenter_integration", "refugee_advice", "migration_service")
"""What a service is: MBE, JMD, recognition advice, the Jobcenter's team, refugee advice, other."""

_WEEKDAYS: dict[str, int] = {}
for _number, _names in enumerate(
    (
        ("monday", "mon", "montag", "mo"),
        ("tuesday", "tue", "dienstag", "di"),
        ("wednesday", "wed", "mittwoch", "mi"),
        ("thursday", "thu", "donnerstag", "do"),
        ("friday", "fri", "freitag", "fr"),
        ("saturday", "sat", "samstag", "sa"),
        ("sunday", "sun", "sonntag", "so"),
    )
):
    _WEEKDAYS.update(dict.fromkeys(_names, _number))

_ID = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")
_MAX_SLOTS_DAYS = 3660  # opening_slots refuses ranges longer than ten years: a caller's mistake

_SERVICE_FIELDS = {
    "organisation", "kind", "name", "source", "topics", "min_age", "max_age", "towns", "locations",
    "languages", "hours", "exceptions", "closed_on_public_holidays", "slot_minutes", "capacity",
    "to_confirm",
}  # fmt: skip
_OPTIONAL_SERVICE_FIELDS = {"source", "min_age", "max_age", "exceptions", "closed_on_public_holidays"}
_REQUIRED_SERVICE_FIELDS = _SERVICE_FIELDS - _OPTIONAL_SERVICE_FIELDS
_LOCATION_FIELDS = {"id", "name", "town", "address", "to_confirm"}
_TOWN_FIELDS = {"spellings", "districts", "ambiguous"}


# --- YAML ---------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML that rejects duplicate keys and leaves dates and times to the validator."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Any] = set()
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _scalar_as_text(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    assert isinstance(node, yaml.ScalarNode)
    return loader.construct_scalar(node)


def _int_or_clock_time(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    # YAML 1.1 reads an unquoted 10:30 as the base-60 number 630; keep it as the text "10:30".
    assert isinstance(node, yaml.ScalarNode)
    value = loader.construct_scalar(node)
    if isinstance(value, str) and ":" in value:
        return value
    return loader.construct_yaml_int(node)


# Dates stay text so that a wrong date is reported with its key, not as a YAML crash.
_StrictLoader.add_constructor("tag:yaml.org,2002:timestamp", _scalar_as_text)
_StrictLoader.add_constructor("tag:yaml.org,2002:int", _int_or_clock_time)


def read_yaml(path: Path) -> Any:
    """Read a content YAML file strictly; raise ContentError naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ContentError(f"{path}: file is missing") from None
    except UnicodeDecodeError as exc:
        raise ContentError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ContentError(f"{path}: invalid YAML: {exc}") from None


# --- the data -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class OpeningHours:
    """One weekly range of opening hours, for every location of the service or only one."""

    weekday: int  # 0 = Monday
    start: time
    end: time
    location: str | None = None


@dataclass(frozen=True, kw_only=True)
class ExceptionDay:
    """A date on which a service is closed or open at other hours than usual."""

    date: date
    closed: bool
    hours: tuple[tuple[time, time], ...] = ()
    note: str = ""
    location: str | None = None


@dataclass(frozen=True, kw_only=True)
class Location:
    """A place where a service receives clients."""

    id: str
    name: str
    town: str
    address: str | None
    to_confirm: bool


@dataclass(frozen=True, kw_only=True)
class Service:
    """A bookable counselling service of one organisation."""

    id: str
    organisation: str
    kind: str
    name: str
    topics: tuple[str, ...]
    min_age: int | None
    max_age: int | None  # inclusive
    towns: tuple[str, ...]
    locations: tuple[Location, ...]
    languages: tuple[str, ...]
    hours: tuple[OpeningHours, ...]
    exceptions: tuple[ExceptionDay, ...]
    slot_minutes: int
    capacity: int
    to_confirm: bool
    closed_on_public_holidays: bool = True
    source: str | None = None

    def admits_age(self, low: int, high: int | None) -> bool:
        """Whether someone aged between low and high (inclusive; None = no limit) may come."""
        if self.max_age is not None and low > self.max_age:
            return False
        return not (self.min_age is not None and high is not None and high < self.min_age)

    def covers(self, town: str) -> bool:
        """Whether the service takes clients living in the town."""
        return town in self.towns

    def speaks(self, language: str) -> bool:
        """Whether the service's advisers speak the language."""
        return language in self.languages

    def location(self, location_id: str) -> Location:
        """The location with this id; raise KeyError if the service has none such."""
        for location in self.locations:
            if location.id == location_id:
                return location
        raise KeyError(location_id)


# --- finding town names in free text ------------------------------------------------------------

_STRIP = dict.fromkeys(map(ord, "\u0640"), None)  # Arabic tatweel, a stretching stroke

# Case endings a name may carry without a space: Russian/Ukrainian ("в Падерборне", "у Бюрені") and
# Turkish ("Paderbornda", "Delbrückten"); with an apostrophe ("Paderborn'da") the ending is a word.
_CYRILLIC_ENDINGS = ("а", "у", "е", "і", "и", "ы", "ом", "ем", "ові", "ой", "ою")
_LATIN_ENDINGS = (
    "da", "de", "ta", "te", "dan", "den", "tan", "ten", "a", "e", "ya", "ye", "daki", "deki",
    "taki", "teki", "li", "lu", "dayim", "deyim", "dayiz", "deyiz",
)  # fmt: skip
_TURKISH_CASE_WORDS = frozenset(_LATIN_ENDINGS)
_ENDINGS = _LATIN_ENDINGS + _CYRILLIC_ENDINGS
# Arabic joins prepositions and "and" to the next word: "ببادربورن" = "in Paderborn".
_ARABIC_PREFIXES = ("و", "ب", "ل", "ف", "وب", "فب")
# Words before a place name that say "in / from / to / near" in our eight languages (normalised).
_PLACE_WORDS = frozenset(
    (
        "in", "im", "aus", "nach", "bei", "from", "near", "at", "a", "en", "de", "des", "du", "pour",
        "vers", "в", "во", "у", "из", "із", "з", "под", "біля", "около", "возле",
        "فی", "من", "الی", "الا", "الى", "الي", "در", "از", "نزد", "نزدیک", "به",
    )
)  # fmt: skip


def _tokens(text: str) -> list[str]:
    folded = normalise(text).translate(_STRIP)
    folded = "".join(ch for ch in folded if unicodedata.category(ch) != "Mn" or _keeps_mark(ch))
    return re.findall(r"\w+", folded)


def _keeps_mark(mark: str) -> bool:
    # After NFC Cyrillic й/ё are single letters; remaining marks are Arabic vowel signs: drop them.
    return "CYRILLIC" in unicodedata.name(mark, "")


def _script(token: str) -> str:
    last = token[-1]
    if last.isascii():
        return "latin"
    name = unicodedata.name(last, "")
    if name.startswith("CYRILLIC"):
        return "cyrillic"
    if name.startswith(("ARABIC", "PERSIAN")):
        return "arabic"
    return "other"


@dataclass(frozen=True, kw_only=True)
class _Pattern:
    tokens: tuple[str, ...]
    target: str
    guarded: bool  # also an ordinary word: only after "in/aus/в/في…" or as the whole message


@dataclass(frozen=True, kw_only=True)
class _Hit:
    start: int
    end: int
    target: str
    after_place_word: bool


def _bases(word: str) -> set[str]:
    """The forms a written word may have before an ending or after a joined Arabic prefix."""
    bases = {word}
    for end in _ENDINGS:
        if word.endswith(end):
            bases.add(word[: -len(end)])
    for prefix in _ARABIC_PREFIXES:
        if word.startswith(prefix):
            bases.add(word[len(prefix) :])
    return bases


def _same_word(written: str, name: str) -> bool:
    if written == name:
        return True
    script = _script(name)
    if script == "latin" and len(name) >= 5:
        return written.startswith(name) and written[len(name) :] in _LATIN_ENDINGS
    if script == "cyrillic" and len(name) >= 4:
        return written.startswith(name) and written[len(name) :] in _CYRILLIC_ENDINGS
    return False


def _same_first_word(written: str, name: str, *, last: bool) -> bool:
    if written == name or (last and _same_word(written, name)):
        return True
    if _script(name) == "arabic" and len(name) >= 4:
        return any(written == prefix + name for prefix in _ARABIC_PREFIXES)
    return False


@dataclass(frozen=True)
class NameMatcher:
    """Finds place names (with spellings, scripts and case endings) in free text."""

    patterns: tuple[_Pattern, ...]  # longer names first
    ignore: tuple[tuple[str, ...], ...] = ()
    by_first_word: dict[str, tuple[_Pattern, ...]] = field(init=False, repr=False, compare=False)
    ignore_by_first_word: dict[str, tuple[tuple[str, ...], ...]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        # Index by first word so a long message costs a few dictionary look-ups per word.
        index: dict[str, list[_Pattern]] = {}
        for pattern in self.patterns:
            index.setdefault(pattern.tokens[0], []).append(pattern)
        object.__setattr__(self, "by_first_word", {k: tuple(v) for k, v in index.items()})
        ignore: dict[str, list[tuple[str, ...]]] = {}
        for phrase in self.ignore:
            ignore.setdefault(phrase[0], []).append(phrase)
        object.__setattr__(self, "ignore_by_first_word", {k: tuple(v) for k, v in ignore.items()})

    def find(self, text: str) -> str | None:
        """The name a text mentions; one after "in/aus/в/في…" wins over an earlier bare one."""
        words = _tokens(text)
        if not words:
            return None
        bases = [_bases(word) for word in words]
        blocked: set[int] = set()
        for i in range(len(words)):
            for phrase in (p for base in bases[i] for p in self.ignore_by_first_word.get(base, ())):
                window = words[i : i + len(phrase)]
                if len(window) == len(phrase) and all(map(_same_word, window, phrase)):
                    blocked.update(range(i, i + len(phrase)))
        hits: list[_Hit] = []
        for i in range(len(words)):
            hit = self._longest_at(words, i, bases[i])
            if hit is not None and not blocked.intersection(range(hit.start, hit.end)):
                hits.append(hit)
        if not hits:
            return None
        placed = [hit for hit in hits if hit.after_place_word]
        return (placed or hits)[0].target

    def _longest_at(self, words: list[str], i: int, bases: set[str]) -> _Hit | None:
        best: _Hit | None = None
        candidates = [p for base in bases for p in self.by_first_word.get(base, ())]
        for pattern in sorted(candidates, key=lambda p: -len(p.tokens)):
            n = len(pattern.tokens)
            if i + n > len(words) or (best is not None and best.end - best.start >= n):
                continue
            window = words[i : i + n]
            if not _same_first_word(window[0], pattern.tokens[0], last=n == 1):
                continue
            if n > 1 and not (
                window[1:-1] == list(pattern.tokens[1:-1]) and _same_word(window[-1], pattern.tokens[-1])
            ):
                continue
            after_place_word = i > 0 and words[i - 1] in _PLACE_WORDS
            if pattern.guarded and not (
                after_place_word
                or len(words) == n
                or (i + n < len(words) and words[i + n] in _TURKISH_CASE_WORDS)
                or window[-1] != pattern.tokens[-1]  # carries a case ending, so it is a place
            ):
                continue
            best = _Hit(start=i, end=i + n, target=pattern.target, after_place_word=after_place_word)
        return best


# --- the directory ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Directory:
    """Organisations, their services, the towns of Kreis Paderborn and how to recognise them."""

    organisations: dict[str, str]  # id -> name
    services: dict[str, Service]
    towns: tuple[str, ...]
    timezone: ZoneInfo
    town_names: NameMatcher = field(default_factory=lambda: NameMatcher(()))
    outside_names: NameMatcher = field(default_factory=lambda: NameMatcher(()))
    source: Path | None = None

    def match_town(self, text: str) -> str | None:
        """The Kreis Paderborn town (official name) that a free-text message names, or None."""
        return self.town_names.find(text)

    def is_outside(self, text: str) -> str | None:
        """A well-known town outside Kreis Paderborn that the message names, or None."""
        return self.outside_names.find(text)

    def services_of(self, organisation: str) -> list[Service]:
        """The services of an organisation, in the order of the directory file."""
        return [service for service in self.services.values() if service.organisation == organisation]

    def location(self, location_id: str) -> tuple[Service, Location]:
        """The service and location with this location id; raise KeyError if there is none."""
        for service in self.services.values():
            for location in service.locations:
                if location.id == location_id:
                    return service, location
        raise KeyError(location_id)


# --- loading and validation ---------------------------------------------------------------------


class _Checker:
    """Small typed readers that name the file and key in every error."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, problem: str) -> ContentError:
        return ContentError(f"{self.path}: {where}: {problem}")

    def mapping(self, where: str, value: Any, *, allowed: set[str] | None = None) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"must be a mapping, got {_show(value)}")
        for key in value:
            if not isinstance(key, str):
                raise self.fail(where, f"key {key!r} must be text")
            if allowed is not None and key not in allowed:
                raise self.fail(where, f"unknown field {key!r} (allowed: {', '.join(sorted(allowed))})")
        return value

    def require(self, where: str, data: dict[str, Any], keys: set[str]) -> None:
        for key in sorted(keys):
            if key not in data:
                raise self.fail(where, f"{key} is missing")

    def text(self, where: str, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where, f"must be a non-empty text, got {_show(value)}")
        return value.strip()

    def flag(self, where: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.fail(where, f"must be true or false, got {_show(value)}")
        return value

    def integer(self, where: str, value: Any, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(where, f"must be a whole number from {low} to {high}, got {_show(value)}")
        return value

    def text_list(self, where: str, value: Any, *, allowed: tuple[str, ...] | None = None) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value:
            raise self.fail(where, f"must be a non-empty list, got {_show(value)}")
        items: list[str] = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise self.fail(f"{where}[{i}]", f"must be a non-empty text, got {_show(item)}")
            item = item.strip()
            if allowed is not None and item not in allowed:
                raise self.fail(f"{where}[{i}]", f"unknown value {item!r} (allowed: {', '.join(allowed)})")
            if item in items:
                raise self.fail(f"{where}[{i}]", f"{item!r} is listed twice")
            items.append(item)
        return tuple(items)

    def clock(self, where: str, value: Any) -> time:
        match = _TIME.match(value) if isinstance(value, str) else None
        if match is None:
            raise self.fail(where, f'must be a time like "09:30", got {_show(value)}')
        hour, minute = int(match[1]), int(match[2])
        if hour > 23 or minute > 59:
            raise self.fail(where, f"{value!r} is not a time of day")
        if minute % 5:
            raise self.fail(where, f"{value!r}: use five-minute steps")
        return time(hour, minute)

    def day(self, where: str, value: Any) -> date:
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
            try:
                return date.fromisoformat(value.strip())
            except ValueError as exc:
                raise self.fail(where, f"{value!r} is not a valid date ({exc})") from None
        raise self.fail(where, f"must be a date YYYY-MM-DD, got {_show(value)}")

    def weekday(self, where: str, value: Any) -> int:
        if not isinstance(value, str) or value.strip().casefold() not in _WEEKDAYS:
            raise self.fail(where, f"unknown weekday {_show(value)} (montag … sonntag or monday … sunday)")
        return _WEEKDAYS[value.strip().casefold()]

    def ranges(self, where: str, value: Any) -> tuple[time, time]:
        data = self.mapping(where, value, allowed={"from", "to"})
        self.require(where, data, {"from", "to"})
        start, end = self.clock(f"{where}.from", data["from"]), self.clock(f"{where}.to", data["to"])
        if start >= end:
            raise self.fail(where, f"from {start:%H:%M} must be before to {end:%H:%M}")
        return start, end


def _show(value: Any) -> str:
    return "nothing" if value is None else repr(value)


def _minutes(moment: time) -> int:
    return moment.hour * 60 + moment.minute


def _overlap(where: str, check: _Checker, spans: list[tuple[time, time, str]]) -> None:
    spans = sorted(spans)
    for (start_a, end_a, label_a), (start_b, _end_b, label_b) in zip(spans, spans[1:], strict=False):
        if start_b < end_a:
            raise check.fail(
                where, f"{label_b} ({start_b:%H:%M}) overlaps {label_a} ({start_a:%H:%M}–{end_a:%H:%M})"
            )


def _load_organisations(content_dir: Path) -> dict[str, str]:
    path = content_dir / "organisations.yml"
    data = read_yaml(path)
    if not isinstance(data, dict) or not data:
        raise ContentError(f"{path}: must map organisation ids to their details")
    names: dict[str, str] = {}
    for org_id, entry in data.items():
        if not isinstance(entry, dict) or not str(entry.get("name", "")).strip():
            raise ContentError(f"{path}: {org_id}: name is missing")
        names[str(org_id)] = str(entry["name"]).strip()
    return names


def _load_towns(
    check: _Checker, raw: Any, key: str, *, taken: dict[tuple[str, ...], str]
) -> tuple[tuple[str, ...], list[_Pattern]]:
    data = check.mapping(key, raw)
    if not data:
        raise check.fail(key, "no towns listed")
    names: list[str] = []
    patterns: list[_Pattern] = []
    for name, entry in data.items():
        where = f"{key}.{name}"
        entry = check.mapping(where, entry if entry is not None else {}, allowed=_TOWN_FIELDS)
        spellings, districts, ambiguous = (
            list(check.text_list(f"{where}.{part}", entry[part])) if part in entry else []
            for part in ("spellings", "districts", "ambiguous")
        )
        plain = ([] if name in ambiguous else [name]) + spellings + districts
        for written, guarded, field_name in [(w, False, "spellings") for w in plain] + [
            (w, True, "ambiguous") for w in ambiguous
        ]:
            tokens = tuple(_tokens(written))
            if not tokens:
                raise check.fail(f"{where}.{field_name}", f"{written!r} has no letters")
            if tokens in taken and taken[tokens] != name:
                raise check.fail(f"{where}.{field_name}", f"{written!r} is already a name of {taken[tokens]}")
            taken[tokens] = name
            patterns.append(_Pattern(tokens=tokens, target=name, guarded=guarded))
        names.append(name)
    return tuple(names), patterns


def _load_hours(
    check: _Checker, where: str, raw: Any, location_ids: tuple[str, ...]
) -> tuple[OpeningHours, ...]:
    if not isinstance(raw, list) or not raw:
        raise check.fail(where, 'needs weekly ranges, e.g. - {day: montag, from: "09:00", to: "12:00"}')
    hours: list[OpeningHours] = []
    for i, entry in enumerate(raw):
        at = f"{where}[{i}]"
        data = check.mapping(at, entry, allowed={"day", "from", "to", "location"})
        check.require(at, data, {"day"})
        start, end = check.ranges(at, {k: v for k, v in data.items() if k in ("from", "to")})
        location = data.get("location")
        if location is not None and location not in location_ids:
            raise check.fail(
                f"{at}.location", f"unknown location {location!r} (allowed: {', '.join(location_ids)})"
            )
        weekday = check.weekday(f"{at}.day", data["day"])
        hours.append(OpeningHours(weekday=weekday, start=start, end=end, location=location))
    for location in location_ids:
        for weekday in range(7):
            spans = [
                (h.start, h.end, f"hours[{i}]")
                for i, h in enumerate(hours)
                if h.weekday == weekday and h.location in (None, location)
            ]
            _overlap(where, check, spans)
    return tuple(hours)


def _load_exceptions(
    check: _Checker, where: str, raw: Any, location_ids: tuple[str, ...]
) -> tuple[ExceptionDay, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise check.fail(where, "must be a list of dates")
    days: list[ExceptionDay] = []
    seen: set[tuple[date, str | None]] = set()
    for i, entry in enumerate(raw):
        at = f"{where}[{i}]"
        data = check.mapping(at, entry, allowed={"date", "closed", "hours", "note", "location"})
        check.require(at, data, {"date"})
        day = check.day(f"{at}.date", data["date"])
        closed = check.flag(f"{at}.closed", data.get("closed", False))
        location = data.get("location")
        if location is not None and location not in location_ids:
            raise check.fail(f"{at}.location", f"unknown location {location!r}")
        if (day, location) in seen:
            raise check.fail(at, f"{day} is listed twice")
        seen.add((day, location))
        if closed == ("hours" in data):
            raise check.fail(at, "give either closed: true or other hours (hours: [{from, to}, …])")
        ranges: list[tuple[time, time]] = []
        if not closed:
            if not isinstance(data["hours"], list) or not data["hours"]:
                raise check.fail(f"{at}.hours", "must be a non-empty list of {from, to}")
            ranges = [check.ranges(f"{at}.hours[{j}]", r) for j, r in enumerate(data["hours"])]
            _overlap(f"{at}.hours", check, [(s, e, f"hours[{j}]") for j, (s, e) in enumerate(ranges)])
        note = check.text(f"{at}.note", data["note"]) if "note" in data else ""
        days.append(
            ExceptionDay(date=day, closed=closed, hours=tuple(sorted(ranges)), note=note, location=location)
        )
    return tuple(days)


def _load_service(
    check: _Checker,
    service_id: Any,
    raw: Any,
    *,
    organisations: dict[str, str],
    towns: tuple[str, ...],
    location_ids: set[str],
) -> Service:
    where = f"services.{service_id}"
    if not isinstance(service_id, str) or not _ID.match(service_id):
        raise check.fail(where, "a service id is lower-case letters, digits and dashes")
    data = check.mapping(where, raw, allowed=_SERVICE_FIELDS)
    check.require(where, data, _REQUIRED_SERVICE_FIELDS)
    organisation = data["organisation"]
    if organisation not in organisations:
        raise check.fail(
            f"{where}.organisation",
            f"unknown organisation {_show(organisation)} (organisations.yml has {', '.join(organisations)})",
        )
    if not service_id.startswith(f"{organisation}-"):
        raise check.fail(where, f"the id must start with its organisation: {organisation}-…")
    kind = data["kind"]
    if kind not in KINDS:
        raise check.fail(f"{where}.kind", f"unknown kind {_show(kind)} (allowed: {', '.join(KINDS)})")
    min_age, max_age = (
        None if data.get(key) is None else check.integer(f"{where}.{key}", data[key], 0, 120)
        for key in ("min_age", "max_age")
    )
    if min_age is not None and max_age is not None and min_age > max_age:
        raise check.fail(where, f"min_age {min_age} is above max_age {max_age}")
    covered = check.text_list(f"{where}.towns", data["towns"], allowed=towns)

    raw_locations = data["locations"]
    if not isinstance(raw_locations, list) or not raw_locations:
        raise check.fail(f"{where}.locations", "needs at least one location")
    locations: list[Location] = []
    for i, entry in enumerate(raw_locations):
        at = f"{where}.locations[{i}]"
        loc = check.mapping(at, entry, allowed=_LOCATION_FIELDS)
        check.require(at, loc, _LOCATION_FIELDS)
        loc_id = loc["id"]
        if not isinstance(loc_id, str) or not _ID.match(loc_id):
            raise check.fail(f"{at}.id", "a location id is lower-case letters, digits and dashes")
        if loc_id in location_ids:
            raise check.fail(f"{at}.id", f"location id {loc_id!r} is used twice")
        location_ids.add(loc_id)
        town = loc["town"]
        if town not in towns:
            raise check.fail(f"{at}.town", f"unknown town {_show(town)} (allowed: {', '.join(towns)})")
        address = None if loc["address"] is None else check.text(f"{at}.address", loc["address"])
        name = check.text(f"{at}.name", loc["name"])
        to_confirm = check.flag(f"{at}.to_confirm", loc["to_confirm"])
        locations.append(Location(id=loc_id, name=name, town=town, address=address, to_confirm=to_confirm))
    ids = tuple(location.id for location in locations)

    slot_minutes = check.integer(f"{where}.slot_minutes", data["slot_minutes"], 10, 240)
    if 60 % slot_minutes and slot_minutes % 15:
        raise check.fail(
            f"{where}.slot_minutes", f"{slot_minutes} does not fit the clock: use 10, 15, 20, 30, 45, 60 …"
        )
    hours = _load_hours(check, f"{where}.hours", data["hours"], ids)
    exceptions = _load_exceptions(check, f"{where}.exceptions", data.get("exceptions"), ids)
    for i, h in enumerate(hours):
        if _minutes(h.end) - _minutes(h.start) < slot_minutes:
            raise check.fail(f"{where}.hours[{i}]", f"shorter than one appointment ({slot_minutes} minutes)")
    for i, exception in enumerate(exceptions):
        for j, (start, end) in enumerate(exception.hours):
            if _minutes(end) - _minutes(start) < slot_minutes:
                at = f"{where}.exceptions[{i}].hours[{j}]"
                raise check.fail(at, f"shorter than one appointment ({slot_minutes} minutes)")

    return Service(
        id=service_id,
        organisation=organisation,
        kind=kind,
        name=check.text(f"{where}.name", data["name"]),
        topics=check.text_list(f"{where}.topics", data["topics"], allowed=TOPICS),
        min_age=min_age,
        max_age=max_age,
        towns=covered,
        locations=tuple(locations),
        languages=check.text_list(f"{where}.languages", data["languages"], allowed=LANGUAGES),
        hours=hours,
        exceptions=exceptions,
        closed_on_public_holidays=check.flag(
            f"{where}.closed_on_public_holidays", data.get("closed_on_public_holidays", True)
        ),
        slot_minutes=slot_minutes,
        capacity=check.integer(f"{where}.capacity", data["capacity"], 1, 50),
        to_confirm=check.flag(f"{where}.to_confirm", data["to_confirm"]),
        source=check.text(f"{where}.source", data["source"]) if data.get("source") is not None else None,
    )


def load_directory(content_dir: Path, organisations: dict[str, str] | None = None) -> Directory:
    """Load and validate content/directory.yml; raise ContentError naming the file and key."""
    path = content_dir / DIRECTORY_FILE
    check = _Checker(path)
    top = {"timezone", "towns", "outside", "ignore", "services"}
    data = check.mapping("(top level)", read_yaml(path), allowed=top)
    check.require("(top level)", data, {"timezone", "towns", "services"})
    if organisations is None:
        organisations = _load_organisations(content_dir)

    try:
        timezone = ZoneInfo(check.text("timezone", data["timezone"]))
    except (ZoneInfoNotFoundError, ValueError):
        raise check.fail("timezone", f"unknown time zone {data['timezone']!r}") from None

    taken: dict[tuple[str, ...], str] = {}
    towns, town_patterns = _load_towns(check, data["towns"], "towns", taken=taken)
    outside_patterns: list[_Pattern] = []
    if data.get("outside") is not None:
        _, outside_patterns = _load_towns(check, data["outside"], "outside", taken=taken)
    phrases = check.text_list("ignore", data["ignore"]) if data.get("ignore") is not None else ()
    ignore = tuple(tuple(_tokens(phrase)) for phrase in phrases)

    raw_services = check.mapping("services", data["services"])
    if not raw_services:
        raise check.fail("services", "no services listed")
    location_ids: set[str] = set()
    services = {
        service_id: _load_service(
            check, service_id, raw, organisations=organisations, towns=towns, location_ids=location_ids
        )
        for service_id, raw in raw_services.items()
    }
    return Directory(
        organisations=dict(organisations),
        services=services,
        towns=towns,
        timezone=timezone,
        # Longer names first, so "Bad Lippspringe" wins over a bare "Lippspringe".
        town_names=NameMatcher(tuple(sorted(town_patterns, key=lambda p: -len(p.tokens))), ignore),
        outside_names=NameMatcher(tuple(sorted(outside_patterns, key=lambda p: -len(p.tokens)))),
        source=path,
    )


# --- public holidays and slots ------------------------------------------------------------------


def _easter(year: int) -> date:
    # Anonymous Gregorian algorithm (Meeus/Jones/Butcher).
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    l_ = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * l_) // 451
    month, day = divmod(h + l_ - 7 * m + 114, 31)
    return date(year, month, day + 1)


def public_holidays(year: int) -> dict[date, str]:
    """The statutory public holidays of North Rhine-Westphalia in a year (Feiertagsgesetz NW)."""
    easter = _easter(year)
    return {
        date(year, 1, 1): "Neujahr",
        easter - timedelta(days=2): "Karfreitag",
        easter + timedelta(days=1): "Ostermontag",
        date(year, 5, 1): "Tag der Arbeit",
        easter + timedelta(days=39): "Christi Himmelfahrt",
        easter + timedelta(days=50): "Pfingstmontag",
        easter + timedelta(days=60): "Fronleichnam",
        date(year, 10, 3): "Tag der Deutschen Einheit",
        date(year, 11, 1): "Allerheiligen",
        date(year, 12, 25): "1. Weihnachtstag",
        date(year, 12, 26): "2. Weihnachtstag",
    }


def day_hours(service: Service, location: Location, day: date) -> tuple[tuple[time, time], ...]:
    """The opening ranges of a location on a date: exceptions, then public holidays, then weekly hours."""
    general: ExceptionDay | None = None
    for exception in service.exceptions:
        if exception.date == day and exception.location == location.id:
            return exception.hours
        if exception.date == day and exception.location is None:
            general = exception
    if general is not None:
        return general.hours
    if service.closed_on_public_holidays and day in public_holidays(day.year):
        return ()
    weekday = day.weekday()
    return tuple(
        sorted(
            (h.start, h.end)
            for h in service.hours
            if h.weekday == weekday and h.location in (None, location.id)
        )
    )


def _local_slot(day: date, minutes: int, zone: ZoneInfo) -> datetime | None:
    wall = datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=zone)  # fold=0: the first 02:30
    in_utc = wall.astimezone(UTC)
    if in_utc.astimezone(zone).replace(tzinfo=None) != wall.replace(tzinfo=None):
        return None  # the clock skips this wall time (spring forward)
    return in_utc


def opening_slots(
    service: Service, directory: Directory, *, after: datetime, until: datetime
) -> Iterator[tuple[datetime, Location]]:
    """Every slot start (UTC) with after <= start < until that ends inside opening hours, in time order."""
    if after.tzinfo is None or until.tzinfo is None:
        raise ValueError("after and until must be timezone-aware")
    zone = directory.timezone
    first, last = after.astimezone(zone).date(), until.astimezone(zone).date()
    if (last - first).days > _MAX_SLOTS_DAYS:
        raise ValueError("opening_slots covers at most ten years")
    order = {location.id: i for i, location in enumerate(service.locations)}
    day = first
    while day <= last:
        found: list[tuple[datetime, int, Location]] = []
        for location in service.locations:
            for start, end in day_hours(service, location, day):
                begin, stop = _minutes(start), _minutes(end)
                for minutes in range(begin, stop - service.slot_minutes + 1, service.slot_minutes):
                    slot = _local_slot(day, minutes, zone)
                    if slot is not None and after <= slot < until:
                        found.append((slot, order[location.id], location))
        for slot, _index, location in sorted(found, key=lambda item: (item[0], item[1])):
            yield slot, location
        day += timedelta(days=1)


def slot_end(service: Service, start: datetime) -> datetime:
    """When an appointment that starts at ``start`` ends."""
    return start + timedelta(minutes=service.slot_minutes)
