"""The REST channel with the engine down, and its handling of malformed requests."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import select

from bot.bootstrap import Services
from bot.storage.models import Message

ENDPOINT = "/webhooks/rest/webhook"


def _stored(services: Services) -> list[Message]:
    async def load() -> list[Message]:
        from bot.storage.database import Database

        db = Database(services.settings.database_url)
        async with db.unit_of_work() as session:
            rows = list(await session.scalars(select(Message).order_by(Message.id)))
        await db.dispose()
        return rows

    return asyncio.run(load())


def test_engine_down_gives_a_short_reply_in_the_clients_language(
    offline_app: tuple[Services, httpx.Client],
) -> None:
    services, client = offline_app
    response = client.post(
        ENDPOINT, json={"sender": "s1", "message": "Здравствуйте, я хочу записаться на интеграционный курс"}
    )
    assert response.status_code == 200
    replies = response.json()
    assert replies[0]["text"] == services.content.texts["ru"]["engine.unavailable"]
    assert replies[0]["custom"]["lotse"]["language"] == "ru"
    stored = _stored(services)
    assert stored[0].direction == "in" and stored[0].text.startswith("Здравствуйте")
    assert stored[1].direction == "out" and stored[1].content_key == "engine.unavailable"


def test_health_reports_engine_down_and_database_up(offline_app: tuple[Services, httpx.Client]) -> None:
    _services, client = offline_app
    health = client.get("/health")
    assert health.status_code == 200
    body = health.json()
    assert body["engine"]["state"] == "down" and body["database"]["state"] == "up"
    assert body["status"] == "degraded"


def test_malformed_requests_get_a_4xx_that_says_what_is_wrong(
    offline_app: tuple[Services, httpx.Client],
) -> None:
    services, client = offline_app
    limit = services.settings.max_message_chars
    cases = [
        (b"{not json", 400, "not valid JSON"),
        (b'["a list"]', 400, "JSON object"),
        (b'{"message": "hi"}', 400, "'sender'"),
        (b'{"sender": "", "message": "hi"}', 400, "'sender'"),
        (b'{"sender": 5, "message": "hi"}', 400, "'sender'"),
        (b'{"sender": "a", "message": 12}', 400, "'message' must be a string"),
        (b'{"sender": "a"}', 400, "'message' must be a string"),
        (b'{"sender": "a", "message": "x", "metadata": []}', 400, "'metadata'"),
        (b'{"sender": "a", "message": "\xff\xfe"}', 400, "not valid UTF-8"),
        (('{"sender": "a", "message": "' + "x" * (limit + 1) + '"}').encode(), 413, f"longer than {limit}"),
        (b'{"sender": "a", "message": "' + b"x" * 70_000 + b'"}', 413, "larger than"),
    ]
    for body, status, reason in cases:
        response = client.post(ENDPOINT, content=body, headers={"content-type": "application/json"})
        assert response.status_code == status, (body[:40], response.text)
        assert reason in response.json()["error"], (body[:40], response.json())
    assert _stored(services) == []


def test_odd_but_valid_text_gets_a_normal_reply(offline_app: tuple[Services, httpx.Client]) -> None:
    services, client = offline_app
    for i, text in enumerate(
        ["", "   ", "\u200b\u200b", "😀😀😀", "12345", "Привет hello مرحبا", "<script>alert(1)</script>"]
    ):
        response = client.post(ENDPOINT, json={"sender": f"odd{i}", "message": text})
        assert response.status_code == 200, text
        replies = response.json()
        assert replies and all(isinstance(r["text"], str) and r["text"] for r in replies), text
    empty = client.post(
        ENDPOINT, json={"sender": "odd-empty", "message": "", "metadata": {"language": "tr"}}
    ).json()
    assert empty[0]["text"] == services.content.texts["tr"]["input.empty"]


def test_emergencies_are_answered_first_even_without_the_engine(
    offline_app: tuple[Services, httpx.Client],
) -> None:
    services, client = offline_app
    cases = {
        "de": "Mein Mann schlägt mich, ich habe Angst",
        "en": "I want to kill myself",
        "uk": "чоловік б'є мене щодня",
    }
    for lang, text in cases.items():
        replies = client.post(
            ENDPOINT, json={"sender": f"sos-{lang}", "message": text, "metadata": {"language": lang}}
        ).json()
        assert replies[0]["custom"]["lotse"]["key"] == "emergency"
        assert "110" in replies[0]["text"] and "112" in replies[0]["text"] and "116 016" in replies[0]["text"]
        assert replies[0]["text"] == services.content.texts[lang]["emergency"]


def test_a_language_choice_is_remembered(offline_app: tuple[Services, httpx.Client]) -> None:
    services, client = offline_app
    chosen = client.post(
        ENDPOINT, json={"sender": "picker", "message": '/choose_language{"language":"fa"}'}
    ).json()
    assert chosen[0]["custom"]["lotse"]["language"] == "fa" and chosen[0]["custom"]["lotse"]["rtl"] is True
    later = client.post(ENDPOINT, json={"sender": "picker", "message": "ok"}).json()
    assert later[0]["text"] == services.content.texts["fa"]["engine.unavailable"]


def test_the_adviser_reads_the_bots_replies_in_authored_german(
    offline_app: tuple[Services, httpx.Client],
) -> None:
    """A bot reply stores its German reference, rendered with the same values: no machine translation."""
    services, client = offline_app
    response = client.post(
        ENDPOINT, json={"sender": "s-german", "message": "Добрий день, як записатися на курс?"}
    )
    assert response.status_code == 200
    reply = next(m for m in _stored(services) if m.direction == "out" and m.language == "uk")
    assert reply.content_key == "engine.unavailable"
    german = services.content.texts["de"]["engine.unavailable"]
    assert asyncio.run(services.handoff.german(reply)) == (german, "authored")

    async def rendered() -> tuple[str, str | None]:
        message = await services.texts.message("consent.withdrawn", "uk", params={"scopes": "AWO"})
        return message.text, message.reference

    text, reference = asyncio.run(rendered())
    assert "AWO" in text and text != reference
    assert reference == services.content.texts["de"]["consent.withdrawn"].format(scopes="AWO")
