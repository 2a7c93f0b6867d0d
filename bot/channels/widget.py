"""The web chat widget's channel: Rasa's socket.io protocol (session_request/session_confirm,
user_uttered, bot_uttered), so existing Rasa web chat widgets work too, plus the history a reloaded
page asks for. The session id, random and kept in the browser, is the widget's only identity."""

from __future__ import annotations

import logging
import re
from typing import Any

import socketio
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse

from bot.channels.base import InboundMessage, OutboundMessage
from bot.errors import StorageUnavailable
from bot.router import ConversationRouter
from bot.storage.database import Database
from bot.storage.models import ChannelIdentity, Conversation, Message

log = logging.getLogger(__name__)

CHANNEL = "widget"
SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
HISTORY_LIMIT = 200
REDIS_CHANNEL = "lotse-socketio"
"""The Redis pub/sub channel the app replicas share for socket.io emits."""


def bot_uttered(message: OutboundMessage) -> dict[str, Any]:
    """Rasa's bot_uttered payload, with Lotse's metadata beside it."""
    payload: dict[str, Any] = {"text": message.text}
    if message.buttons:
        payload["quick_replies"] = [
            {"content_type": "text", "title": b.title, "payload": b.payload} for b in message.buttons
        ]
    meta = message.as_rasa("")["custom"]
    payload["metadata"] = meta
    return payload


class WidgetChannel:
    """Socket.io events in, bot_uttered out to every tab of the same session (a room)."""

    def __init__(
        self,
        router: ConversationRouter,
        database: Database,
        *,
        allowed_origins: list[str],
        redis_url: str | None = None,
    ) -> None:
        self.router = router
        self.database = database
        self.redis_url = redis_url
        # With several app replicas, an emit to a session's room travels through Redis to the
        # replica that holds the socket; without Redis, rooms live in this process only.
        manager = socketio.AsyncRedisManager(redis_url, channel=REDIS_CHANNEL) if redis_url else None
        self.server = socketio.AsyncServer(
            async_mode="asgi",
            client_manager=manager,
            cors_allowed_origins=allowed_origins,
            max_http_buffer_size=64 * 1024,
            ping_interval=20,
            ping_timeout=20,
        )
        self.server.on("session_request", self.session_request)
        self.server.on("user_uttered", self.user_uttered)

    async def start(self) -> None:
        """Listen on Redis from start-up, not only after this replica's first socket connects."""
        if self.redis_url and not self.server.manager_initialized:
            self.server.manager_initialized = True
            self.server.manager.initialize()

    async def send(self, session_id: str, message: OutboundMessage) -> None:
        """Deliver one reply to every tab of a widget session, on whichever replica its sockets are."""
        await self.server.emit("bot_uttered", bot_uttered(message), room=session_id)

    async def session_request(self, sid: str, data: Any) -> None:
        """Confirm (or create) the session and join its room."""
        requested = data.get("session_id") if isinstance(data, dict) else None
        if not isinstance(requested, str) or not SESSION_ID.match(requested):
            import uuid

            requested = uuid.uuid4().hex
        await self.server.enter_room(sid, requested)
        await self.server.save_session(sid, {"session_id": requested})
        await self.server.emit("session_confirm", requested, to=sid)

    async def user_uttered(self, sid: str, data: Any) -> None:
        """Route one message; the replies go to the session's room."""
        session = await self.server.get_session(sid)
        session_id = session.get("session_id")
        if not isinstance(data, dict) or not session_id:
            return
        if data.get("session_id") not in (None, session_id):
            return
        message = data.get("message")
        raw_custom = data.get("customData")
        custom: dict[str, Any] = raw_custom if isinstance(raw_custom, dict) else {}
        hint = custom.get("language") if isinstance(custom.get("language"), str) else None
        inbound = InboundMessage(
            channel=CHANNEL,
            external_id=session_id,
            text=message if isinstance(message, str) else "",
            kind="text" if isinstance(message, str) else "binary",
            language_hint=hint,
        )
        for outbound in await self.router.replies_or_apology(inbound):
            await self.send(session_id, outbound)

    async def history(self, request: Request) -> JSONResponse:
        """GET /widget/history/{session_id}: the conversation of this browser session, in order."""
        session_id = request.path_params["session_id"]
        if not SESSION_ID.match(session_id):
            return JSONResponse({"error": "invalid session id"}, status_code=400)
        try:
            async with self.database.unit_of_work() as db:
                identity = await db.scalar(
                    select(ChannelIdentity).where(
                        ChannelIdentity.channel == CHANNEL, ChannelIdentity.external_id == session_id
                    )
                )
                if identity is None:
                    return JSONResponse({"messages": []})
                rows = await db.scalars(
                    select(Message)
                    .join(Conversation, Conversation.id == Message.conversation_id)
                    .where(Conversation.client_id == identity.client_id, Conversation.channel == CHANNEL)
                    .order_by(Message.id.desc())
                    .limit(HISTORY_LIMIT)
                )
                messages = list(rows)[::-1]
        except StorageUnavailable:
            return JSONResponse({"error": "storage unavailable"}, status_code=503)
        return JSONResponse(
            {
                "messages": [
                    {
                        "id": m.id,
                        "from": "client" if m.direction == "in" else "bot",
                        "text": m.text if m.kind == "text" else "",
                        "kind": m.kind,
                        "language": m.language,
                        "machine_translated": m.machine_translated,
                    }
                    for m in messages
                ]
            }
        )
