"""Clients with consents on record, for tests that need them without the chat dialogue."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from bot.bootstrap import Services
from bot.consent import ConsentPrompt, ConsentRequest, text_hash
from bot.conversations import find_or_create


async def grant(
    services: Services,
    session: AsyncSession,
    *,
    client_id: str,
    scopes: tuple[tuple[str, str], ...],
    language: str = "uk",
) -> None:
    """Record a granted consent per (scope, organisation) with the current text version (caller commits)."""
    for scope, organisation in scopes:
        version = services.content.consent.current(scope)
        shown = f"{version.key} test text"
        prompt = ConsentPrompt(
            request=ConsentRequest(scope=scope, organisation=organisation),
            text=shown,
            language=language,
            version=version.version,
            text_id=version.text_id,
            text_hash=text_hash(shown),
        )
        await services.consent.record(
            session, client_id=client_id, prompt=prompt, granted=True, channel="rest"
        )


async def new_client(
    services: Services,
    *,
    scopes: tuple[tuple[str, str], ...] = (),
    language: str = "uk",
    external_id: str | None = None,
) -> tuple[str, str]:
    """A REST client with the given consents granted; returns (client id, conversation id)."""
    async with services.database.unit_of_work() as session:
        client, conversation, _ = await find_or_create(
            session, channel="rest", external_id=external_id or uuid.uuid4().hex
        )
        client.language = language
        await grant(services, session, client_id=client.id, scopes=scopes, language=language)
        await session.commit()
        return client.id, conversation.id
