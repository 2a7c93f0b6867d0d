"""The one way into the Rasa engine: its HTTP API, with httpx errors converted to EngineUnavailable."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

import httpx

from bot.errors import EngineUnavailable


class EngineButton(TypedDict):
    """A button as Rasa's REST channel returns it."""

    title: str
    payload: str


class EngineReply(TypedDict):
    """One element of the list Rasa's REST channel answers with."""

    recipient_id: str
    text: NotRequired[str]
    buttons: NotRequired[list[EngineButton]]
    custom: NotRequired[dict[str, Any]]


class EngineClient:
    """Talks to the engine over HTTP; one shared connection pool."""

    def __init__(self, base_url: str, *, timeout: float = 20.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=2.0),
            # Every connection kept: one closed after its answer is opened again for the next turn,
            # and the engine (the bottleneck) pays for each new one.
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=100),
        )

    async def send(self, sender: str, text: str, metadata: dict[str, Any]) -> list[EngineReply]:
        """Send one client message through the engine's REST channel; return its replies."""
        body = {"sender": sender, "message": text, "metadata": metadata}
        try:
            response = await self._http.post("/webhooks/rest/webhook", json=body)
            response.raise_for_status()
            replies = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise EngineUnavailable(f"engine did not answer: {exc!r}") from exc
        if not isinstance(replies, list):
            raise EngineUnavailable(f"engine answered with {type(replies).__name__}, not a list")
        return replies

    async def parse(self, text: str) -> dict[str, Any]:
        """The engine's NLU result for a text (intent, ranking, entities)."""
        try:
            response = await self._http.post("/model/parse", json={"text": text})
            response.raise_for_status()
            result: dict[str, Any] = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise EngineUnavailable(f"engine did not parse: {exc!r}") from exc
        return result

    async def status(self) -> dict[str, Any] | None:
        """The engine's /status, or None when it is down."""
        try:
            response = await self._http.get("/status", timeout=2.0)
            response.raise_for_status()
            status: dict[str, Any] = response.json()
        except (httpx.HTTPError, ValueError):
            return None
        return status

    async def delete_tracker(self, sender: str) -> None:
        """Replace a conversation's tracker with an empty one (used when a client's data is erased)."""
        try:
            response = await self._http.put(f"/conversations/{sender}/tracker/events", json=[])
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise EngineUnavailable(f"engine could not reset the tracker: {exc!r}") from exc

    async def close(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()
