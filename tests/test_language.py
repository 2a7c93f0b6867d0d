"""The language policy and the detector on held-out messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bot import LANGUAGES
from bot.language import Detection, LanguageDetector, decide_language
from bot.settings import ROOT

HELDOUT = ROOT / "nlu_data" / "heldout"


def _detection(language: str | None, confidence: float, words: int = 5) -> Detection:
    return Detection(language=language, confidence=confidence, words=words)


def test_first_contact_uses_confident_detection() -> None:
    decision = decide_language(
        current=None, source="none", detection=_detection("ar", 0.95), hint="en", default="de"
    )
    assert (decision.language, decision.source, decision.first_contact) == ("ar", "detected", True)


def test_first_contact_without_confidence_uses_the_hint_then_german() -> None:
    unsure = _detection("fr", 0.3)
    assert (
        decide_language(current=None, source="none", detection=unsure, hint="uk", default="de").language
        == "uk"
    )
    assert (
        decide_language(current=None, source="none", detection=unsure, hint="xx", default="de").language
        == "de"
    )


def test_short_messages_never_switch() -> None:
    decision = decide_language(
        current="ru", source="detected", detection=_detection("de", 0.99, words=2), hint=None, default="de"
    )
    assert decision.language == "ru" and not decision.changed and decision.ask_switch_to is None


def test_confident_long_message_switches_a_detected_language() -> None:
    decision = decide_language(
        current="en", source="detected", detection=_detection("tr", 0.9), hint=None, default="de"
    )
    assert decision.language == "tr" and decision.changed


def test_an_explicit_choice_is_kept_and_the_client_asked() -> None:
    decision = decide_language(
        current="fa", source="explicit", detection=_detection("de", 0.95), hint=None, default="de"
    )
    assert decision.language == "fa" and decision.ask_switch_to == "de"


def test_unsure_detection_keeps_the_language() -> None:
    decision = decide_language(
        current="uk", source="detected", detection=_detection("ru", 0.5), hint=None, default="de"
    )
    assert decision.language == "uk" and decision.ask_switch_to is None


def _heldout(lang: str) -> dict[str, object]:
    data: dict[str, object] = yaml.safe_load((HELDOUT / f"{lang}.yml").read_text(encoding="utf-8"))
    return data


@pytest.mark.parametrize("lang", LANGUAGES)
def test_short_replies_never_flip_the_language(detector: LanguageDetector, lang: str) -> None:
    replies = [str(r) for r in _heldout(lang)["short_replies"]]  # type: ignore[union-attr]
    assert len(replies) >= 10
    for current in LANGUAGES:
        for reply in replies:
            if len(reply.split()) > 2:
                continue
            decision = decide_language(
                current=current, source="detected", detection=detector.detect(reply), hint=None, default="de"
            )
            assert decision.language == current, (lang, reply, current)


def test_detection_accuracy_on_held_out_messages_of_three_words_or_more(detector: LanguageDetector) -> None:
    total = correct = 0
    for lang in LANGUAGES:
        intents = _heldout(lang)["intents"]
        assert isinstance(intents, dict)
        for examples in intents.values():
            for text in examples:
                if len(str(text).split()) < 3:
                    continue
                total += 1
                correct += detector.detect(str(text)).language == lang
    assert total > 500
    assert correct / total >= 0.90, f"{correct}/{total}"


def test_heldout_files_exist_for_every_language() -> None:
    assert {p.stem for p in Path(HELDOUT).glob("*.yml")} == {*LANGUAGES, "language_id"}
