"""Translation through the real deep-translator client against a LibreTranslate-compatible
server on loopback: cached, marked, protected glossary terms, bounded by a deadline."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.content import load_content
from bot.errors import TranslationUnavailable
from bot.settings import ROOT
from bot.storage.database import Database
from bot.texts import TextService
from bot.translation import DeepTranslator, TranslationService
from tests.auxil.libretranslate import FakeLibreTranslate
from tests.auxil.servers import ServerThread, free_port


@pytest.fixture(scope="module")
def libre() -> Iterator[tuple[FakeLibreTranslate, str]]:
    fake = FakeLibreTranslate()
    server = ServerThread(fake.app).start()
    yield fake, server.url
    server.stop()


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'lotse.db'}")
    db.upgrade()
    yield db
    await db.dispose()


@pytest.fixture
def fake(libre: tuple[FakeLibreTranslate, str]) -> FakeLibreTranslate:
    server, _url = libre
    server.requests.clear()
    server.delay, server.status = 0.0, 200
    return server


def service(url: str, database: Database, *, timeout: float = 3.0) -> TranslationService:
    return TranslationService(
        DeepTranslator("libre", url=url),
        database,
        timeout=timeout,
        glossary={"en": {"Integrationskurs": "integration course"}, "ar": {}},
    )


async def test_translates_through_the_real_client_and_caches(
    libre: tuple[FakeLibreTranslate, str], fake: FakeLibreTranslate, database: Database
) -> None:
    translations = service(libre[1], database)
    first = await translations.translate("Guten Tag", source="de", target="ar")
    assert first.text == "<ar> Guten Tag" and not first.cached
    again = await translations.translate("Guten Tag", source="de", target="ar")
    assert again.text == first.text and again.cached
    assert len(fake.requests) == 1
    assert fake.requests[0]["source"] == "de" and fake.requests[0]["target"] == "ar"


async def test_glossary_terms_are_protected_and_kept_in_german(
    libre: tuple[FakeLibreTranslate, str], fake: FakeLibreTranslate, database: Database
) -> None:
    translations = service(libre[1], database)
    result = await translations.translate("Der Integrationskurs kostet Geld.", source="de", target="en")
    assert "Integrationskurs" not in fake.requests[0]["q"]
    assert result.text == "<en> Der integration course (Integrationskurs) kostet Geld."


async def test_a_slow_provider_hits_the_deadline_and_is_skipped_for_a_while(
    libre: tuple[FakeLibreTranslate, str], fake: FakeLibreTranslate, database: Database
) -> None:
    fake.delay = 2.0
    translations = service(libre[1], database, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(TranslationUnavailable, match="did not answer"):
        await translations.translate("Hallo", source="de", target="fr")
    assert time.monotonic() - started < 1.5
    assert not translations.available
    with pytest.raises(TranslationUnavailable):
        await translations.translate("Noch etwas", source="de", target="fr")
    assert len(fake.requests) == 1


async def test_provider_errors_become_translation_unavailable(
    libre: tuple[FakeLibreTranslate, str], fake: FakeLibreTranslate, database: Database
) -> None:
    fake.status = 500
    with pytest.raises(TranslationUnavailable, match="libre"):
        await service(libre[1], database).translate("Hallo", source="de", target="tr")


async def test_unreachable_online_provider_degrades_honestly(database: Database) -> None:
    # Google is unreachable here (no internet); a closed loopback port stands in for any dead server.
    dead = TranslationService(
        DeepTranslator("libre", url=f"http://127.0.0.1:{free_port()}"), database, timeout=3.0
    )
    with pytest.raises(TranslationUnavailable):
        await dead.translate("Hallo", source="de", target="ru")


async def test_missing_text_is_machine_translated_and_marked(
    libre: tuple[FakeLibreTranslate, str], fake: FakeLibreTranslate, database: Database
) -> None:
    content = load_content(ROOT / "content")
    del content.texts["ru"]["goodbye"]
    texts = TextService(content, service(libre[1], database))
    message = await texts.message("goodbye", "ru")
    assert message.machine_translated
    assert message.text.startswith("<ru> " + content.reference("goodbye"))
    assert message.text.endswith(content.texts["ru"]["translation.machine"])


async def test_without_translation_the_german_text_comes_with_a_note(database: Database) -> None:
    content = load_content(ROOT / "content")
    del content.texts["tr"]["goodbye"]
    texts = TextService(
        content,
        TranslationService(
            DeepTranslator("libre", url=f"http://127.0.0.1:{free_port()}"), database, timeout=1
        ),
    )
    message = await texts.message("goodbye", "tr")
    assert not message.machine_translated
    assert message.text.startswith(content.reference("goodbye"))
    assert content.texts["tr"]["translation.unavailable"] in message.text
