"""The web chat widget's channel: Rasa's socket.io protocol (session_request/session_confirm,
user_uttered, bot_uttered), so existing Rasa web chat widgets work too, plus the history a reloaded
page asks for. The session id, random and kept in the browser, is the widget's only identity.

After the replies to a client message, ``lotse_ack`` tells the session's tabs that the message was handled:
``{"id", "language", "rtl", "forwarded", "note"?}`` with the conversation's language (the widget's labels
follow it) and whether the message went to the organisation's console, where no bot answer follows.
Other Rasa widgets ignore the event."""

from __future__ import annotations

import logging
import re
from typing import Any

import socketio
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse

from bot import LANGUAGES, RTL_LANGUAGES
from bot.channels.base import InboundMessage, OutboundMessage
from bot.errors import StorageUnavailable
from bot.router import ConversationRouter, RouterReply
from bot.storage.database import Database
from bot.storage.models import ChannelIdentity, Conversation, Message

log = logging.getLogger(__name__)

CHANNEL = "widget"
SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
MESSAGE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""The widget's own id of a client message, echoed in its ``lotse_ack``."""
HISTORY_LIMIT = 200
REDIS_CHANNEL = "lotse-socketio"
"""The Redis pub/sub channel the app replicas share for socket.io emits."""


def without_mark(text: str, mark: str) -> str:
    """The text without its "machine translated" paragraph, which the widget shows under the bubble."""
    paragraphs = text.split("\n\n")
    for index in range(1, len(paragraphs)):
        if mark and paragraphs[index].strip() == mark:
            return "\n\n".join(paragraphs[:index] + paragraphs[index + 1 :]).rstrip()
    return text


def bot_uttered(message: OutboundMessage, mark: str = "") -> dict[str, Any]:
    """Rasa's bot_uttered payload, with Lotse's metadata beside it.

    A machine-translated text carries its mark as a paragraph (Telegram and REST show the text as it is);
    here the mark moves to ``metadata.lotse.mark`` so that the widget shows it exactly once.
    """
    meta = message.as_rasa("")["custom"]
    text = message.text
    if message.machine_translated:
        text = without_mark(text, mark)
        meta["lotse"]["mark"] = mark
    payload: dict[str, Any] = {"text": text}
    if message.buttons:
        payload["quick_replies"] = [
            {"content_type": "text", "title": b.title, "payload": b.payload} for b in message.buttons
        ]
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
        content = router.texts.content
        self.marks = {lang: content.text("translation.machine", lang) or "" for lang in LANGUAGES}
        self.forwarded_notes = {
            lang: content.text("widget.forwarded", lang) or content.reference("widget.forwarded")
            for lang in LANGUAGES
        }
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
        payload = bot_uttered(message, self.marks.get(message.language, ""))
        await self.server.emit("bot_uttered", payload, room=session_id)

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
        reply = await self.router.reply_or_apology(inbound)
        for outbound in reply.messages:
            await self.send(session_id, outbound)
        message_id = custom.get("id")
        await self.server.emit(
            "lotse_ack",
            self.ack(reply, message_id if isinstance(message_id, str) else None),
            room=session_id,
        )

    def ack(self, reply: RouterReply, message_id: str | None) -> dict[str, Any]:
        """The end of one client message's turn: for the typing indicator and the labels' language."""
        ack: dict[str, Any] = {
            "id": message_id if message_id and MESSAGE_ID.match(message_id) else None,
            "language": reply.language,
            "rtl": reply.language in RTL_LANGUAGES,
            "forwarded": reply.forwarded,
        }
        if reply.forwarded:
            ack["note"] = self.forwarded_notes.get(reply.language, "")
        return ack

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
        return JSONResponse({"messages": [self._history_entry(m) for m in messages]})

    def _history_entry(self, message: Message) -> dict[str, Any]:
        text = message.text if message.kind == "text" else ""
        entry: dict[str, Any] = {
            "id": message.id,
            "from": "client" if message.direction == "in" else "bot",
            "text": text,
            "kind": message.kind,
            "language": message.language,
            "machine_translated": message.machine_translated,
        }
        forwarded = (message.payload or {}).get("forwarded") if message.direction == "in" else None
        if forwarded:
            # Passed on to the advisers: the note in the language the acknowledgement had.
            entry["forwarded"] = True
            entry["note"] = self.forwarded_notes.get(str(forwarded), "")
            entry["note_language"] = str(forwarded)
        if message.machine_translated and message.direction == "out":
            mark = self.marks.get(message.language or "", "")
            entry["text"], entry["mark"] = without_mark(text, mark), mark
        return entry
