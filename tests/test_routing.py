"""Routing rules as data: a row per client situation, the validator, and a property test."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bot import LANGUAGES
from bot.content import TOPICS, Content, load_content, placeholders
from bot.directory import Directory, load_directory
from bot.errors import ContentError
from bot.routing import (
    AGE_GROUPS,
    OUTSIDE,
    OutsideKreis,
    RoutingDecision,
    RoutingRules,
    Situation,
    load_routing,
    route,
)
from bot.settings import ROOT

CONTENT = ROOT / "content"


@pytest.fixture(scope="module")
def content() -> Content:
    return load_content(CONTENT)


@pytest.fixture(scope="module")
def directory(content: Content) -> Directory:
    return load_directory(CONTENT, content.organisations)


@pytest.fixture(scope="module")
def rules(content: Content, directory: Directory) -> RoutingRules:
    return load_routing(CONTENT, directory, content.texts["de"])


S = Situation
TABLE: list[tuple[Situation, str, str, dict[str, str]]] = [
    # the partners' example: Caritas Büren, because you live in Bad Wünnenberg
    (
        S(town="Bad Wünnenberg", age=35),
        "caritas-bueren-mbe",
        "booking.reason.town",
        {"organisation": "Caritasverband im Dekanat Büren", "town": "Bad Wünnenberg"},
    ),
    (S(town="Büren", age_group="27plus"), "caritas-bueren-mbe", "booking.reason.town", {"town": "Büren"}),
    (S(town="Salzkotten", age=40, language="ar"), "caritas-bueren-mbe", "booking.reason.town", {}),
    (
        S(town="Lichtenau", topic="counselling", language="fr"),
        "caritas-bueren-mbe",
        "booking.reason.town",
        {},
    ),
    (S(town="Büren", topic="language_course", age=50), "caritas-bueren-mbe", "booking.reason.town", {}),
    # under 27: Jugendmigrationsdienst, wherever they live
    (
        S(age=20),
        "awo-jmd",
        "booking.reason.young",
        {"organisation": "AWO Kreisverband Paderborn", "service": "Jugendmigrationsdienst (JMD)"},
    ),
    (S(age_group="under27", town="Büren"), "awo-jmd", "booking.reason.young", {}),
    (S(age=26, topic="language_course", language="uk"), "awo-jmd", "booking.reason.young", {}),
    (S(age=12, town="Delbrück"), "awo-jmd", "booking.reason.young", {}),
    (S(age=20, age_group="27plus"), "awo-jmd", "booking.reason.young", {}),  # a known age wins
    # the Jobcenter supports the client: qualification and language courses (Kooperationsplan)
    (
        S(jobcenter=True, topic="qualification"),
        "jobcenter-integration",
        "booking.reason.jobcenter",
        {"organisation": "Jobcenter Kreis Paderborn", "service": "Team Markt und Integration"},
    ),
    (
        S(jobcenter=True, topic="language_course", age=19),
        "jobcenter-integration",
        "booking.reason.jobcenter",
        {},
    ),
    (
        S(jobcenter=True, topic="qualification", town="Büren"),
        "jobcenter-integration",
        "booking.reason.jobcenter",
        {},
    ),
    (S(jobcenter=True, topic="counselling", age=40), "caritas-pb-micado", "booking.reason.default", {}),
    (S(jobcenter=False, topic="qualification", age=40), "caritas-pb-micado", "booking.reason.default", {}),
    (S(jobcenter=None, topic="qualification", age=40), "caritas-pb-micado", "booking.reason.default", {}),
    # recognition: the recognition advice, also for the young, the south and Jobcenter clients
    (S(topic="recognition", age=30), "caritas-pb-recognition", "booking.reason.recognition", {}),
    (
        S(topic="recognition", age=22, town="Büren"),
        "caritas-pb-recognition",
        "booking.reason.recognition",
        {},
    ),
    (S(topic="recognition", jobcenter=True), "caritas-pb-recognition", "booking.reason.recognition", {}),
    # otherwise the MBE in Paderborn, in the client's language where possible
    (S(), "caritas-pb-micado", "booking.reason.default", {}),
    (S(town="Paderborn", age=40), "caritas-pb-micado", "booking.reason.default", {"town": "Paderborn"}),
    (S(age=27), "caritas-pb-micado", "booking.reason.default", {}),
    (S(language="ar"), "caritas-pb-micado", "booking.reason.language", {"language": "ar"}),
    (S(language="fa", town="Hövelhof"), "caritas-pb-micado", "booking.reason.language", {"language": "fa"}),
    (S(language="en", age=44), "caritas-pb-micado", "booking.reason.language", {"language": "en"}),
    (S(language="uk", town="Paderborn"), "diakonie-mbe", "booking.reason.language", {"language": "uk"}),
    (S(language="ru", age_group="27plus"), "diakonie-mbe", "booking.reason.language", {"language": "ru"}),
    (S(language="fr"), "invia-migration", "booking.reason.language", {"language": "fr"}),
    (S(language="tr", topic="counselling"), "invia-migration", "booking.reason.language", {"language": "tr"}),
    # the recognition rule comes before the language preference
    (S(language="tr", topic="recognition"), "caritas-pb-recognition", "booking.reason.recognition", {}),
    # children under 12 fit neither JMD nor MBE: the catch-all still books (an adviser helps the family)
    (S(age=8), "caritas-pb-micado", "booking.reason.default", {}),
    (S(age=8, town="Büren"), "caritas-pb-micado", "booking.reason.default", {}),
    # values the router does not know count as unknown
    (S(town="Bielefeld", age=40), "caritas-pb-micado", "booking.reason.default", {}),
    (S(topic="housing", language="xx", age=-3), "caritas-pb-micado", "booking.reason.default", {}),
]


@pytest.mark.parametrize(("situation", "service", "reason", "params"), TABLE)
def test_rules_route_each_situation(
    directory: Directory,
    rules: RoutingRules,
    situation: Situation,
    service: str,
    reason: str,
    params: dict[str, str],
) -> None:
    decision = route(directory, rules, situation)
    assert isinstance(decision, RoutingDecision)
    assert (decision.service.id, decision.reason_key) == (service, reason)
    shown = decision.text_params(lambda code: code)
    assert {k: shown.get(k) for k in params} == params
    assert decision.to_confirm  # every service in the directory still awaits confirmation


def test_every_rule_is_used_by_the_table(directory: Directory, rules: RoutingRules) -> None:
    used = {d.rule for s, *_ in TABLE if isinstance(d := route(directory, rules, s), RoutingDecision)}
    assert used == {rule.name for rule in rules.rules}


@pytest.mark.parametrize(
    "situation", [S(town=OUTSIDE), S(town=OUTSIDE, age=20, jobcenter=True, topic="recognition")]
)
def test_outside_kreis_gets_general_information(
    directory: Directory, rules: RoutingRules, situation: Situation
) -> None:
    decision = route(directory, rules, situation)
    assert decision == OutsideKreis(reason_key="booking.reason.outside")


@pytest.mark.parametrize("language", ["de", "en"])
def test_reasons_render_in_german_and_english(
    content: Content, directory: Directory, rules: RoutingRules, language: str
) -> None:
    names = {code: content.text("language.name", code) or code for code in LANGUAGES}
    for situation, *_ in TABLE:
        decision = route(directory, rules, situation)
        assert isinstance(decision, RoutingDecision)
        text = content.text(decision.reason_key, language)
        assert text is not None, decision.reason_key
        rendered = text.format(**decision.text_params(names.__getitem__))
        assert decision.reason_params["organisation"] in rendered
        assert "{" not in rendered
    assert content.text(rules.outside_reason, language)
    rendered = content.texts[language]["booking.reason.language"].format(
        **route(directory, rules, S(language="ar")).text_params(names.__getitem__)  # type: ignore[union-attr]
    )
    assert "العربية" in rendered


# --- the validator ------------------------------------------------------------------------------


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    target = tmp_path / "content"
    shutil.copytree(CONTENT, target)
    return target


def _rules(data: dict[str, Any]) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = data["rules"]
    return rules


BROKEN: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    (
        "unknown service",
        lambda d: _rules(d)[1].update(service="caritas-pb-nope"),
        r"rules\[1\]\.service: unknown service 'caritas-pb-nope'",
    ),
    (
        "unknown service in a list",
        lambda d: _rules(d)[-1]["services"].append("drk-mbe"),
        r"rules\[4\]\.services\[3\]: unknown service 'drk-mbe'",
    ),
    (
        "unknown condition",
        lambda d: _rules(d)[0]["when"].update(region="south"),
        r"rules\[0\]\.when: unknown condition 'region'",
    ),
    (
        "unknown topic",
        lambda d: _rules(d)[1]["when"].update(topic=["housing"]),
        r"rules\[1\]\.when\.topic: unknown value 'housing'",
    ),
    (
        "unknown town",
        lambda d: _rules(d)[3]["when"]["towns"].append("Bielefeld"),
        r"rules\[3\]\.when\.towns: unknown value 'Bielefeld'",
    ),
    (
        "unknown age group",
        lambda d: _rules(d)[2]["when"].update(age_group="teen"),
        r"rules\[2\]\.when\.age_group: unknown value 'teen'",
    ),
    (
        "jobcenter not a flag",
        lambda d: _rules(d)[0]["when"].update(jobcenter="yes"),
        r"rules\[0\]\.when\.jobcenter: must be true or false",
    ),
    (
        "unknown language",
        lambda d: _rules(d)[0]["when"].update(languages=["xx"]),
        r"rules\[0\]\.when\.languages: unknown value 'xx'",
    ),
    (
        "unknown field",
        lambda d: _rules(d)[0].update(priority=1),
        r"rules\[0\]: unknown field\(s\) \['priority'\]",
    ),
    (
        "no catch-all",
        lambda d: _rules(d)[-1].update(when={"age_group": "27plus"}),
        r"rules\[4\]: the last rule must have no `when:`",
    ),
    (
        "catch-all too early",
        lambda d: _rules(d)[1].pop("when"),
        r"rules\[1\]: has no conditions, so the rules after it are never used",
    ),
    ("empty when", lambda d: _rules(d)[1].update(when={}), r"rules\[1\]\.when: is empty"),
    ("no rules", lambda d: d.update(rules=[]), r"rules: needs at least one rule"),
    (
        "unknown reason",
        lambda d: _rules(d)[2].update(reason="booking.reason.nope"),
        r"rules\[2\]\.reason: 'booking\.reason\.nope' is not a text key",
    ),
    (
        "placeholder the rule cannot fill",
        lambda d: _rules(d)[2].update(reason="booking.reason.town"),
        r"rules\[2\]\.reason: text 'booking\.reason\.town' uses \['town'\]",
    ),
    (
        "language reason without language preference",
        lambda d: _rules(d)[-1].pop("prefer_language"),
        r"rules\[4\]\.reason_language: needs prefer_language: true",
    ),
    (
        "service does not take the topic",
        lambda d: _rules(d)[3].update(
            service="caritas-pb-recognition", when={"towns": ["Büren"], "topic": ["counselling"]}
        ),
        r"rules\[3\]\.when\.topic: service 'caritas-pb-recognition' does not take topic counselling",
    ),
    (
        "service outside its towns",
        lambda d: _rules(d)[3]["when"]["towns"].append("Paderborn"),
        r"rules\[3\]\.when\.towns: service 'caritas-bueren-mbe' does not cover Paderborn",
    ),
    (
        "both service and services",
        lambda d: _rules(d)[0].update(services=["awo-jmd"]),
        r"rules\[0\]: give either service",
    ),
    (
        "outside reason",
        lambda d: d.update(outside_reason="nope"),
        r"outside_reason: 'nope' is not a text key",
    ),
]


@pytest.mark.parametrize(("change", "message"), [pytest.param(c, m, id=i) for i, c, m in BROKEN])
def test_broken_routing_names_file_and_rule(
    broken: Path, directory: Directory, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    path = broken / "routing.yml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    with pytest.raises(ContentError, match=r"content/routing\.yml: " + message):
        load_routing(broken, directory)  # reads texts/de.yml of the copy itself


def test_missing_routing_file_is_named(broken: Path, directory: Directory) -> None:
    (broken / "routing.yml").unlink()
    with pytest.raises(ContentError, match=r"routing\.yml: file is missing"):
        load_routing(broken, directory)


def test_routing_rejects_a_service_the_directory_lost(broken: Path, content: Content) -> None:
    path = broken / "directory.yml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    del data["services"]["invia-migration"]
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    with pytest.raises(
        ContentError, match=r"routing\.yml: rules\[4\]\.services\[2\]: unknown service 'invia-migration'"
    ):
        load_routing(broken, load_directory(broken), content.texts["de"])


# --- property: any situation gets a service or "outside" ----------------------------------------


def _situations(directory: Directory) -> st.SearchStrategy[Situation]:
    return st.builds(
        Situation,
        topic=st.one_of(st.none(), st.sampled_from(TOPICS), st.text(max_size=12)),
        age=st.one_of(st.none(), st.integers(min_value=-10, max_value=200)),
        age_group=st.one_of(st.none(), st.sampled_from(AGE_GROUPS), st.text(max_size=8)),
        town=st.one_of(st.none(), st.just(OUTSIDE), st.sampled_from(directory.towns), st.text(max_size=20)),
        language=st.one_of(st.sampled_from(LANGUAGES), st.text(max_size=4)),
        jobcenter=st.one_of(st.none(), st.booleans()),
    )


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_any_situation_gets_a_service_or_outside(
    content: Content, directory: Directory, rules: RoutingRules, data: st.DataObject
) -> None:
    situation = data.draw(_situations(directory))
    decision = route(directory, rules, situation)
    if situation.town == OUTSIDE:
        assert isinstance(decision, OutsideKreis)
        return
    assert isinstance(decision, RoutingDecision)
    assert directory.services[decision.service.id] is decision.service
    text = content.texts["de"][decision.reason_key]
    params = decision.text_params(lambda code: code)
    assert placeholders(text) <= set(params)
    text.format(**params)
    rule = next(r for r in rules.rules if r.name == decision.rule)
    if rule is not rules.rules[-1]:
        # a specific rule only books a service that takes this client
        service = decision.service
        if situation.town in directory.towns:
            assert service.covers(situation.town)
        if situation.age is not None and 0 <= situation.age <= 130:
            assert service.admits_age(situation.age, situation.age)
        if situation.topic in TOPICS:
            assert situation.topic in service.topics
    if decision.language is not None:
        assert decision.service.speaks(decision.language) and decision.language != "de"
