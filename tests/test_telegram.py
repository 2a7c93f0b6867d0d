"""Telegram: the real python-telegram-bot code against a Bot-API-compatible server on loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot import LANGUAGES
from bot.app import create_app
from bot.bootstrap import Services, bootstrap
from bot.channels.telegram import COMMANDS, split_text
from bot.language import LanguageDetector
from tests.auxil.botapi import FakeBotApi, button_update, media_update, text_update
from tests.auxil.servers import ServerThread, free_port
from tests.conftest import make_settings

SECRET = "test-secret-7f3a"


class TelegramStack:
    def __init__(self, services: Services, app: ServerThread, api: FakeBotApi) -> None:
        self.services, self.app, self.api = services, app, api

    def post(self, update: dict[str, Any], *, secret: str | None = SECRET) -> httpx.Response:
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
        return httpx.post(f"{self.app.url}/telegram/webhook", json=update, headers=headers, timeout=30)

    def texts_to(self, chat_id: int) -> list[str]:
        return [str(p["text"]) for p in self.api.sent() if int(p["chat_id"]) == chat_id]


def start_stack(
    tmp: Path, detector: LanguageDetector, *, polling: bool = False, **env: str
) -> tuple[TelegramStack, ServerThread]:
    api = FakeBotApi()
    api_server = ServerThread(api.app).start()
    port = free_port()
    settings_env = {
        "TELEGRAM_TOKEN": "123456:TEST",
        "LOTSE_TELEGRAM_API_URL": api_server.url,
        "LOTSE_PUBLIC_URL": f"http://127.0.0.1:{port}",
        **env,
    }
    if not polling:
        settings_env["TELEGRAM_WEBHOOK_SECRET"] = SECRET
    services = bootstrap(make_settings(tmp, **settings_env), detector=detector)
    app = ServerThread(create_app(services), port=port).start()
    return TelegramStack(services, app, api), api_server


@pytest.fixture
def telegram(tmp_path: Path, detector: LanguageDetector) -> Iterator[TelegramStack]:
    stack, api_server = start_stack(tmp_path, detector)
    yield stack
    stack.app.stop()
    api_server.stop()


def test_commands_are_registered_in_every_language(telegram: TelegramStack) -> None:
    registered = telegram.api.sent("setMyCommands")
    by_language = {p.get("language_code"): p["commands"] for p in registered}
    assert set(by_language) == {None, *LANGUAGES}
    arabic = {c["command"]: c["description"] for c in by_language["ar"]}
    assert list(arabic) == list(COMMANDS)
    assert arabic["privacy"] == telegram.services.content.texts["ar"]["command.privacy"]


def test_a_wrong_or_missing_secret_is_refused_and_nothing_processed(telegram: TelegramStack) -> None:
    assert telegram.post(text_update(1, 501, "Hallo"), secret="wrong").status_code == 403
    assert telegram.post(text_update(2, 501, "Hallo"), secret=None).status_code == 403
    assert telegram.texts_to(501) == []


def test_a_repeated_update_id_is_processed_once(telegram: TelegramStack) -> None:
    update = text_update(10, 502, "Hallo", language_code="de")
    assert telegram.post(update).json() == {"ok": True}
    assert telegram.post(update).json() == {"ok": True, "duplicate": True}
    assert len(telegram.texts_to(502)) == 2, "one reply and the language picker, once"


@pytest.mark.parametrize("kind", ["photo", "sticker", "voice", "document", "location", "edited"])
def test_media_get_a_friendly_reply_in_the_clients_language(telegram: TelegramStack, kind: str) -> None:
    chat = 600 + len(kind)
    first = text_update(20, chat, "/choose_language uk")
    telegram.post(first)
    telegram.post(media_update(21 + len(kind), chat, kind))
    assert telegram.texts_to(chat)[-1] == telegram.services.content.texts["uk"][f"input.{kind}"]


def test_buttons_become_an_inline_keyboard_and_a_press_continues(telegram: TelegramStack) -> None:
    telegram.post(text_update(30, 700, "Bonjour", language_code="fr"))
    picker = telegram.api.sent()[-1]
    keyboard = picker["reply_markup"]["inline_keyboard"]
    assert len(keyboard) == len(LANGUAGES) and keyboard[2][0]["text"] == "العربية"
    telegram.post(button_update(31, 700, keyboard[2][0]["callback_data"]))
    assert [p["callback_query_id"] for p in telegram.api.sent("answerCallbackQuery")] == ["cb31"]
    assert telegram.texts_to(700)[-1] == telegram.services.content.texts["ar"]["language.set"].format(
        language="العربية"
    )
    actions = telegram.api.sent("sendChatAction")
    assert actions and actions[-1]["action"] == "typing"


def test_the_data_export_arrives_as_a_document(telegram: TelegramStack) -> None:
    telegram.post(text_update(40, 800, "/choose_language de"))
    telegram.post(text_update(41, 800, "/privacy"))
    assert telegram.texts_to(800)[-2] == telegram.services.content.texts["de"]["privacy.info"]


def test_long_replies_are_split_at_paragraphs() -> None:
    paragraph = "Satz. " * 400
    parts = split_text(f"{paragraph}\n\n{paragraph}\n\n{paragraph}")
    assert len(parts) == 3 and all(p.strip() == paragraph.strip() for p in parts)
    assert split_text("kurz") == ["kurz"]
    assert all(len(p) <= 4096 for p in split_text("x" * 10_000))


def test_polling_mode_with_only_a_token(tmp_path: Path, detector: LanguageDetector) -> None:
    stack, api_server = start_stack(tmp_path, detector, polling=True)
    try:
        stack.api.updates.append(text_update(50, 900, "Merhaba", language_code="tr"))
        deadline = time.monotonic() + 15
        while not stack.texts_to(900) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert stack.texts_to(900)[0] == stack.services.content.texts["tr"]["engine.unavailable"]
        assert stack.api.sent("deleteWebhook")
    finally:
        stack.app.stop()
        api_server.stop()


def test_every_command_is_answered_by_the_router_or_maps_to_an_intent() -> None:
    import yaml

    from bot.router import ENGINE_COMMANDS, ROUTER_COMMANDS
    from bot.settings import ROOT

    intents = set(yaml.safe_load((ROOT / "config" / "engine" / "domain.yml").read_text())["intents"])
    for command in COMMANDS:
        slash = f"/{command}"
        assert slash in ROUTER_COMMANDS or ENGINE_COMMANDS.get(slash, "").lstrip("/") in intents, slash
