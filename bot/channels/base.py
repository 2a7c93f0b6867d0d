"""The channel port: one inbound message shape, one outbound shape, a collecting fake for tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

MessageKind = str
"""``text`` or a kind of media the client sent: photo, sticker, voice, document, location, edited, binary."""


@dataclass(frozen=True, kw_only=True)
class InboundMessage:
    """A client's message, the same for every channel."""

    channel: str
    external_id: str
    text: str
    kind: MessageKind = "text"
    language_hint: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Button:
    """A button: what the client sees and what is sent back when pressed."""

    title: str
    payload: str


@dataclass(frozen=True, kw_only=True)
class Attachment:
    """A file sent with a reply (the client's data export, an appointment's .ics)."""

    filename: str
    mime_type: str
    content: str


@dataclass(frozen=True, kw_only=True)
class OutboundMessage:
    """One reply, already in the client's language."""

    text: str
    language: str
    buttons: tuple[Button, ...] = ()
    machine_translated: bool = False
    content_key: str | None = None
    custom: dict[str, Any] | None = None
    attachment: Attachment | None = None
    reference: str | None = None
    """The same text in German, rendered from the authored reference with the same values, so an
    adviser reads exactly what the client was told without a machine translation (stored with it)."""

    @property
    def rtl(self) -> bool:
        """Whether the text is laid out right to left."""
        from bot import RTL_LANGUAGES

        return self.language in RTL_LANGUAGES

    def as_rasa(self, recipient_id: str) -> dict[str, Any]:
        """Rasa's REST response element for this reply."""
        item: dict[str, Any] = {"recipient_id": recipient_id, "text": self.text}
        if self.buttons:
            item["buttons"] = [{"title": b.title, "payload": b.payload} for b in self.buttons]
        meta: dict[str, Any] = {"language": self.language, "rtl": self.rtl}
        if self.machine_translated:
            meta["machine_translated"] = True
        if self.content_key:
            meta["key"] = self.content_key
        item["custom"] = {**(self.custom or {}), "lotse": meta}
        if self.attachment:
            item["custom"]["attachment"] = {
                "filename": self.attachment.filename,
                "mime_type": self.attachment.mime_type,
                "content": self.attachment.content,
            }
        return item


class OutputChannel(Protocol):
    """Sends replies to one client on one channel."""

    async def send(self, external_id: str, message: OutboundMessage) -> None:
        """Deliver one reply."""


class CollectingOutputChannel:
    """Keeps what was sent, for the REST channel's response and for tests."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, OutboundMessage]] = []

    async def send(self, external_id: str, message: OutboundMessage) -> None:
        """Remember the reply."""
        self.sent.append((external_id, message))
