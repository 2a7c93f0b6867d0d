"""Live events for the adviser console: an in-process fan-out per organisation, carried between app
replicas by Redis pub/sub when ``LOTSE_REDIS_URL`` is set.

Events name tickets and message ids only, never client content: the console fetches content through its
organisation-checked API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

log = logging.getLogger(__name__)

CHANNEL = "lotse:console-events"
QUEUE_SIZE = 256


class EventHub:
    """Publish ticket events to every console subscribed to an organisation, on any replica."""

    def __init__(self, redis_url: str | None = None) -> None:
        self.redis_url = redis_url
        self._subscribers: dict[str, set[asyncio.Queue[dict[str, Any]]]] = {}
        self._redis: Any = None
        self._listener: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect to Redis (if configured) and listen for other replicas' events."""
        if not self.redis_url or self._listener is not None:
            return
        import redis.asyncio as redis

        self._redis = redis.from_url(self.redis_url)
        pubsub = self._redis.pubsub()
        await pubsub.subscribe(CHANNEL)
        self._listener = asyncio.create_task(self._listen(pubsub))

    async def close(self) -> None:
        """Stop listening."""
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def _listen(self, pubsub: Any) -> None:
        while True:
            try:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("console events: Redis connection lost; retrying")
                await asyncio.sleep(1.0)
                continue
            if message is None:
                continue
            try:
                envelope = json.loads(message["data"])
                self._fan_out(str(envelope["organisation"]), dict(envelope["event"]))
            except (ValueError, KeyError, TypeError):
                log.warning("console events: ignored a malformed event")

    async def publish(self, organisation: str, event: dict[str, Any]) -> None:
        """Send an event to the organisation's consoles (on every replica)."""
        if self._redis is not None:
            try:
                await self._redis.publish(CHANNEL, json.dumps({"organisation": organisation, "event": event}))
                return
            except Exception:
                log.exception("console events: Redis publish failed; delivering locally only")
        self._fan_out(organisation, event)

    def _fan_out(self, organisation: str, event: dict[str, Any]) -> None:
        for queue in list(self._subscribers.get(organisation, ())):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                log.warning("console events: a slow console missed an event of %s", organisation)

    @contextlib.asynccontextmanager
    async def subscribe(self, organisation: str) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        """A queue receiving the organisation's events while the context is open."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=QUEUE_SIZE)
        self._subscribers.setdefault(organisation, set()).add(queue)
        try:
            yield queue
        finally:
            self._subscribers[organisation].discard(queue)

    def subscribers(self, organisation: str) -> int:
        """How many consoles listen to an organisation on this replica."""
        return len(self._subscribers.get(organisation, ()))
