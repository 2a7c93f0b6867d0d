"""Rasa's REST channel shape at POST /webhooks/rest/webhook, through the whole app."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from bot.channels.base import InboundMessage
from bot.errors import InputRejected, StorageUnavailable
from bot.router import ConversationRouter

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
MAX_SENDER_CHARS = 128
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def parse_body(raw: bytes, *, max_chars: int) -> tuple[str, str, dict[str, Any]]:
    """Validate a REST request body; raise InputRejected saying what is wrong."""
    if len(raw) > MAX_BODY_BYTES:
        raise InputRejected(f"request body is larger than {MAX_BODY_BYTES} bytes", status=413)
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputRejected(f"request body is not valid UTF-8 (byte {exc.start})") from None
    try:
        body = json.loads(decoded)
    except ValueError as exc:
        raise InputRejected(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InputRejected("request body must be a JSON object with 'sender' and 'message'")
    sender, message = body.get("sender"), body.get("message")
    metadata = body.get("metadata", {})
    if metadata is None:
        metadata = {}
    if not isinstance(sender, str) or not sender.strip():
        raise InputRejected("'sender' must be a non-empty string")
    if len(sender) > MAX_SENDER_CHARS:
        raise InputRejected(f"'sender' is longer than {MAX_SENDER_CHARS} characters")
    if not isinstance(message, str):
        raise InputRejected("'message' must be a string")
    if len(message) > max_chars:
        raise InputRejected(f"'message' is longer than {max_chars} characters", status=413)
    if not isinstance(metadata, dict):
        raise InputRejected("'metadata' must be a JSON object")
    if "\x00" in message or "\x00" in sender:
        raise InputRejected("text must not contain NUL characters")
    if _LONE_SURROGATE.search(message) or _LONE_SURROGATE.search(sender):
        # JSON escapes can carry half of a UTF-16 pair; it cannot be stored or sent on as UTF-8
        raise InputRejected("text must not contain lone surrogates (\\ud800-\\udfff escapes)")
    return sender, message, metadata


class RestChannel:
    """The REST endpoint: one request, the replies in the response."""

    def __init__(self, router: ConversationRouter, *, max_chars: int) -> None:
        self.router = router
        self.max_chars = max_chars

    async def handle(self, request: Request) -> JSONResponse:
        """Answer one message with Rasa's list of replies."""
        hint: str | None = None
        try:
            sender, message, metadata = parse_body(await request.body(), max_chars=self.max_chars)
            hint = metadata.get("language") if isinstance(metadata.get("language"), str) else None
            reply = await self.router.handle(
                InboundMessage(
                    channel="rest",
                    external_id=sender,
                    text=message,
                    language_hint=hint,
                    metadata=metadata,
                )
            )
        except InputRejected as exc:
            return JSONResponse({"error": exc.reason}, status_code=exc.status)
        except StorageUnavailable:
            log.exception("storage unavailable while answering a REST message")
            apology = await self.router.apology(hint, storage=True)
            return JSONResponse([apology.as_rasa("")], status_code=503, headers={"Retry-After": "10"})
        except Exception:
            log.exception("unexpected error while answering a REST message")
            apology = await self.router.apology(hint)
            return JSONResponse([apology.as_rasa("")], status_code=503, headers={"Retry-After": "10"})
        return JSONResponse([m.as_rasa(sender) for m in reply.messages])
