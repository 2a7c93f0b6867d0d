"""The widget channel: Rasa's socket.io protocol with the reference client, assets, limits."""

from __future__ import annotations

import asyncio
import gzip

import httpx
import socketio

from bot.bootstrap import Services
from bot.settings import ROOT

STATIC = ROOT / "bot" / "static"


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
