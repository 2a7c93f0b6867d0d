"""The content tree: the repository's content is valid and complete; broken files are named."""

import shutil
from datetime import date
from pathlib import Path

import pytest
import yaml

from bot import LANGUAGES
from bot.content import REQUIRED_KEYS, load_content, normalise, placeholders
from bot.errors import ContentError
from bot.settings import ROOT

CONTENT = ROOT / "content"


def test_repository_content_loads() -> None:
    content = load_content(CONTENT)
    assert set(REQUIRED_KEYS) <= set(content.texts["de"])
    assert len(content.answers) >= 20
    assert {meta.topic for meta in content.answers.values()} == {
        "language_course", "recognition", "qualification", "counselling",
    }  # fmt: skip


def test_every_text_is_authored_in_every_language() -> None:
    content = load_content(CONTENT)
    assert set(content.texts) == set(LANGUAGES)
    assert content.missing() == []


def test_every_language_has_a_lexicon_with_emergency_words() -> None:
    content = load_content(CONTENT)
    for lang in LANGUAGES:
        lexicon = content.lexicons[lang]
        assert len(lexicon.emergency) >= 15, lang
        assert lexicon.yes and lexicon.no, lang


def test_answers_are_phone_sized_and_dated() -> None:
    content = load_content(CONTENT)
    for key, meta in content.answers.items():
        assert meta.links and all(link.startswith("https://") for link in meta.links)
        assert meta.stand is not None, key
        for lang in LANGUAGES:
            assert len(content.texts[lang][key]) <= 1000, (lang, key)


def test_answers_keep_the_german_terms() -> None:
    content = load_content(CONTENT)
    key = "answer.language_course.overview"
    for lang in LANGUAGES:
        assert "Integrationskurs" in content.texts[lang][key], lang


def test_placeholders_are_parsed() -> None:
    assert placeholders("Stand: {date} · {source}") == {"date", "source"}
    with pytest.raises(ValueError):
        placeholders("{not a name}")


def test_normalise_folds_case_diacritics_and_invisible_characters() -> None:
    assert normalise("Prüfung\u200b  GEBÜHR") == "prufung gebuhr"
    assert normalise("Türkçe İş") == normalise("turkce is")
    assert normalise("й ї") == "й ї"  # Cyrillic letters keep their marks
    assert normalise("مي\u200cخواهم") == normalise("می خواهم")


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    target = tmp_path / "content"
    shutil.copytree(CONTENT, target)
    return target


def _edit(path: Path, change: dict[str, object]) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data.update(change)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


@pytest.mark.parametrize(
    ("file", "change", "message"),
    [
        ("texts/en.yml", {"greet": "  "}, r"texts/en.yml: key 'greet' has an empty"),
        (
            "texts/fr.yml",
            {"input.too_long": "trop long"},
            r"texts/fr.yml: key 'input.too_long' has placeholders",
        ),
        ("texts/ar.yml", {"no.such.key": "x"}, r"texts/ar.yml: key 'no.such.key' does not exist"),
        ("texts/de.yml", {"Bad Key": "x"}, r"texts/de.yml: key 'Bad Key' is not a dotted"),
        (
            "answers.yml",
            {
                "answer.recognition.zab": {
                    "topic": "recognition",
                    "aspect": "zab",
                    "links": ["ftp://x"],
                    "source": "s",
                    "reviewed": date(2026, 1, 1),
                }
            },
            r"answers.yml: answer.recognition.zab: link 'ftp://x' is not a valid https URL",
        ),
    ],
)
def test_broken_files_name_file_and_key(
    broken: Path, file: str, change: dict[str, object], message: str
) -> None:
    _edit(broken / file, change)
    with pytest.raises(ContentError, match=message):
        load_content(broken)


def test_missing_required_key_stops_loading(broken: Path) -> None:
    path = broken / "texts" / "de.yml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    del data["engine.unavailable"]
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ContentError, match="required key 'engine.unavailable' is missing"):
        load_content(broken)


def test_invalid_yaml_and_encoding_are_named(broken: Path) -> None:
    (broken / "texts" / "tr.yml").write_text("greet: [unclosed", encoding="utf-8")
    with pytest.raises(ContentError, match=r"texts/tr.yml: invalid YAML"):
        load_content(broken)
    (broken / "texts" / "tr.yml").write_bytes(b"greet: \xff\xfe")
    with pytest.raises(ContentError, match=r"texts/tr.yml: not UTF-8"):
        load_content(broken)


def test_a_missing_translation_is_reported_not_fatal(broken: Path) -> None:
    path = broken / "texts" / "uk.yml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    del data["goodbye"]
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    assert ("uk", "goodbye") in load_content(broken).missing()
