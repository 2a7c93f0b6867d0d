"""Routing as data: which service a client is booked with, and why (content/routing.yml)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot import LANGUAGES
from bot.content import TOPICS, placeholders
from bot.directory import Directory, Service, read_yaml
from bot.errors import ContentError

__all__ = [
    "AGE_GROUPS",
    "OUTSIDE",
    "OutsideKreis",
    "RoutingDecision",
    "RoutingRules",
    "Rule",
    "Situation",
    "load_routing",
    "route",
]

ROUTING_FILE = "routing.yml"
OUTSIDE = "outside"
"""The town value for a client who lives outside Kreis Paderborn."""

AGE_GROUPS = ("under27", "27plus")
"""Under 27: Jugendmigrationsdienst; 27 and older: Migrationsberatung für Erwachsene."""
ADULT_AGE = 27

CONDITIONS = ("topic", "age_group", "towns", "jobcenter", "languages")
_RULE_FIELDS = {"name", "when", "service", "services", "prefer_language", "reason", "reason_language"}
_ALWAYS_PARAMS = frozenset({"organisation", "service"})


@dataclass(frozen=True, kw_only=True)
class Situation:
    """What the dialogue knows about a client; None = not known (yet)."""

    topic: str | None = None  # language_course | recognition | qualification | counselling
    age: int | None = None
    age_group: str | None = None  # under27 | 27plus; ignored when the age is known
    town: str | None = None  # an official town name, "outside" or None
    language: str = "de"
    jobcenter: bool | None = None  # whether the Jobcenter supports the client

    def age_range(self) -> tuple[int, int | None] | None:
        """The ages the client may have (inclusive, None = no upper limit), or None if unknown."""
        if self.age is not None and 0 <= self.age <= 130:
            return self.age, self.age
        if self.age_group == "under27":
            return 0, ADULT_AGE - 1
        if self.age_group == "27plus":
            return ADULT_AGE, None
        return None

    def group(self) -> str | None:
        """under27, 27plus or None."""
        ages = self.age_range()
        if ages is None:
            return None
        low, high = ages
        if high is not None and high < ADULT_AGE:
            return "under27"
        return "27plus" if low >= ADULT_AGE else None


@dataclass(frozen=True, kw_only=True)
class Conditions:
    """The `when:` of a rule; every given condition must hold, an unknown fact never satisfies one."""

    topics: frozenset[str] | None = None
    age_group: str | None = None
    towns: frozenset[str] | None = None
    jobcenter: bool | None = None
    languages: frozenset[str] | None = None

    @property
    def empty(self) -> bool:
        """A rule without conditions matches every client."""
        return self == Conditions()

    def hold(self, situation: Situation) -> bool:
        """Whether the client's situation satisfies every condition."""
        if self.topics is not None and situation.topic not in self.topics:
            return False
        if self.age_group is not None and situation.group() != self.age_group:
            return False
        if self.towns is not None and situation.town not in self.towns:
            return False
        if self.jobcenter is not None and situation.jobcenter is not self.jobcenter:
            return False
        return self.languages is None or situation.language in self.languages


@dataclass(frozen=True, kw_only=True)
class Rule:
    """One routing rule: conditions, the candidate services in order of preference, the reason."""

    index: int
    name: str
    when: Conditions
    services: tuple[str, ...]
    prefer_language: bool
    reason: str
    reason_language: str | None = None


@dataclass(frozen=True, kw_only=True)
class RoutingRules:
    """The ordered rules of routing.yml (the last one matches everyone) and the outside reason."""

    rules: tuple[Rule, ...]
    outside_reason: str
    source: Path | None = None


@dataclass(frozen=True, kw_only=True)
class RoutingDecision:
    """Book this service; tell the client why with ``reason_key`` and ``text_params``."""

    service: Service
    reason_key: str
    reason_params: dict[str, str]
    rule: str
    language: str | None = None  # set when the service was chosen for the client's language
    to_confirm: bool = False  # the service's details are not yet confirmed by the organisation

    def text_params(self, language_name: Callable[[str], str]) -> dict[str, str]:
        """The reason's placeholders, with {language} as a language name (e.g. TextService.language_name)."""
        params = dict(self.reason_params)
        if self.language is not None:
            params["language"] = language_name(self.language)
        return params


@dataclass(frozen=True, kw_only=True)
class OutsideKreis:
    """The client lives outside Kreis Paderborn: give general information and public contacts."""

    reason_key: str
    rule: str = OUTSIDE


def route(directory: Directory, rules: RoutingRules, situation: Situation) -> RoutingDecision | OutsideKreis:
    """The first rule whose conditions hold and that has a service taking this client; never raises."""
    if situation.town == OUTSIDE:
        return OutsideKreis(reason_key=rules.outside_reason)
    # Facts the directory does not know count as unknown, so a stray value cannot break a booking.
    situation = Situation(
        topic=situation.topic if situation.topic in TOPICS else None,
        age=situation.age,
        age_group=situation.age_group if situation.age_group in AGE_GROUPS else None,
        town=situation.town if situation.town in directory.towns else None,
        language=situation.language if situation.language in LANGUAGES else "de",
        jobcenter=situation.jobcenter if isinstance(situation.jobcenter, bool) else None,
    )
    last = rules.rules[-1]
    for rule in rules.rules:
        if not rule.when.hold(situation):
            continue
        candidates = [directory.services[service_id] for service_id in rule.services]
        eligible = [service for service in candidates if _takes(service, situation)]
        if not eligible:
            if rule is not last:
                continue
            eligible = candidates  # the catch-all always books; an adviser sorts out the rest
        chosen, by_language = eligible[0], None
        if rule.prefer_language and situation.language != "de":
            speaking = [service for service in eligible if service.speaks(situation.language)]
            if speaking:
                chosen, by_language = speaking[0], situation.language
        params = {"organisation": directory.organisations[chosen.organisation], "service": chosen.name}
        if situation.town is not None:
            params["town"] = situation.town
        reason = rule.reason_language if by_language and rule.reason_language else rule.reason
        return RoutingDecision(
            service=chosen,
            reason_key=reason,
            reason_params=params,
            rule=rule.name,
            language=by_language,
            to_confirm=chosen.to_confirm or any(location.to_confirm for location in chosen.locations),
        )
    raise AssertionError("unreachable: load_routing guarantees a catch-all rule")  # pragma: no cover


def _takes(service: Service, situation: Situation) -> bool:
    if situation.town is not None and not service.covers(situation.town):
        return False
    if situation.topic is not None and situation.topic not in service.topics:
        return False
    ages = situation.age_range()
    return ages is None or service.admits_age(*ages)


# --- loading and validation ---------------------------------------------------------------------


def load_routing(
    content_dir: Path, directory: Directory, reference: dict[str, str] | None = None
) -> RoutingRules:
    """Load and validate content/routing.yml against the directory and the German texts."""
    path = content_dir / ROUTING_FILE
    if reference is None:
        reference = _reference_texts(content_dir)
    data = read_yaml(path)
    if not isinstance(data, dict) or set(data) - {"rules", "outside_reason"}:
        raise ContentError(f"{path}: must be a mapping with rules: [...] and outside_reason: <text key>")
    outside = _reason(path, "outside_reason", data.get("outside_reason"), reference, frozenset())
    raw_rules = data.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise ContentError(f"{path}: rules: needs at least one rule")
    rules = tuple(_load_rule(path, i, raw, directory, reference) for i, raw in enumerate(raw_rules))
    for rule in rules[:-1]:
        if rule.when.empty:
            raise ContentError(
                f"{path}: rules[{rule.index}]: has no conditions, so the rules after it are never used"
            )
    if not rules[-1].when.empty:
        raise ContentError(
            f"{path}: rules[{rules[-1].index}]: the last rule must have no `when:` so that every client "
            "gets a service (a catch-all default)"
        )
    return RoutingRules(rules=rules, outside_reason=outside, source=path)


def _reference_texts(content_dir: Path) -> dict[str, str]:
    path = content_dir / "texts" / "de.yml"
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ContentError(f"{path}: must be a mapping of key: text")
    return {str(key): str(value) for key, value in data.items()}


def _reason(path: Path, where: str, key: Any, reference: dict[str, str], allowed: frozenset[str]) -> str:
    if not isinstance(key, str) or key not in reference:
        raise ContentError(f"{path}: {where}: {key!r} is not a text key of texts/de.yml")
    try:
        used = placeholders(reference[key])
    except ValueError as exc:
        raise ContentError(f"{path}: {where}: {key}: {exc}") from None
    if used - allowed:
        raise ContentError(
            f"{path}: {where}: text {key!r} uses {sorted(used - allowed)}, "
            f"this rule can only fill {sorted(allowed)}"
        )
    return key


def _load_rule(path: Path, index: int, raw: Any, directory: Directory, reference: dict[str, str]) -> Rule:
    where = f"rules[{index}]"

    def fail(problem: str, at: str = "") -> ContentError:
        return ContentError(f"{path}: {where}{at}: {problem}")

    if not isinstance(raw, dict):
        raise fail("must be a mapping with when, service(s) and reason")
    unknown = set(raw) - _RULE_FIELDS
    if unknown:
        raise fail(
            f"unknown field(s) {sorted(map(str, unknown))} (allowed: {', '.join(sorted(_RULE_FIELDS))})"
        )
    name = raw.get("name", f"rule {index}")
    if not isinstance(name, str) or not name.strip():
        raise fail("name must be a text", ".name")

    when = _load_conditions(raw.get("when"), directory, fail)

    if ("service" in raw) == ("services" in raw):
        raise fail("give either service: <id> or services: [<id>, …]")
    ids = raw["services"] if "services" in raw else [raw["service"]]
    if not isinstance(ids, list) or not ids:
        raise fail("must be a non-empty list of service ids", ".services")
    for i, service_id in enumerate(ids):
        if service_id not in directory.services:
            at = ".service" if "service" in raw else f".services[{i}]"
            raise fail(
                f"unknown service {service_id!r} (directory.yml has {', '.join(directory.services)})", at
            )
    if len(set(ids)) != len(ids):
        raise fail("a service is listed twice", ".services")
    services = tuple(directory.services[service_id] for service_id in ids)

    prefer_language = raw.get("prefer_language", False)
    if not isinstance(prefer_language, bool):
        raise fail("must be true or false", ".prefer_language")
    if when.towns is not None:
        for service in services:
            missing = sorted(when.towns - set(service.towns))
            if missing:
                raise fail(f"service {service.id!r} does not cover {', '.join(missing)}", ".when.towns")
    if when.topics is not None:
        for service in services:
            missing = sorted(when.topics - set(service.topics))
            if missing:
                raise fail(f"service {service.id!r} does not take topic {', '.join(missing)}", ".when.topic")

    allowed = _ALWAYS_PARAMS | ({"town"} if when.towns is not None else set())
    reason = _reason(path, f"{where}.reason", raw.get("reason"), reference, allowed)
    reason_language = None
    if raw.get("reason_language") is not None:
        if not prefer_language:
            raise fail("needs prefer_language: true", ".reason_language")
        reason_language = _reason(
            path, f"{where}.reason_language", raw["reason_language"], reference, allowed | {"language"}
        )
    return Rule(
        index=index,
        name=name.strip(),
        when=when,
        services=tuple(ids),
        prefer_language=prefer_language,
        reason=reason,
        reason_language=reason_language,
    )


def _load_conditions(raw: Any, directory: Directory, fail: Callable[[str, str], ContentError]) -> Conditions:
    if raw is None:
        return Conditions()
    if not isinstance(raw, dict):
        raise fail(f"must be a mapping of conditions ({', '.join(CONDITIONS)})", ".when")
    for name in raw:
        if name not in CONDITIONS:
            raise fail(f"unknown condition {name!r} (allowed: {', '.join(CONDITIONS)})", ".when")

    def values(name: str, allowed: tuple[str, ...]) -> frozenset[str] | None:
        if name not in raw:
            return None
        value = raw[name]
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            raise fail("must be a value or a non-empty list", f".when.{name}")
        for item in items:
            if item not in allowed:
                raise fail(f"unknown value {item!r} (allowed: {', '.join(allowed)})", f".when.{name}")
        return frozenset(items)

    age_group = raw.get("age_group")
    if age_group is not None and age_group not in AGE_GROUPS:
        raise fail(f"unknown value {age_group!r} (allowed: {', '.join(AGE_GROUPS)})", ".when.age_group")
    jobcenter = raw.get("jobcenter")
    if jobcenter is not None and not isinstance(jobcenter, bool):
        raise fail("must be true or false", ".when.jobcenter")
    conditions = Conditions(
        topics=values("topic", TOPICS),
        age_group=age_group,
        towns=values("towns", directory.towns),
        jobcenter=jobcenter,
        languages=values("languages", LANGUAGES),
    )
    if conditions.empty:
        raise fail("is empty; leave `when:` out for the catch-all rule", ".when")
    return conditions
