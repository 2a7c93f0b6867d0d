"""Console sign-in: argon2 passwords, lockout, server-side sessions (only a token hash stored), CSRF.

The cookie carries a random token; the database keeps its SHA-256, so a leaked table opens no session.
Each session has its own CSRF token, required on every state-changing request.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.privacy import audit
from bot.storage.database import Database
from bot.storage.models import Adviser, AdviserSession, as_utc, utcnow

__all__ = [
    "AdviserAuth",
    "Clock",
    "ConsoleSession",
    "SessionPolicy",
    "actor",
    "hash_password",
    "token_hash",
    "verify_password",
]

Clock = Callable[[], datetime]
"""Returns now (timezone-aware); tests inject their own."""

MIN_PASSWORD_LENGTH = 12
_HASHER = PasswordHasher()


def hash_password(password: str) -> str:
    """An argon2id hash of a password (with its own salt and parameters)."""
    return _HASHER.hash(password)


def verify_password(stored: str, password: str) -> bool:
    """True when the password matches the stored argon2 hash."""
    try:
        return _HASHER.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    # Unknown users are checked against this, so they cost the same time as a real wrong password.
    return hash_password(secrets.token_urlsafe(16))


def token_hash(token: str) -> str:
    """What the database stores of a session token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def actor(adviser: Adviser) -> str:
    """The audit actor of an adviser."""
    return f"adviser:{adviser.id}"


@dataclass(frozen=True, kw_only=True)
class SessionPolicy:
    """Timeouts and lockout."""

    idle: timedelta = timedelta(minutes=30)
    absolute: timedelta = timedelta(hours=10)
    max_failures: int = 5
    lock_for: timedelta = timedelta(minutes=15)


@dataclass(frozen=True, kw_only=True)
class ConsoleSession:
    """A signed-in adviser (detached from the database session) and the session's CSRF token."""

    adviser: Adviser
    token_hash: str
    csrf_token: str
    created_at: datetime

    @property
    def organisation(self) -> str:
        """The only organisation this session may see."""
        return self.adviser.organisation

    def csrf_ok(self, given: str | None) -> bool:
        """Constant-time comparison of a submitted CSRF token."""
        return bool(given) and hmac.compare_digest(str(given).encode(), self.csrf_token.encode())


class AdviserAuth:
    """Checks passwords, locks accounts after repeated failures, keeps sessions on the server."""

    def __init__(self, database: Database, *, policy: SessionPolicy | None = None, clock: Clock = utcnow):
        self.database = database
        self.policy = policy or SessionPolicy()
        self.clock = clock

    async def login(self, username: str, password: str) -> tuple[str, ConsoleSession] | None:
        """A new session (cookie token, session) or None; the caller shows one generic message for all."""
        now = self.clock()
        async with self.database.unit_of_work() as session:
            adviser = await session.scalar(select(Adviser).where(Adviser.username == username.strip()))
            stored = adviser.password_hash if adviser is not None and adviser.active else _dummy_hash()
            correct = await asyncio.to_thread(verify_password, stored, password)
            if adviser is None or not adviser.active:
                audit(session, actor="console", action="console.login_failed", detail="unknown or disabled")
                await session.commit()
                return None
            if adviser.locked_until is not None and as_utc(adviser.locked_until) > now:
                audit(session, actor=actor(adviser), action="console.login_refused", detail="locked")
                await session.commit()
                return None
            if not correct:
                await self._failed(session, adviser, now)
                await session.commit()
                return None
            adviser.failed_logins = 0
            adviser.locked_until = None
            token = secrets.token_urlsafe(32)
            row = AdviserSession(
                token_hash=token_hash(token),
                adviser_id=adviser.id,
                csrf_token=secrets.token_urlsafe(32),
                created_at=now,
                last_seen_at=now,
            )
            session.add(row)
            audit(session, actor=actor(adviser), action="console.login")
            await session.commit()
            return token, ConsoleSession(
                adviser=adviser, token_hash=row.token_hash, csrf_token=row.csrf_token, created_at=now
            )

    async def _failed(self, session: AsyncSession, adviser: Adviser, now: datetime) -> None:
        # An atomic increment: parallel guesses cannot slip past the limit by reading the same count.
        failures = await session.scalar(
            update(Adviser)
            .where(Adviser.id == adviser.id)
            .values(failed_logins=Adviser.failed_logins + 1)
            .returning(Adviser.failed_logins)
        )
        audit(session, actor=actor(adviser), action="console.login_failed", detail="wrong password")
        if failures is not None and failures >= self.policy.max_failures:
            await session.execute(
                update(Adviser)
                .where(Adviser.id == adviser.id)
                .values(failed_logins=0, locked_until=now + self.policy.lock_for)
            )
            audit(
                session,
                actor=actor(adviser),
                action="console.lockout",
                detail=f"{self.policy.max_failures} wrong passwords",
            )

    async def session(self, token: str | None, *, touch: bool = True) -> ConsoleSession | None:
        """The live session of a cookie token, or None; ``touch`` counts the request as activity."""
        if not token:
            return None
        now = self.clock()
        digest = token_hash(token)
        async with self.database.unit_of_work() as session:
            row = await session.get(AdviserSession, digest)
            if row is None or row.ended_at is not None:
                return None
            adviser = await session.get(Adviser, row.adviser_id)
            idle = now - as_utc(row.last_seen_at) > self.policy.idle
            too_old = now - as_utc(row.created_at) > self.policy.absolute
            if adviser is None or not adviser.active or idle or too_old:
                row.ended_at = now
                if adviser is not None:
                    reason = "idle" if idle else "absolute" if too_old else "disabled"
                    audit(session, actor=actor(adviser), action="console.session_expired", detail=reason)
                await session.commit()
                return None
            if touch:
                row.last_seen_at = now
                await session.commit()
            return ConsoleSession(
                adviser=adviser,
                token_hash=digest,
                csrf_token=row.csrf_token,
                created_at=as_utc(row.created_at),
            )

    async def logout(self, token: str | None) -> None:
        """End the session on the server (the cookie alone no longer opens anything)."""
        if not token:
            return
        async with self.database.unit_of_work() as session:
            row = await session.get(AdviserSession, token_hash(token))
            if row is None or row.ended_at is not None:
                return
            row.ended_at = self.clock()
            audit(session, actor=f"adviser:{row.adviser_id}", action="console.logout")
            await session.commit()
