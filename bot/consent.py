"""The one consent gate: records consents (append-only, with the exact text shown) and answers
"may this organisation receive this client's data for this purpose now?"."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.content import CONSENT_SCOPES, Content
from bot.storage.models import Client, ConsentEvent, ConsentText

GRANTED, DECLINED, WITHDRAWN = "granted", "declined", "withdrawn"


@dataclass(frozen=True, kw_only=True)
class ConsentRequest:
    """What a client is being asked to consent to."""

    scope: str
    organisation: str = ""
    target: str = ""

    def __post_init__(self) -> None:
        if self.scope not in CONSENT_SCOPES:
            raise ValueError(f"unknown consent scope {self.scope!r}")


@dataclass(frozen=True, kw_only=True)
class ConsentPrompt:
    """A rendered consent question and the version facts to record with the answer."""

    request: ConsentRequest
    text: str
    language: str
    version: int
    text_id: str
    text_hash: str


def text_hash(text: str) -> str:
    """The hash recorded with a consent (SHA-256 of the exact text shown)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ConsentService:
    """Consent records and the decision whether sharing is allowed."""

    def __init__(self, content: Content, *, privacy_url: str) -> None:
        self.content = content
        self.privacy_url = privacy_url

    def params(self, request: ConsentRequest) -> dict[str, str]:
        """The placeholders of a consent text."""
        names = self.content.organisations
        return {
            "organisation": names.get(request.organisation, request.organisation),
            "target": names.get(request.target, request.target),
            "days": str(self.content.consent.retention_days),
            "privacy_url": self.privacy_url,
        }

    async def may(self, session: AsyncSession, *, client_id: str, request: ConsentRequest) -> bool:
        """True only if the newest record for exactly this scope and organisation is a valid grant."""
        client = await session.get(Client, client_id)
        if client is None or client.under_16:
            return False
        latest = await session.scalar(
            select(ConsentEvent)
            .where(
                ConsentEvent.client_id == client_id,
                ConsentEvent.scope == request.scope,
                ConsentEvent.organisation == request.organisation,
                ConsentEvent.target_organisation == request.target,
            )
            .order_by(ConsentEvent.id.desc())
            .limit(1)
        )
        return (
            latest is not None
            and latest.action == GRANTED
            and latest.version >= self.content.consent.required(request.scope)
        )

    async def record(
        self,
        session: AsyncSession,
        *,
        client_id: str,
        prompt: ConsentPrompt,
        granted: bool,
        channel: str,
    ) -> ConsentEvent:
        """Add a grant or a refusal, keeping the exact text that was shown."""
        if await session.get(ConsentText, prompt.text_hash) is None:
            session.add(
                ConsentText(
                    text_hash=prompt.text_hash,
                    text_id=prompt.text_id,
                    language=prompt.language,
                    text=prompt.text,
                )
            )
        event = ConsentEvent(
            client_id=client_id,
            scope=prompt.request.scope,
            organisation=prompt.request.organisation,
            target_organisation=prompt.request.target,
            action=GRANTED if granted else DECLINED,
            version=prompt.version,
            text_id=prompt.text_id,
            text_hash=prompt.text_hash,
            language=prompt.language,
            channel=channel,
        )
        session.add(event)
        return event

    async def active(self, session: AsyncSession, client_id: str) -> list[ConsentEvent]:
        """The grants that are currently valid, one per scope and organisation."""
        events = await session.scalars(
            select(ConsentEvent).where(ConsentEvent.client_id == client_id).order_by(ConsentEvent.id)
        )
        latest: dict[tuple[str, str, str], ConsentEvent] = {}
        for event in events:
            latest[(event.scope, event.organisation, event.target_organisation)] = event
        return [
            e
            for e in latest.values()
            if e.action == GRANTED and e.version >= self.content.consent.required(e.scope)
        ]

    async def withdraw_all(
        self, session: AsyncSession, *, client_id: str, language: str, channel: str
    ) -> list[ConsentEvent]:
        """Withdraw every active consent by adding a withdrawal record for each."""
        withdrawn = []
        for grant in await self.active(session, client_id):
            event = ConsentEvent(
                client_id=client_id,
                scope=grant.scope,
                organisation=grant.organisation,
                target_organisation=grant.target_organisation,
                action=WITHDRAWN,
                version=grant.version,
                text_id=grant.text_id,
                text_hash=grant.text_hash,
                language=language,
                channel=channel,
            )
            session.add(event)
            withdrawn.append(event)
        return withdrawn
