"""Adviser accounts: create, reset a password, disable, list (used by the command line)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.console.auth import MIN_PASSWORD_LENGTH, hash_password
from bot.errors import LotseError
from bot.privacy import audit
from bot.storage.models import Adviser, AdviserSession, as_utc, utcnow


class AccountError(LotseError):
    """An adviser account cannot be created or changed; the message says why."""


@dataclass(frozen=True, kw_only=True)
class AdviserInfo:
    """What ``adviser list`` shows (never the hash)."""

    id: int
    organisation: str
    username: str
    display_name: str
    active: bool
    locked: bool


def check_password(password: str) -> None:
    """Raise AccountError for a password that is too short."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")


async def add_adviser(
    session: AsyncSession,
    *,
    organisations: dict[str, str],
    organisation: str,
    username: str,
    display_name: str,
    password: str,
) -> Adviser:
    """Create an adviser of a known organisation (the caller commits)."""
    if organisation not in organisations:
        raise AccountError(
            f"unknown organisation {organisation!r}; known: {', '.join(sorted(organisations))}"
        )
    username = username.strip()
    if not username or len(username) > 64 or any(ch.isspace() for ch in username):
        raise AccountError("the username must be 1-64 characters without spaces")
    if not display_name.strip():
        raise AccountError("the display name must not be empty")
    check_password(password)
    adviser = Adviser(
        organisation=organisation,
        username=username,
        display_name=display_name.strip()[:100],
        password_hash=hash_password(password),
    )
    session.add(adviser)
    try:
        await session.flush()
    except IntegrityError:
        raise AccountError(f"the username {username!r} is taken") from None
    audit(session, actor="cli", action="console.adviser_added", detail=f"adviser:{adviser.id} {organisation}")
    return adviser


async def _by_username(session: AsyncSession, username: str) -> Adviser:
    adviser = await session.scalar(select(Adviser).where(Adviser.username == username.strip()))
    if adviser is None:
        raise AccountError(f"no adviser with the username {username!r}")
    return adviser


async def _end_sessions(session: AsyncSession, adviser_id: int) -> None:
    await session.execute(
        update(AdviserSession)
        .where(AdviserSession.adviser_id == adviser_id, AdviserSession.ended_at.is_(None))
        .values(ended_at=utcnow())
    )


async def reset_password(session: AsyncSession, *, username: str, password: str) -> Adviser:
    """Set a new password, lift a lock, end every open session (the caller commits)."""
    check_password(password)
    adviser = await _by_username(session, username)
    adviser.password_hash = hash_password(password)
    adviser.failed_logins = 0
    adviser.locked_until = None
    await _end_sessions(session, adviser.id)
    audit(session, actor="cli", action="console.password_reset", detail=f"adviser:{adviser.id}")
    return adviser


async def disable_adviser(session: AsyncSession, *, username: str) -> Adviser:
    """Disable an account and end its sessions (the caller commits)."""
    adviser = await _by_username(session, username)
    adviser.active = False
    await _end_sessions(session, adviser.id)
    audit(session, actor="cli", action="console.adviser_disabled", detail=f"adviser:{adviser.id}")
    return adviser


async def list_advisers(session: AsyncSession, *, organisation: str | None = None) -> list[AdviserInfo]:
    """Every adviser, by organisation and username."""
    query = select(Adviser).order_by(Adviser.organisation, Adviser.username)
    if organisation:
        query = query.where(Adviser.organisation == organisation)
    now = utcnow()
    result = []
    for adviser in await session.scalars(query):
        locked = adviser.locked_until is not None and as_utc(adviser.locked_until) > now
        result.append(
            AdviserInfo(
                id=adviser.id,
                organisation=adviser.organisation,
                username=adviser.username,
                display_name=adviser.display_name,
                active=adviser.active,
                locked=locked,
            )
        )
    return result
