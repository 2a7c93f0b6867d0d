"""The booking directory: the repository's data, town matching, opening slots and the validator."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bot import LANGUAGES
from bot.content import TOPICS, load_content
from bot.directory import Directory, day_hours, load_directory, opening_slots, public_holidays
from bot.errors import ContentError
from bot.settings import ROOT

CONTENT = ROOT / "content"
BERLIN = ZoneInfo("Europe/Berlin")
KREIS_TOWNS = (
    "Paderborn", "Altenbeken", "Bad Lippspringe", "Bad Wünnenberg", "Borchen", "Büren", "Delbrück",
    "Hövelhof", "Lichtenau", "Salzkotten",
)  # fmt: skip


@pytest.fixture(scope="module")
def directory() -> Directory:
    return load_directory(CONTENT)


# --- the repository's directory -----------------------------------------------------------------


def test_repository_directory_loads_with_the_ten_towns_and_all_partners(directory: Directory) -> None:
    assert directory.towns == KREIS_TOWNS
    assert directory.timezone == BERLIN
    organisations = load_content(CONTENT).organisations
    assert directory.organisations == organisations
    for organisation in organisations:
        assert directory.services_of(organisation), f"{organisation} has no service"
    assert [s.id for s in directory.services_of("caritas-pb")] == [
        "caritas-pb-micado", "caritas-pb-recognition", "caritas-pb-refugee",
    ]  # fmt: skip


def test_no_invented_addresses_and_placeholders_are_marked(directory: Directory) -> None:
    for service in directory.services.values():
        assert service.id.startswith(service.organisation + "-")
        assert set(service.languages) <= set(LANGUAGES) and set(service.topics) <= set(TOPICS)
        assert service.hours, service.id  # slots can be computed for every service
        if service.source is None:
            assert service.to_confirm, f"{service.id}: unsourced but not marked to_confirm"
        for location in service.locations:
            assert location.address is None or not location.to_confirm, location.id
            assert location.town in KREIS_TOWNS


def test_every_town_has_a_youth_and_an_adult_service(directory: Directory) -> None:
    for town in directory.towns:
        kinds = {s.kind for s in directory.services.values() if s.covers(town)}
        assert "jmd" in kinds and "mbe" in kinds, town


def test_the_partners_example_caritas_bueren_covers_bad_wuennenberg(directory: Directory) -> None:
    service = directory.services["caritas-bueren-mbe"]
    assert {"Büren", "Bad Wünnenberg"} <= set(service.towns)
    assert service.min_age == 27 and directory.services["awo-jmd"].max_age == 26


def test_repository_services_offer_slots_every_week(directory: Directory) -> None:
    start = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday without public holidays that week
    for service in directory.services.values():
        slots = list(opening_slots(service, directory, after=start, until=start + timedelta(days=7)))
        assert slots, service.id
        assert all(s.tzinfo == UTC for s, _ in slots)


# --- match_town ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "town"),
    [
        ("ich wohne in salzkotten", "Salzkotten"),
        ("Salzkotten", "Salzkotten"),
        ("SALZKOTTEN!!", "Salzkotten"),
        ("Ich wohne in Büren", "Büren"),
        ("ich wohne in Buren", "Büren"),
        ("wohne in bueren", "Büren"),
        ("Bad Wünnenberg", "Bad Wünnenberg"),
        ("bad wuennenberg", "Bad Wünnenberg"),
        ("Wunnenberg", "Bad Wünnenberg"),
        ("ich wohne in Haaren", "Bad Wünnenberg"),
        ("Haaren", "Bad Wünnenberg"),
        ("Bad Wünnenberg-Haaren", "Bad Wünnenberg"),
        ("Bad Lippspringe", "Bad Lippspringe"),
        ("bad-lippspringe", "Bad Lippspringe"),
        ("lipspringe", "Bad Lippspringe"),
        ("I live in Delbruck", "Delbrück"),
        ("Delbrück-Ostenland", "Delbrück"),
        ("Ostenland", "Delbrück"),
        ("j'habite à Hövelhof", "Hövelhof"),
        ("hoevelhof", "Hövelhof"),
        ("Altenbeken", "Altenbeken"),
        ("Schwaney", "Altenbeken"),
        ("Kirchborchen", "Borchen"),
        ("ich wohne in Borchen", "Borchen"),
        ("Lichtenau", "Lichtenau"),
        ("Kleinenberg", "Lichtenau"),
        ("Steinhausen", "Büren"),
        ("Wewelsburg", "Büren"),
        ("Schloß Neuhaus", "Paderborn"),
        ("schloss neuhaus", "Paderborn"),
        ("Elsen", "Paderborn"),
        ("ich wohne in Sande", "Paderborn"),
        ("Wewer", "Paderborn"),
        ("Sennelager", "Paderborn"),
        ("Paderborn", "Paderborn"),
        ("paderborn", "Paderborn"),
        # Russian and Ukrainian, with case endings
        ("я живу в Падерборне", "Paderborn"),
        ("Падерборн", "Paderborn"),
        ("из Падерборна", "Paderborn"),
        ("я живу у Падерборні", "Paderborn"),
        ("живу в Бюрене", "Büren"),
        ("у Бюрені", "Büren"),
        ("в Зальцкоттене", "Salzkotten"),
        ("Дельбрюк", "Delbrück"),
        ("в Хёвельхофе", "Hövelhof"),
        ("в Хевельхофе", "Hövelhof"),
        ("Бад-Липпшпринге", "Bad Lippspringe"),
        ("Ліхтенау", "Lichtenau"),
        # Arabic and Persian
        ("أسكن في بادربورن", "Paderborn"),
        ("اسكن ببادربورن", "Paderborn"),
        ("من پادربورن هستم", "Paderborn"),
        ("در پادربورن زندگی می‌کنم", "Paderborn"),
        ("أعيش في دلبروك", "Delbrück"),
        ("سالزكوتن", "Salzkotten"),
        ("بادرْبورن", "Paderborn"),  # a vowel sign does not hide the name
        # Turkish, with and without an apostrophe
        ("Paderborn'da oturuyorum", "Paderborn"),
        ("Paderbornda yaşıyorum", "Paderborn"),
        ("Salzkotten’de", "Salzkotten"),
        ("Delbrückte oturuyorum", "Delbrück"),
        ("Bürende yaşıyorum", "Büren"),
        # several names: the one after "in/aus …" wins, longer names win over parts
        ("Termin in Paderborn? Ich komme aus Büren", "Paderborn"),
        ("Paderborn oder Büren? ich wohne in Büren", "Büren"),
        ("Ich wohne im Kreis Paderborn, in Delbrück", "Delbrück"),
    ],
)
def test_match_town_finds_spellings_scripts_and_endings(directory: Directory, text: str, town: str) -> None:
    assert directory.match_town(text) == town


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "Hallo, ich brauche einen Termin",
        "Ich wohne im Kreis Paderborn",
        "Landkreis Paderborn",
        "Caritasverband im Dekanat Büren",
        "mit nassen Haaren",  # Haaren is also an ordinary word
        "Die Weine sind gut",
        "Asseln im Keller",
        "Die Schwelle ist hoch",
        "Sande und Steine",
        "Paderborner Straße 3",
        "Bad",
        "Ich wohne in Bielefeld",
        "я живу в Берлине",
        "أسكن في برلين",
        "what is a Bildungsgutschein?",
        "Lippstadt",
        "12345",
    ],
)
def test_match_town_ignores_ordinary_words_and_other_places(directory: Directory, text: str) -> None:
    assert directory.match_town(text) is None


@pytest.mark.parametrize(
    ("text", "place"),
    [
        ("Ich wohne in Bielefeld", "Bielefeld"),
        ("gütersloh", "Gütersloh"),
        ("Guetersloh", "Gütersloh"),
        ("Lippstadt", "Lippstadt"),
        ("Detmold", "Detmold"),
        ("ich wohne in Höxter", "Höxter"),
        ("Warburg", "Warburg"),
        ("Soest", "Soest"),
        ("Dortmund", "Dortmund"),
        ("I live in Cologne", "Köln"),
        ("Köln", "Köln"),
        ("я живу в Берлине", "Berlin"),
        ("أسكن في برلين", "Berlin"),
        ("Münih'te", "München"),
        ("ich wohne in Schlangen", "Schlangen"),
        ("Schloß Holte-Stukenbrock", "Schloß Holte-Stukenbrock"),
    ],
)
def test_is_outside_names_towns_beyond_the_kreis(directory: Directory, text: str, place: str) -> None:
    assert directory.is_outside(text) == place
    assert directory.match_town(text) is None


@pytest.mark.parametrize("text", ["ich habe Angst vor Schlangen", "Paderborn", "Bad Lippspringe", "Hallo"])
def test_is_outside_ignores_kreis_towns_and_words(directory: Directory, text: str) -> None:
    assert directory.is_outside(text) is None


# --- opening slots ------------------------------------------------------------------------------

ORGANISATIONS = (
    "awo:\n  name: AWO Kreisverband Paderborn\ncaritas-bueren:\n  name: Caritasverband im Dekanat Büren\n"
)


def _service(**changes: Any) -> dict[str, Any]:
    service: dict[str, Any] = {
        "organisation": "awo",
        "kind": "mbe",
        "name": "Migrationsberatung",
        "topics": ["counselling"],
        "min_age": 27,
        "towns": ["Paderborn"],
        "locations": [
            {
                "id": "awo-test-pb",
                "name": "Paderborn",
                "town": "Paderborn",
                "address": None,
                "to_confirm": True,
            }
        ],
        "languages": ["de"],
        "hours": [
            {"day": "montag", "from": "09:00", "to": "12:00"},
            {"day": "montag", "from": "13:00", "to": "15:30"},
            {"day": "freitag", "from": "09:00", "to": "10:30"},
        ],
        "slot_minutes": 45,
        "capacity": 1,
        "to_confirm": True,
    }
    service.update(changes)
    return service


def _write(tmp_path: Path, service: dict[str, Any]) -> Directory:
    (tmp_path / "organisations.yml").write_text(ORGANISATIONS, encoding="utf-8")
    data = {
        "timezone": "Europe/Berlin",
        "towns": {"Paderborn": {"districts": ["Elsen"]}, "Büren": None},
        "services": {"awo-test": service},
    }
    (tmp_path / "directory.yml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return load_directory(tmp_path)


def _local(slots: list[tuple[datetime, Any]]) -> list[str]:
    return [s.astimezone(BERLIN).strftime("%a %d.%m. %H:%M") for s, _ in slots]


def _slots(directory: Directory, first: datetime, last: datetime) -> list[tuple[datetime, Any]]:
    return list(opening_slots(directory.services["awo-test"], directory, after=first, until=last))


def berlin(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN)


def test_slots_follow_weekday_hours_and_end_inside_the_range(tmp_path: Path) -> None:
    d = _write(tmp_path, _service())
    slots = _slots(d, berlin(2026, 3, 2), berlin(2026, 3, 9))  # Monday to Monday
    assert _local(slots) == [
        "Mon 02.03. 09:00", "Mon 02.03. 09:45", "Mon 02.03. 10:30", "Mon 02.03. 11:15",  # 11:15 ends 12:00
        "Mon 02.03. 13:00", "Mon 02.03. 13:45", "Mon 02.03. 14:30",  # 15:15 would end after 15:30
        "Fri 06.03. 09:00", "Fri 06.03. 09:45",  # 09:45 ends 10:30 exactly
    ]  # fmt: skip
    assert all(s.tzinfo == UTC for s, _ in slots)
    assert {location.id for _, location in slots} == {"awo-test-pb"}


def test_slots_respect_after_and_until(tmp_path: Path) -> None:
    d = _write(tmp_path, _service())
    slots = _slots(d, berlin(2026, 3, 2, 9, 30), berlin(2026, 3, 2, 13, 45))
    assert _local(slots) == ["Mon 02.03. 09:45", "Mon 02.03. 10:30", "Mon 02.03. 11:15", "Mon 02.03. 13:00"]
    assert _slots(d, berlin(2026, 3, 3), berlin(2026, 3, 5)) == []  # Tuesday to Thursday: closed


def test_exception_days_close_or_change_hours(tmp_path: Path) -> None:
    exceptions = [
        {"date": "2026-03-02", "closed": True, "note": "Teamtag"},
        {"date": "2026-03-06", "hours": [{"from": "14:00", "to": "15:00"}], "note": "Nachmittag"},
        {"date": "2026-03-04", "hours": [{"from": "10:00", "to": "10:45"}]},  # a Wednesday
    ]
    d = _write(tmp_path, _service(exceptions=exceptions))
    assert _local(_slots(d, berlin(2026, 3, 2), berlin(2026, 3, 9))) == [
        "Wed 04.03. 10:00", "Fri 06.03. 14:00",
    ]  # fmt: skip


def test_public_holidays_are_closed_unless_switched_off(tmp_path: Path) -> None:
    d = _write(tmp_path, _service())
    # Easter Monday 6 April 2026 is a public holiday in NRW; the Friday before is Good Friday.
    assert _slots(d, berlin(2026, 4, 3), berlin(2026, 4, 7)) == []
    d = _write(tmp_path, _service(closed_on_public_holidays=False))
    assert len(_slots(d, berlin(2026, 4, 3), berlin(2026, 4, 7))) == 9


def test_location_specific_hours(tmp_path: Path) -> None:
    locations = [
        {"id": "awo-test-pb", "name": "Paderborn", "town": "Paderborn", "address": None, "to_confirm": True},
        {"id": "awo-test-bu", "name": "Büren", "town": "Büren", "address": None, "to_confirm": True},
    ]
    hours = [
        {"day": "montag", "from": "09:00", "to": "10:30"},
        {"day": "dienstag", "from": "09:00", "to": "09:45", "location": "awo-test-bu"},
    ]
    d = _write(tmp_path, _service(locations=locations, hours=hours))
    slots = _slots(d, berlin(2026, 3, 2), berlin(2026, 3, 4))
    assert [(t, loc.id) for t, loc in zip(_local(slots), (loc for _, loc in slots), strict=True)] == [
        ("Mon 02.03. 09:00", "awo-test-pb"),
        ("Mon 02.03. 09:00", "awo-test-bu"),  # same start: once per location, in file order
        ("Mon 02.03. 09:45", "awo-test-pb"),
        ("Mon 02.03. 09:45", "awo-test-bu"),
        ("Tue 03.03. 09:00", "awo-test-bu"),
    ]
    service = d.services["awo-test"]
    assert day_hours(service, service.location("awo-test-pb"), date(2026, 3, 3)) == ()


@pytest.mark.parametrize(
    ("friday", "monday", "utc_friday", "utc_monday"),
    [
        # Summer time starts on Sunday 29 March 2026, ends on Sunday 25 October 2026.
        (date(2026, 3, 27), date(2026, 3, 30), time(8, 0), time(7, 0)),
        (date(2026, 10, 23), date(2026, 10, 26), time(7, 0), time(8, 0)),
    ],
)
def test_local_hours_stay_local_across_the_dst_switch(
    tmp_path: Path, friday: date, monday: date, utc_friday: time, utc_monday: time
) -> None:
    d = _write(tmp_path, _service())
    slots = _slots(d, datetime.combine(friday, time(0), BERLIN), datetime.combine(monday, time(23), BERLIN))
    firsts = [s for s, _ in slots if s.astimezone(BERLIN).strftime("%H:%M") == "09:00"]
    assert [s.time() for s in firsts] == [utc_friday, utc_monday]
    assert [s.astimezone(BERLIN).hour for s in firsts] == [9, 9]


def test_night_hours_skip_the_missing_hour_and_do_not_repeat_the_doubled_one(tmp_path: Path) -> None:
    hours = [{"day": "sonntag", "from": "01:00", "to": "04:00"}]
    d = _write(tmp_path, _service(hours=hours, slot_minutes=30))
    spring = _slots(d, berlin(2026, 3, 29), berlin(2026, 3, 30))
    assert [s.strftime("%H:%M") for s, _ in spring] == ["00:00", "00:30", "01:00", "01:30"]  # UTC
    assert _local(spring)[-2:] == ["Sun 29.03. 03:00", "Sun 29.03. 03:30"]  # 02:00-02:59 do not exist
    autumn = _slots(d, berlin(2026, 10, 25), berlin(2026, 10, 26))
    utc = [s for s, _ in autumn]
    assert len(utc) == 6 and utc == sorted(set(utc))
    assert utc[0] == datetime(2026, 10, 24, 23, 0, tzinfo=UTC)  # 01:00 summer time
    assert utc[-1] == datetime(2026, 10, 25, 2, 30, tzinfo=UTC)  # 03:30 winter time


def test_opening_slots_needs_aware_bounds(tmp_path: Path) -> None:
    d = _write(tmp_path, _service())
    with pytest.raises(ValueError, match="timezone-aware"):
        _slots(d, datetime(2026, 3, 2), berlin(2026, 3, 3))


@pytest.mark.parametrize(
    ("year", "easter_monday", "corpus_christi"),
    [(2025, date(2025, 4, 21), date(2025, 6, 19)), (2026, date(2026, 4, 6), date(2026, 6, 4)),
     (2027, date(2027, 3, 29), date(2027, 5, 27))],
)  # fmt: skip
def test_public_holidays_of_nrw(year: int, easter_monday: date, corpus_christi: date) -> None:
    holidays = public_holidays(year)
    assert holidays[easter_monday] == "Ostermontag" and holidays[corpus_christi] == "Fronleichnam"
    assert date(year, 11, 1) in holidays and date(year, 10, 3) in holidays and len(holidays) == 11


@settings(max_examples=150, deadline=None)
@given(
    start=st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31)),
    length=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=40)),
    slot=st.sampled_from([10, 15, 20, 30, 45, 60, 90]),
)
def test_every_slot_lies_inside_opening_hours(
    directory: Directory, start: datetime, length: timedelta, slot: int
) -> None:
    service = replace(directory.services["awo-jmd"], slot_minutes=slot)
    after = start.replace(tzinfo=BERLIN)
    until = after + length
    slots = list(opening_slots(service, directory, after=after, until=until))
    starts = [s for s, _ in slots]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    for moment, location in slots:
        assert after <= moment < until
        local = moment.astimezone(BERLIN)
        ranges = day_hours(service, location, local.date())
        end = (local + timedelta(minutes=slot)).time()
        assert any(a <= local.time() and end <= b for a, b in ranges), (local, ranges)
        assert local.date() not in public_holidays(local.year)


# --- the validator ------------------------------------------------------------------------------


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    target = tmp_path / "content"
    shutil.copytree(CONTENT, target)
    return target


def _edit(content: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = content / "directory.yml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


def _jmd(data: dict[str, Any]) -> dict[str, Any]:
    service: dict[str, Any] = data["services"]["awo-jmd"]
    return service


BROKEN: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    (
        "unknown organisation",
        lambda d: _jmd(d).update(organisation="drk"),
        r"services\.awo-jmd\.organisation: unknown organisation 'drk'",
    ),
    (
        "unknown town",
        lambda d: _jmd(d)["towns"].append("Bielefeld"),
        r"services\.awo-jmd\.towns\[10\]: unknown value 'Bielefeld'",
    ),
    (
        "empty towns",
        lambda d: _jmd(d).update(towns=[]),
        r"services\.awo-jmd\.towns: must be a non-empty list",
    ),
    (
        "town twice",
        lambda d: _jmd(d)["towns"].append("Büren"),
        r"services\.awo-jmd\.towns\[10\]: 'Büren' is listed twice",
    ),
    (
        "unknown language",
        lambda d: _jmd(d).update(languages=["de", "xx"]),
        r"services\.awo-jmd\.languages\[1\]: unknown value 'xx'",
    ),
    (
        "unknown topic",
        lambda d: _jmd(d).update(topics=["housing"]),
        r"services\.awo-jmd\.topics\[0\]: unknown value 'housing'",
    ),
    ("unknown kind", lambda d: _jmd(d).update(kind="club"), r"services\.awo-jmd\.kind: unknown kind 'club'"),
    (
        "unknown weekday",
        lambda d: _jmd(d)["hours"][2].update(day="funday"),
        r"services\.awo-jmd\.hours\[2\]\.day: unknown weekday 'funday'",
    ),
    (
        "from after to",
        lambda d: _jmd(d)["hours"][0].update({"from": "12:00", "to": "09:00"}),
        r"services\.awo-jmd\.hours\[0\]: from 12:00 must be before to 09:00",
    ),
    (
        "overlap",
        lambda d: _jmd(d)["hours"].append({"day": "montag", "from": "11:00", "to": "13:30"}),
        r"services\.awo-jmd\.hours: hours\[6\] \(11:00\) overlaps hours\[0\]",
    ),
    (
        "not a time",
        lambda d: _jmd(d)["hours"][1].update({"from": "9 Uhr"}),
        r"services\.awo-jmd\.hours\[1\]\.from: must be a time like",
    ),
    (
        "no such hour",
        lambda d: _jmd(d)["hours"][1].update({"to": "25:00"}),
        r"services\.awo-jmd\.hours\[1\]\.to: '25:00' is not a time of day",
    ),
    ("no hours", lambda d: _jmd(d).update(hours=[]), r"services\.awo-jmd\.hours: needs weekly ranges"),
    (
        "bad date",
        lambda d: _jmd(d)["exceptions"][0].update(date="2026-02-30"),
        r"services\.awo-jmd\.exceptions\[0\]\.date: '2026-02-30' is not a valid date",
    ),
    (
        "date twice",
        lambda d: _jmd(d)["exceptions"].append({"date": date(2026, 12, 24), "closed": True}),
        r"services\.awo-jmd\.exceptions\[2\]: 2026-12-24 is listed twice",
    ),
    (
        "closed and hours",
        lambda d: _jmd(d)["exceptions"][0].update(hours=[{"from": "09:00", "to": "10:00"}]),
        r"services\.awo-jmd\.exceptions\[0\]: give either closed: true or other hours",
    ),
    (
        "slot too short",
        lambda d: _jmd(d).update(slot_minutes=5),
        r"services\.awo-jmd\.slot_minutes: must be a whole number from 10 to 240",
    ),
    (
        "slot off the clock",
        lambda d: _jmd(d).update(slot_minutes=50),
        r"services\.awo-jmd\.slot_minutes: 50 does not fit the clock",
    ),
    (
        "slot longer than hours",
        lambda d: _jmd(d).update(slot_minutes=210),
        r"services\.awo-jmd\.hours\[0\]: shorter than one appointment",
    ),
    (
        "capacity 0",
        lambda d: _jmd(d).update(capacity=0),
        r"services\.awo-jmd\.capacity: must be a whole number from 1 to 50, got 0",
    ),
    (
        "ages reversed",
        lambda d: _jmd(d).update(min_age=30),
        r"services\.awo-jmd: min_age 30 is above max_age 26",
    ),
    (
        "typo in a field",
        lambda d: _jmd(d).update(slot_minute=30),
        r"services\.awo-jmd: unknown field 'slot_minute'",
    ),
    ("to_confirm missing", lambda d: _jmd(d).pop("to_confirm"), r"services\.awo-jmd: to_confirm is missing"),
    (
        "to_confirm not a flag",
        lambda d: _jmd(d)["locations"][0].update(to_confirm="maybe"),
        r"services\.awo-jmd\.locations\[0\]\.to_confirm: must be true or false",
    ),
    (
        "location town",
        lambda d: _jmd(d)["locations"][0].update(town="Bielefeld"),
        r"services\.awo-jmd\.locations\[0\]\.town: unknown town 'Bielefeld'",
    ),
    (
        "location id twice",
        lambda d: d["services"]["diakonie-mbe"]["locations"][0].update(id="awo-jmd-paderborn"),
        r"services\.diakonie-mbe\.locations\[0\]\.id: location id 'awo-jmd-paderborn' is used twice",
    ),
    (
        "id without organisation",
        lambda d: d["services"].update(jmd=d["services"].pop("awo-jmd")),
        r"services\.jmd: the id must start with its organisation: awo-",
    ),
    (
        "spelling of two towns",
        lambda d: d["towns"]["Büren"]["spellings"].append("Paderborn"),
        r"towns\.Büren\.spellings: 'Paderborn' is already a name of Paderborn",
    ),
    (
        "time zone",
        lambda d: d.update(timezone="Europe/Paderborn"),
        r"timezone: unknown time zone 'Europe/Paderborn'",
    ),
    ("no services", lambda d: d.update(services={}), r"services: no services listed"),
]


@pytest.mark.parametrize(("change", "message"), [pytest.param(c, m, id=i) for i, c, m in BROKEN])
def test_broken_directory_names_file_and_key(
    broken: Path, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    _edit(broken, change)
    with pytest.raises(ContentError, match=r"content/directory\.yml: " + message):
        load_directory(broken)


def test_duplicate_service_ids_and_invalid_yaml_are_named(broken: Path) -> None:
    path = broken / "directory.yml"
    original = path.read_text(encoding="utf-8")
    path.write_text(original + "  awo-jmd: {}\n", encoding="utf-8")  # services is the last mapping
    with pytest.raises(ContentError, match=r"directory\.yml: invalid YAML: .*duplicate key 'awo-jmd'"):
        load_directory(broken)
    path.write_text(original + "  bad: [unclosed\n", encoding="utf-8")
    with pytest.raises(ContentError, match=r"directory\.yml: invalid YAML"):
        load_directory(broken)
    path.unlink()
    with pytest.raises(ContentError, match=r"directory\.yml: file is missing"):
        load_directory(broken)


def test_unquoted_times_and_german_or_english_weekdays_are_read(broken: Path) -> None:
    path = broken / "directory.yml"
    text = path.read_text(encoding="utf-8")
    text = text.replace(
        '{day: montag, from: "09:00", to: "12:00"}', "{day: Monday, from: 9:00, to: 10:30}", 1
    )
    path.write_text(text, encoding="utf-8")
    hours = load_directory(broken).services["awo-jmd"].hours
    assert (hours[0].weekday, hours[0].start, hours[0].end) == (0, time(9, 0), time(10, 30))


def test_unknown_organisation_when_organisations_are_given() -> None:
    with pytest.raises(ContentError, match=r"services\.awo-jmd\.organisation: unknown organisation 'awo'"):
        load_directory(CONTENT, {"jobcenter": "Jobcenter Kreis Paderborn"})
