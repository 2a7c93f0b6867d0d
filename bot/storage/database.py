"""The database handle: an async engine for the app, Alembic migrations, a unit of work per message.

The two units of work of every client message (store it; store the replies) run as plain
synchronous SQLAlchemy in one worker thread each (``Database.run``): one hop to a thread per unit
instead of one per statement through the async driver. Measured alone on SQLite (issue 8): a unit of
work of the first kind took 3.3 ms through aiosqlite and 0.9 ms synchronously.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import sessionmaker

from bot.errors import StorageUnavailable

T = TypeVar("T")
SYNC_WORKERS = 8
"""Threads for synchronous units of work (a unit takes about a millisecond; SQLite has one writer)."""

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def sync_url(url: str) -> str:
    """The URL for synchronous tools (Alembic, the scheduler's job store)."""
    return url.replace("sqlite+aiosqlite:", "sqlite:")


def async_url(url: str) -> str:
    """The URL for the app's async engine."""
    if url.startswith("sqlite:"):
        return "sqlite+aiosqlite:" + url.removeprefix("sqlite:")
    return url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL syncs at checkpoints, not on every commit: a committed turn survives the app
    # being killed (the WAL is in the operating system's cache), only a power loss may take back the
    # last commits. It halves the app's own time per turn here (make bench). Production uses PostgreSQL.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


class Database:
    """Owns the engine; hands out one session per unit of work, never a global one."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite:"):
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine: AsyncEngine = create_async_engine(async_url(url))
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            self.sync_engine = create_engine(sync_url(url))
            event.listen(self.sync_engine, "connect", _sqlite_pragmas)
        else:
            self.engine = create_async_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
            self.sync_engine = create_engine(url, pool_pre_ping=True, pool_size=SYNC_WORKERS, max_overflow=0)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.sync_sessions = sessionmaker(self.sync_engine, expire_on_commit=False)
        self._threads = ThreadPoolExecutor(max_workers=SYNC_WORKERS, thread_name_prefix="db")

    def upgrade(self) -> None:
        """Bring the schema to the newest migration (synchronous; call before serving)."""
        command.upgrade(alembic_config(self.url), "head")

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[AsyncSession]:
        """A session whose changes the caller commits; database outages become StorageUnavailable."""
        try:
            async with self.sessions() as session:
                yield session
        except (OperationalError, DBAPIError, OSError) as exc:
            raise StorageUnavailable(str(exc).splitlines()[0]) from exc

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """``work(session, *args)`` in a synchronous session on a worker thread; the work commits.

        For short units of work on the hot path. ``work`` must not touch the event loop or objects
        that belong to it; what it returns (detached, attributes loaded) is safe to use afterwards.
        Database outages become StorageUnavailable, as in ``unit_of_work``.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, functools.partial(self._run, work, *args))

    def _run(self, work: Callable[..., T], *args: Any) -> T:
        try:
            with self.sync_sessions() as session:
                return work(session, *args)
        except (OperationalError, DBAPIError, OSError) as exc:
            raise StorageUnavailable(str(exc).splitlines()[0]) from exc

    async def ping(self) -> bool:
        """True when a trivial query succeeds."""
        try:
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except (OperationalError, DBAPIError, OSError):
            return False
        return True

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()
        self.sync_engine.dispose()


def alembic_config(url: str) -> Config:
    """An Alembic configuration pointing at our migrations and the given database."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    return config
