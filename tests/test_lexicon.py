"""Lexicon matching over all languages: emergencies, yes/no, aspects, no false alarms."""

from __future__ import annotations

import pytest
import yaml

from bot import LANGUAGES
from bot.content import load_content
from bot.lexicon import LexiconMatcher
from bot.settings import ROOT


@pytest.fixture(scope="module")
def matcher() -> LexiconMatcher:
    return LexiconMatcher(load_content(ROOT / "content"))


@pytest.mark.parametrize(
    "text",
    [
        "Mein Mann schlägt mich jeden Tag",
        "I want to kill myself",
        "زوجي يضربني",
        "мене б’є чоловік",
        "Я хочу покончить с собой",
        "Kocam beni dövüyor",
        "می‌خواهم خودمو بکشم",
        "mon mari me frappe",
    ],
)
def test_emergencies_are_found_in_every_language(matcher: LexiconMatcher, text: str) -> None:
    assert matcher.is_emergency(text)


def test_no_emergency_in_any_training_or_held_out_example(matcher: LexiconMatcher) -> None:
    for folder in ("nlu", "heldout", "heldout2"):
        for lang in LANGUAGES:
            data = yaml.safe_load((ROOT / "nlu_data" / folder / f"{lang}.yml").read_text(encoding="utf-8"))
            if folder == "nlu":
                lines = [
                    line[2:]
                    for block in data["nlu"]
                    for line in block["examples"].splitlines()
                    if line.startswith("- ")
                ]
            else:
                lines = [str(x) for examples in data["intents"].values() for x in examples]
            alarms = [line for line in lines if matcher.is_emergency(line)]
            assert alarms == [], (folder, lang, alarms[:3])


def test_yes_and_no_in_several_languages(matcher: LexiconMatcher) -> None:
    assert all(matcher.is_yes(w) for w in ["Ja!", "yes", "نعم", "так", "да", "evet", "بله", "oui"])
    assert all(matcher.is_no(w) for w in ["nein", "no", "لا", "ні", "нет", "hayır", "نه", "non"])


def test_short_stems_match_only_whole_words(matcher: LexiconMatcher) -> None:
    assert "zab" in matcher.aspects("Brauche ich die ZAB?")
    assert "zab" not in matcher.aspects("yazabilir misin")
    assert "zab" not in matcher.aspects("man zaban yad migiram")
