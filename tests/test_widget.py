"""The widget channel: Rasa's socket.io protocol with the reference client, assets, limits."""

from __future__ import annotations

import asyncio
import gzip
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import socketio
from sqlalchemy import select, update

from bot.app import create_app
from bot.bootstrap import Services, bootstrap
from bot.language import LanguageDetector
from bot.settings import ROOT
from bot.storage.models import Adviser, ChannelIdentity
from tests.auxil.botapi import FakeBotApi
from tests.auxil.console import LoopServer, Opened, adviser, open_ticket
from tests.auxil.servers import free_port
from tests.conftest import make_settings

STATIC = ROOT / "bot" / "static"
ORGANISATION = "caritas-pb"


def test_widget_script_and_styles_stay_under_60_kb_compressed() -> None:
    size = sum(len(gzip.compress((STATIC / name).read_bytes(), 9)) for name in ("widget.js", "widget.css"))
    assert size < 60 * 1024, size


def test_assets_labels_and_demo_page_are_served(offline_app: tuple[Services, httpx.Client]) -> None:
    services, client = offline_app
    assert client.get("/widget.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/widget.css").headers["content-type"].startswith("text/css")
    demo = client.get("/")
    assert demo.status_code == 200 and 'src="/widget.js"' in demo.text
    assert "frame-ancestors 'self'" in demo.headers["content-security-policy"]
    labels = client.get("/widget/texts").json()
    assert set(labels) == {"de", "en", "ar", "uk", "ru", "tr", "fa", "fr"}
    assert labels["uk"]["send"] == services.content.texts["uk"]["widget.send"]


def test_rasa_socketio_protocol_with_the_reference_client(offline_app: tuple[Services, httpx.Client]) -> None:
    services, client = offline_app
    base = str(client.base_url).rstrip("/")

    async def converse() -> tuple[str, list[dict[str, object]]]:
        sio = socketio.AsyncClient()
        confirmed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        uttered: list[dict[str, object]] = []
        arrived = asyncio.Event()
        sio.on("session_confirm", lambda sid: confirmed.set_result(sid))

        async def on_bot(data: dict[str, object]) -> None:
            uttered.append(data)
            arrived.set()

        sio.on("bot_uttered", on_bot)
        await sio.connect(base, transports=["websocket"], headers={"Origin": base})
        await sio.emit("session_request", {"session_id": "widgettestsession01"})
        session = await asyncio.wait_for(confirmed, 10)
        await sio.emit(
            "user_uttered", {"message": "Merhaba, Almanca kursu için ne yapmalıyım?", "session_id": session}
        )
        await asyncio.wait_for(arrived.wait(), 20)
        await sio.disconnect()
        return session, uttered

    session, uttered = asyncio.run(converse())
    assert session == "widgettestsession01"
    assert uttered[0]["text"] == services.content.texts["tr"]["engine.unavailable"]
    history = client.get(f"/widget/history/{session}").json()["messages"]
    assert [m["from"] for m in history] == ["client", "bot"]
    assert client.get("/widget/history/short").status_code == 400


def test_a_foreign_origin_cannot_open_the_socket(offline_app: tuple[Services, httpx.Client]) -> None:
    _services, client = offline_app
    response = client.get("/socket.io/?EIO=4&transport=polling", headers={"Origin": "https://evil.example"})
    assert response.status_code == 400


# ---- adviser replies, the machine-translation mark and the acknowledgement ------------------------------


class MarkingTranslator:
    """The translation provider (outside world): a recognisable "translation"."""

    name = "fake"

    def translate(self, text: str, source: str, target: str) -> str:
        """The text with its direction in front."""
        return f"[{source}->{target}] {text}"


@asynccontextmanager
async def _app(tmp: Path, detector: LanguageDetector, **env: str) -> AsyncIterator[tuple[Services, str]]:
    """The whole app (no engine behind it) served in the test's own event loop."""
    port = free_port()
    settings = make_settings(tmp, LOTSE_PUBLIC_URL=f"http://127.0.0.1:{port}", **env)
    services = bootstrap(settings, detector=detector, translator=MarkingTranslator())
    async with LoopServer(create_app(services), lifespan="on", port=port) as server:
        yield services, server.url


@dataclass(frozen=True)
class Claimed:
    """A Ukrainian client's ticket that an adviser claimed, and how the channel knows the client."""

    opened: Opened
    adviser: Adviser
    external_id: str


async def claimed_ticket(services: Services, channel: str, external_id: str | None = None) -> Claimed:
    """A ticket opened through the real HandoffService and claimed (the client renamed to ``external_id``)."""
    opened = await open_ticket(services, organisation=ORGANISATION, language="uk", channel=channel)
    identity = ChannelIdentity.client_id == opened.turn.client_id
    async with services.database.unit_of_work() as session:
        if external_id is not None:
            await session.execute(update(ChannelIdentity).where(identity).values(external_id=external_id))
            await session.commit()
        known = await session.scalar(select(ChannelIdentity.external_id).where(identity))
    assert known is not None
    olga = await adviser(services, ORGANISATION, f"olga-{uuid.uuid4().hex[:6]}")
    assert await services.handoff.claim(opened.ticket_id, olga)
    return Claimed(opened=opened, adviser=olga, external_id=known)


class WidgetClient:
    """Rasa's reference socket.io client in one widget session; records every event."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sio = socketio.AsyncClient()
        self.events: list[tuple[str, Any]] = []
        self.arrived = asyncio.Event()
        for name in ("session_confirm", "bot_uttered", "lotse_ack"):
            self.sio.on(name, self._recorder(name))

    def _recorder(self, name: str) -> Any:
        async def record(data: Any) -> None:
            self.events.append((name, data))
            self.arrived.set()

        return record

    async def open(self, session_id: str) -> None:
        await self.sio.connect(self.url, transports=["websocket"], headers={"Origin": self.url})
        await self.sio.emit("session_request", {"session_id": session_id})
        await self.wait_for("session_confirm")

    async def wait_for(self, name: str, count: int = 1) -> list[Any]:
        """The data of the first ``count`` events called ``name`` (bounded wait)."""
        async with asyncio.timeout(20):
            while len(found := [d for n, d in self.events if n == name]) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return found

    def of(self, name: str) -> list[Any]:
        return [d for n, d in self.events if n == name]


async def test_an_advisers_machine_translated_reply_is_marked_once_in_widget_history_and_telegram(
    tmp_path: Path, detector: LanguageDetector
) -> None:
    api = FakeBotApi()
    async with (
        LoopServer(api.app) as api_server,
        _app(
            tmp_path,
            detector,
            TELEGRAM_TOKEN="123456:TEST",
            TELEGRAM_WEBHOOK_SECRET="widget-test-secret-5c1e",
            LOTSE_TELEGRAM_API_URL=api_server.url,
        ) as (services, url),
    ):
        mark = services.content.texts["uk"]["translation.machine"]
        reply = "Guten Tag, welchen Abschluss haben Sie?"

        claimed = await claimed_ticket(services, "widget")
        session_id = claimed.external_id
        widget = WidgetClient(url)
        await widget.open(session_id)
        await services.handoff.send(claimed.opened.ticket_id, claimed.adviser, reply)
        [uttered] = await widget.wait_for("bot_uttered")
        await widget.sio.disconnect()
        assert uttered["text"] == f"[de->uk] {reply}"
        assert uttered["metadata"]["lotse"]["machine_translated"] is True
        assert uttered["metadata"]["lotse"]["mark"] == mark
        async with httpx.AsyncClient(base_url=url) as http:
            history = (await http.get(f"/widget/history/{session_id}")).json()["messages"]
        assert history[-1]["text"] == f"[de->uk] {reply}" and history[-1]["mark"] == mark
        assert [m["text"].count(mark) for m in history] == [0] * len(history)

        telegram = await claimed_ticket(services, "telegram", external_id="7001")
        await services.handoff.send(telegram.opened.ticket_id, telegram.adviser, reply)
        texts = [str(p["text"]) for p in api.sent() if int(p["chat_id"]) == 7001]
        assert texts[-1].startswith(f"[de->uk] {reply}")
        assert texts[-1].count(mark) == 1, texts[-1]


async def test_a_message_for_the_adviser_is_acknowledged_and_labels_follow_the_language(
    tmp_path: Path, detector: LanguageDetector
) -> None:
    async with _app(tmp_path, detector) as (services, url):
        uk = services.content.texts["uk"]
        widget = WidgetClient(url)
        await widget.open((await claimed_ticket(services, "widget")).external_id)
        await widget.sio.emit(
            "user_uttered",
            {
                "message": "Диплом інженера-будівельника з Харкова",
                "customData": {"language": "de", "id": "p1-1"},
            },
        )
        [ack] = await widget.wait_for("lotse_ack")
        assert ack == {
            "id": "p1-1",
            "language": "uk",
            "rtl": False,
            "forwarded": True,
            "note": uk["widget.forwarded"],
        }
        assert widget.of("bot_uttered") == []  # replies come before the ack: the adviser answers, not the bot
        await widget.sio.disconnect()

        arabic = WidgetClient(url)
        await arabic.open("widgettestsession-ar01")
        await arabic.sio.emit(
            "user_uttered", {"message": "كيف أسجل في دورة الاندماج؟", "customData": {"id": "<b>"}}
        )
        [ack] = await arabic.wait_for("lotse_ack")
        await arabic.sio.disconnect()
        assert ack == {"id": None, "language": "ar", "rtl": True, "forwarded": False}
        [answer] = arabic.of("bot_uttered")
        assert answer["text"] == services.content.texts["ar"]["engine.unavailable"]
