"""Property-based robustness: the REST channel and the content loader under arbitrary input."""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot import LANGUAGES
from bot.bootstrap import Services
from bot.content import load_content
from bot.errors import ContentError
from bot.settings import ROOT

ENDPOINT = "/webhooks/rest/webhook"

# Moderate example counts and no per-example deadline: the app answers through a real server thread
# and the loader parses real YAML, so single examples may take a few hundred milliseconds.
REST_SETTINGS = settings(
    max_examples=80,
    deadline=None,
    database=None,  # no .hypothesis/ directory in the checkout
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
CONTENT_SETTINGS = settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# ---------------------------------------------------------------------------------------------------
# Strategies


def _unicode(max_size: int = 200) -> st.SearchStrategy[str]:
    """Any text, including what JSON can carry but UTF-8 cannot: lone surrogates, NUL, controls."""
    anything = st.characters(codec=None)
    surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
    tricky = st.sampled_from(["\x00", "\u200b", "\ufeff", "\u202e", "\n", "\t", "{", "}", "/", "\\"])
    # a list of characters joined: st.text() over this alphabet silently drops the surrogates
    return st.lists(st.one_of(anything, surrogates, tricky), max_size=max_size).map("".join)


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    _unicode(40),
)
json_values: st.SearchStrategy[Any] = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(_unicode(12), children, max_size=5),
    max_leaves=20,
)
messages = st.one_of(
    _unicode(300),
    st.sampled_from(
        [
            "",
            " ",
            "/start",
            "/privacy",
            "/delete",
            "/language",
            "/choose_language",
            '/choose_language{"language":"uk"}',
            '/choose_language{"language":"xx"}',
            "/keep_language",
            "/unknown_command with words",
            "ja",
            "nein",
            "Mein Mann schlägt mich",
            "Was kostet der Integrationskurs?",
        ]
    ),
    st.integers(min_value=3990, max_value=4010).map(lambda n: "ä" * n),
)
metadata_values = st.one_of(
    st.dictionaries(_unicode(12), json_values, max_size=4),
    st.fixed_dictionaries(
        {"language": st.one_of(st.sampled_from([*LANGUAGES, "xx", "", "DE", "de-DE"]), json_values)}
    ),
    json_values,
)
senders = st.one_of(
    _unicode(140), st.sampled_from(["anna", "a" * 128, "a" * 129, " ", "\u200b"]), json_values
)
shaped_bodies = st.fixed_dictionaries(
    {"sender": senders, "message": st.one_of(messages, json_values)},
    optional={"metadata": metadata_values, "extra": json_values},
)


def _encode(value: Any) -> bytes:
    # ensure_ascii keeps lone surrogates as \\udxxx escapes, as a JSON client could send them
    return json.dumps(value, ensure_ascii=True, allow_nan=True).encode("ascii")


bodies = st.one_of(
    shaped_bodies.map(_encode),
    json_values.map(_encode),
    shaped_bodies.map(lambda b: json.dumps(b, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    st.binary(max_size=300),
)


# ---------------------------------------------------------------------------------------------------
# (a) the REST channel


def _check_answer(response: httpx.Response, caplog: pytest.LogCaptureFixture) -> None:
    """A well-formed answer: replies for valid requests, a 4xx that says why for invalid ones."""
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [f"{r.name}: {r.getMessage()}" for r in errors]
    # 503 is the generic apology after an unexpected exception (the database is a local file here)
    assert response.status_code in (200, 400, 413), (response.status_code, response.text[:300])
    body = response.json()
    if response.status_code == 200:
        assert isinstance(body, list) and body, body
        for reply in body:
            assert isinstance(reply["text"], str) and reply["text"].strip(), reply
            assert reply["custom"]["lotse"]["language"] in LANGUAGES, reply
    else:
        assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], body


@REST_SETTINGS
@given(body=bodies)
def test_rest_channel_answers_any_body_without_a_server_error(
    offline_app: tuple[Services, httpx.Client], caplog: pytest.LogCaptureFixture, body: bytes
) -> None:
    _services, client = offline_app
    caplog.clear()
    response = client.post(ENDPOINT, content=body, headers={"content-type": "application/json"})
    _check_answer(response, caplog)


@REST_SETTINGS
@given(text=messages, metadata=metadata_values, sender=st.sampled_from(["p1", "p2", "p3"]))
def test_rest_channel_answers_any_text_and_metadata_with_replies(
    offline_app: tuple[Services, httpx.Client],
    caplog: pytest.LogCaptureFixture,
    text: str,
    metadata: Any,
    sender: str,
) -> None:
    """A few senders reused, so the texts also meet an ongoing conversation (pending questions, language)."""
    services, client = offline_app
    caplog.clear()
    response = client.post(
        ENDPOINT,
        content=_encode({"sender": sender, "message": text, "metadata": metadata}),
        headers={"content-type": "application/json"},
    )
    _check_answer(response, caplog)
    valid = (
        isinstance(metadata, dict | None)
        and "\x00" not in text
        and len(text) <= services.settings.max_message_chars
        and not any(0xD800 <= ord(ch) <= 0xDFFF for ch in text)
    )
    if valid:
        assert response.status_code == 200, response.text[:300]


# ---------------------------------------------------------------------------------------------------
# (b) the content loader

# A reduced but real copy of content/ (the German reference, one more language with its lexicon and
# every shared file) keeps one load near 0.2 s.
CONTENT_FILES = [
    "texts/de.yml",
    "texts/uk.yml",
    "lexicon/de.yml",
    "lexicon/uk.yml",
    "answers.yml",
    "consent.yml",
    "glossary.yml",
    "organisations.yml",
]
STRUCTURED_FILES = ["answers.yml", "consent.yml", "organisations.yml", "glossary.yml", "lexicon/de.yml"]
"""Files whose shape (nested mappings and lists) the loader checks; texts are flat key: text."""


@pytest.fixture(scope="module")
def content_copy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A loadable copy of the real content tree."""
    target = tmp_path_factory.mktemp("content")
    for name in CONTENT_FILES:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / "content" / name, target / name)
    load_content(target)  # the unchanged copy must load, else the properties say nothing
    yield target


_yaml_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False),
    st.dates(),
    st.text(max_size=30),
    st.sampled_from(["{", "}", "{x}", "{0}", "{x!r}", "{x.y}", "https://example.org", "http://x", "de"]),
)
yaml_values: st.SearchStrategy[Any] = st.recursive(
    _yaml_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.one_of(st.text(max_size=15), st.integers(), st.booleans()), children, max_size=4)
    ),
    max_leaves=15,
)
wrong_types = st.sampled_from([None, "", "x", 0, 7, -1, True, [], [1], ["x"], {}, {"x": 1}, date(2026, 1, 1)])
"""A node of the wrong type: what an author's indentation slip or typo turns a value into."""
# Unquoted fragments as an author might type them: impossible dates, anchors, tags, flow syntax.
date_like = st.from_regex(r"\A[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}\Z")
"""Mostly impossible dates (month 47): YAML still reads them as dates."""
raw_fragments = st.one_of(
    date_like,
    st.sampled_from(
        [
            "2026-02-30",
            "2026-13-01",
            "0000-01-01",
            "&a x",
            "*a",
            "*undefined",
            "!!python/object:os.system",
            "!!binary xyz",
            "!!int abc",
            "!!float x",
            "!!timestamp 2026-99-99",
            "{a: 1",
            "[1, 2",
            "{version: 1, date: 2026-02-31, material: true}",
            "- - -",
            "<<: *a",
            "? [a, b]\n: c",
            "'unterminated",
            '"\\x"',
            "\t",
            ": :",
            "|",
            ">-",
            "%TAG ! x",
            "---",
            "...",
        ]
    ),
    st.text(max_size=40),
)
_SCALAR_TOKENS = re.compile(r"\b[0-9]{4}-[0-9]{2}-[0-9]{2}\b|\b(?:true|false)\b|(?<=: )[0-9]+\b|https://\S+")
"""Values an author edits in place: dates, flags, numbers, links."""


def _nodes(data: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every node of a parsed document as a path of keys and indices, the root first."""
    found = [path]
    if isinstance(data, dict):
        for key, child in data.items():
            found += _nodes(child, (*path, key))
    elif isinstance(data, list):
        for index, child in enumerate(data):
            found += _nodes(child, (*path, index))
    return found


def _at(data: Any, path: tuple[Any, ...]) -> Any:
    """The node at a path."""
    for step in path:
        data = data[step]
    return data


def _replace(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    """The document with the node at ``path`` replaced, or removed when value is _DELETE."""
    if not path:
        return None if value is _DELETE else value
    parent = data
    for step in path[:-1]:
        parent = parent[step]
    if value is _DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return data


_DELETE = object()


def _encode_yaml(value: Any) -> bytes:
    return yaml.safe_dump(value, allow_unicode=True, sort_keys=False).encode("utf-8", "surrogatepass")


def _text_mistake(root: Path, data: st.DataObject) -> tuple[Path, bytes | None]:
    """One mistake made in a file's text: the file and its new bytes (None: the file is deleted)."""
    kind = data.draw(st.sampled_from(["line", "scalar", "whole", "bytes", "missing"]), label="kind")
    # values edited in place are dates, flags, numbers and links: they live in the structured files
    path = root / data.draw(st.sampled_from(STRUCTURED_FILES if kind == "scalar" else CONTENT_FILES))
    return path, _text_mistake_in(path.read_text(encoding="utf-8"), kind, data)


def _text_mistake_in(original: str, kind: str, data: st.DataObject) -> bytes | None:
    if kind == "missing":
        return None
    if kind == "bytes":
        return data.draw(st.binary(max_size=200), label="bytes")
    if kind == "whole":
        return _encode_yaml(data.draw(yaml_values, label="document"))
    fragment = data.draw(st.one_of(date_like, raw_fragments) if kind == "scalar" else raw_fragments)
    scalars = list(_SCALAR_TOKENS.finditer(original))
    if kind == "scalar" and scalars:
        token = scalars[data.draw(st.integers(0, len(scalars) - 1), label="token")]
        edited = original[: token.start()] + fragment + original[token.end() :]
        return edited.encode("utf-8", "surrogatepass")
    lines = original.splitlines() or [""]
    index = data.draw(st.integers(0, len(lines) - 1), label="line")
    how = data.draw(st.sampled_from(["value", "replace", "insert", "indent"]), label="how")
    if how == "value" and ":" in lines[index]:
        lines[index] = lines[index].split(":", 1)[0] + ": " + fragment
    elif how == "insert":
        lines.insert(index, fragment)
    elif how == "indent":
        lines[index] = " " * data.draw(st.integers(1, 5), label="spaces") + lines[index]
    else:
        lines[index] = fragment
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")


def _structure_mistake(original: str, data: st.DataObject) -> bytes:
    """One node of the parsed file replaced by a wrong or arbitrary value, or removed."""
    document = yaml.safe_load(original)
    nodes = _nodes(document)
    if data.draw(st.booleans(), label="container"):
        # a mapping or list turned into something else is the slip the loader most easily misses
        nodes = [path for path in nodes if isinstance(_at(document, path), dict | list)]
    path = nodes[data.draw(st.integers(0, len(nodes) - 1), label="node")]
    value = data.draw(
        st.one_of(wrong_types, wrong_types, yaml_values, st.just(_DELETE) if path else st.nothing()),
        label="value",
    )
    return _encode_yaml(_replace(document, path, value))


def _load_only_content_errors(directory: Path) -> None:
    """The property: either the tree loads and is usable, or ContentError says what is wrong."""
    try:
        content = load_content(directory)
    except ContentError as exc:
        assert str(exc), "a ContentError names the file and the key"
        return
    assert "engine.unavailable" in content.texts["de"]
    for scope in content.consent.versions:
        assert content.consent.current(scope).key in content.texts["de"]


def _with_file(root: Path, path: Path, mutated: bytes | None) -> None:
    """Load ``root`` with ``path`` changed to ``mutated`` (deleted when None), then restore it."""
    original = path.read_bytes()
    try:
        if mutated is None:
            path.unlink()
        else:
            path.write_bytes(mutated)
        _load_only_content_errors(root)
    finally:
        path.write_bytes(original)


@CONTENT_SETTINGS
@given(data=st.data())
def test_content_loader_raises_only_content_error_for_text_mistakes(
    content_copy: Path, data: st.DataObject
) -> None:
    path, mutated = _text_mistake(content_copy, data)
    _with_file(content_copy, path, mutated)


@pytest.mark.parametrize("name", STRUCTURED_FILES)
@settings(CONTENT_SETTINGS, max_examples=20)
@given(data=st.data())
def test_content_loader_raises_only_content_error_for_wrong_structure(
    content_copy: Path, name: str, data: st.DataObject
) -> None:
    path = content_copy / name
    _with_file(content_copy, path, _structure_mistake(path.read_text(encoding="utf-8"), data))


@pytest.mark.parametrize(
    ("name", "find", "replace"),
    [
        ("answers.yml", "reviewed: 2026-11-24", "reviewed: 2026-02-30"),
        ("consent.yml", "date: 2026-11-24", "date: 2026-13-01"),
        ("consent.yml", "  handoff:\n    versions:", "  handoff: [1]\n  handoff_old:\n    versions:"),
        ("consent.yml", "  booking:\n    versions:", "  booking: later\n  booking_old:\n    versions:"),
    ],
)
def test_mistakes_the_properties_found_raise_content_error(
    content_copy: Path, name: str, find: str, replace: str
) -> None:
    """Regression examples: each once escaped the loader as ValueError or AttributeError."""
    path = content_copy / name
    original = path.read_text(encoding="utf-8")
    assert find in original
    try:
        path.write_text(original.replace(find, replace, 1), encoding="utf-8")
        with pytest.raises(ContentError, match=name.replace(".", r"\.")):
            load_content(content_copy)
    finally:
        path.write_text(original, encoding="utf-8")


def test_content_copy_is_restored_after_the_properties(content_copy: Path) -> None:
    """Guards the properties above: every example restores the file it changed."""
    loaded = load_content(content_copy)
    assert loaded.texts["de"]["engine.unavailable"]
    assert isinstance(loaded.answers["answer.language_course.cost"].reviewed, date)
