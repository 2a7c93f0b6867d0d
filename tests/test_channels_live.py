"""Channels against the real engine: the same answer everywhere; nothing lost when the engine restarts."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
import socketio

from bot.language import LanguageDetector
from tests.auxil.botapi import text_update
from tests.conftest import LiveStack
from tests.test_telegram import start_stack

pytestmark = pytest.mark.engine

QUESTION = "Сколько стоит интеграционный курс?"


def _widget_answer(url: str, question: str) -> dict[str, object]:
    async def converse() -> dict[str, object]:
        sio = socketio.AsyncClient()
        replies: asyncio.Queue[dict[str, object]] = asyncio.Queue()
        confirmed = asyncio.Event()
        sio.on("session_confirm", lambda _sid: confirmed.set())

        async def on_bot(data: dict[str, object]) -> None:
            await replies.put(data)

        sio.on("bot_uttered", on_bot)
        await sio.connect(url, transports=["websocket"], headers={"Origin": url})
        session = uuid.uuid4().hex
        await sio.emit("session_request", {"session_id": session})
        await asyncio.wait_for(confirmed.wait(), 10)
        await sio.emit("user_uttered", {"message": question, "session_id": session})
        first = await asyncio.wait_for(replies.get(), 30)
        await sio.disconnect()
        return first

    return asyncio.run(converse())


def test_telegram_and_widget_give_the_same_answer_in_the_same_language(
    live: LiveStack, tmp_path: Path, detector: LanguageDetector
) -> None:
    stack, api_server = start_stack(tmp_path, detector, LOTSE_ENGINE_URL=live.engine.url)
    try:
        stack.post(text_update(1, 4711, QUESTION, language_code="uk"))
        telegram_text = stack.texts_to(4711)[0]
    finally:
        stack.app.stop()
        api_server.stop()
    widget = _widget_answer(live.url, QUESTION)
    assert widget["metadata"]["lotse"]["language"] == "ru"  # type: ignore[index]
    assert widget["metadata"]["lotse"]["key"] == "answer.language_course.cost"  # type: ignore[index]
    assert widget["text"] == telegram_text


def test_an_engine_restart_mid_conversation_loses_nothing(live: LiveStack) -> None:
    sender = uuid.uuid4().hex
    first = live.rest("Ich möchte einen Integrationskurs machen", sender=sender)
    assert first[0]["custom"]["lotse"]["key"] == "answer.language_course.overview"  # type: ignore[index]
    live.engine.kill()
    try:
        down = live.rest("und was kostet das?", sender=sender)
        assert down[0]["custom"]["lotse"]["key"] == "engine.unavailable"  # type: ignore[index]
    finally:
        live.engine.start()
    again = live.rest("und was kostet das?", sender=sender)
    assert again[0]["custom"]["lotse"]["key"] == "answer.language_course.cost", (
        "the topic survived the restart"
    )  # type: ignore[index]
    history = live.rest("/ask_help", sender=sender)
    assert history, "the conversation goes on"
