"""A small Telegram-Bot-API-compatible server on loopback: records every call, serves getUpdates."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

BOT_USER = {
    "id": 4242,
    "is_bot": True,
    "first_name": "Lotse",
    "username": "lotse_test_bot",
    "can_join_groups": False,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}


class FakeBotApi:
    """Answers the Bot API methods python-telegram-bot uses; ``calls`` keeps (method, params)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.updates: list[dict[str, Any]] = []
        self._ids = itertools.count(1000)
        self.app = Starlette(routes=[Route("/bot{token}/{method}", self.handle, methods=["GET", "POST"])])

    async def handle(self, request: Request) -> JSONResponse:
        """One Bot API call."""
        method = request.path_params["method"]
        params: dict[str, Any] = {}
        if request.headers.get("content-type", "").startswith("application/json"):
            params = await request.json()
        else:
            form = await request.form()
            for key, value in form.items():
                if hasattr(value, "read"):
                    params[key] = {"filename": value.filename, "content": (await value.read()).decode()}
                else:
                    try:
                        params[key] = json.loads(value)
                    except ValueError:
                        params[key] = value
        self.calls.append((method, params))
        return JSONResponse({"ok": True, "result": await self._result(method, params)})

    async def _result(self, method: str, params: dict[str, Any]) -> Any:
        if method == "getMe":
            return BOT_USER
        if method in ("sendMessage", "sendDocument"):
            message: dict[str, Any] = {
                "message_id": next(self._ids),
                "date": int(time.time()),
                "chat": {"id": int(params["chat_id"]), "type": "private"},
                "from": BOT_USER,
            }
            if method == "sendMessage":
                message["text"] = params.get("text", "")
            else:
                message["document"] = {"file_id": "doc", "file_unique_id": "doc"}
            return message
        if method == "getUpdates":
            if not self.updates:
                await asyncio.sleep(0.2)
            offset = int(params.get("offset") or 0)
            pending = [u for u in self.updates if u["update_id"] >= offset]
            return pending
        return True

    def sent(self, method: str = "sendMessage") -> list[dict[str, Any]]:
        """The parameters of every call of one method."""
        return [params for name, params in self.calls if name == method]


def text_update(
    update_id: int, chat_id: int, text: str, *, language_code: str | None = None
) -> dict[str, Any]:
    """A private text message update, as Telegram sends it."""
    user: dict[str, Any] = {"id": chat_id, "is_bot": False, "first_name": "Client"}
    if language_code:
        user["language_code"] = language_code
    message: dict[str, Any] = {
        "message_id": update_id,
        "date": int(time.time()),
        "chat": {"id": chat_id, "type": "private", "first_name": "Client"},
        "from": user,
        "text": text,
    }
    if text.startswith("/"):
        message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
    return {"update_id": update_id, "message": message}


def media_update(update_id: int, chat_id: int, kind: str) -> dict[str, Any]:
    """A photo, sticker, voice, document or location message, or an edited text message."""
    base = text_update(update_id, chat_id, "x")
    message = base["message"]
    del message["text"]
    if kind == "photo":
        message["photo"] = [{"file_id": "p", "file_unique_id": "p", "width": 10, "height": 10}]
    elif kind == "sticker":
        message["sticker"] = {
            "file_id": "s",
            "file_unique_id": "s",
            "type": "regular",
            "width": 1,
            "height": 1,
            "is_animated": False,
            "is_video": False,
        }
    elif kind == "voice":
        message["voice"] = {"file_id": "v", "file_unique_id": "v", "duration": 3}
    elif kind == "document":
        message["document"] = {"file_id": "d", "file_unique_id": "d", "file_name": "zeugnis.pdf"}
    elif kind == "location":
        message["location"] = {"latitude": 51.7, "longitude": 8.75}
    elif kind == "edited":
        message["text"] = "geändert"
        message["edit_date"] = int(time.time())
        return {"update_id": update_id, "edited_message": message}
    return base


def button_update(update_id: int, chat_id: int, data: str) -> dict[str, Any]:
    """A pressed inline button."""
    message = text_update(update_id, chat_id, "…")["message"]
    message["from"] = BOT_USER
    return {
        "update_id": update_id,
        "callback_query": {
            "id": f"cb{update_id}",
            "from": {"id": chat_id, "is_bot": False, "first_name": "Client"},
            "chat_instance": "ci",
            "message": message,
            "data": data,
        },
    }
