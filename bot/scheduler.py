"""APScheduler 3 with a persistent SQLAlchemy job store in the app's database; one owner runs it.

Jobs are module-level functions in bot.jobs taking primitive arguments, with explicit ids,
``replace_existing=True``, ``coalesce`` and ``misfire_grace_time``.

The scheduler runs in a thread of its own (BackgroundScheduler), not on the event loop: its job store
reads and writes the database synchronously, and on SQLite a write waiting on the loop's thread for a
lock held by one of the loop's own open transactions blocked both until "database is locked" (make bench
lost most reminders that way). Jobs hand their coroutines to the app's loop (bot.jobs).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_STOPPED, BaseScheduler
from sqlalchemy.exc import IntegrityError, ProgrammingError

from bot.settings import Settings
from bot.storage.database import sync_url

log = logging.getLogger(__name__)

JOB_TABLE = "scheduled_jobs"
RETENTION_JOB = "retention-purge"
RECONCILE_JOB = "reconcile-reminders"
RECONCILE_MINUTES = 10
STORE_POLL_SECONDS = 5.0
"""How often the owner looks into the job store for jobs that other app replicas added."""


class ThreadScheduler(BackgroundScheduler):  # type: ignore[misc]  # APScheduler 3 ships no types
    """APScheduler's BackgroundScheduler without its last round at shutdown.

    Its thread wakes once more after ``shutdown()`` and processes due jobs although the executors are
    gone: each due job then fails to start and is removed or moved on as if it had run, so a reminder
    due at that moment would be lost, also on a paused replica. A stopped scheduler runs nothing.
    """

    def _process_jobs(self) -> float | None:
        if self.state == STATE_STOPPED:
            return None
        wait: float | None = super()._process_jobs()
        return wait


def build_scheduler(settings: Settings) -> BackgroundScheduler:
    """A scheduler whose jobs survive restarts (stored in the app's database), in its own thread."""
    store = SQLAlchemyJobStore(url=sync_url(settings.database_url), tablename=JOB_TABLE)
    try:
        store.jobs_t.create(store.engine, checkfirst=True)
    except (IntegrityError, ProgrammingError):
        # Two replicas starting at once on a new PostgreSQL database both create the table; the loser's
        # CREATE fails once the winner's is committed, so the table is there (the store checks first).
        log.info("job table %s was created by another process at the same moment", JOB_TABLE)
    return ThreadScheduler(
        jobstores={"default": store},
        job_defaults={"coalesce": True, "misfire_grace_time": 6 * 3600, "max_instances": 1},
        timezone=UTC,
    )


def schedule_retention(scheduler: BaseScheduler, settings: Settings, *, days: int) -> None:
    """Purge conversations without an active consent every six hours."""
    scheduler.add_job(
        "bot.jobs:purge_expired",
        "interval",
        hours=6,
        id=RETENTION_JOB,
        replace_existing=True,
        coalesce=True,
        misfire_grace_time=6 * 3600,
        next_run_time=datetime.now(UTC) + timedelta(minutes=1),
        kwargs={"database_url": settings.database_url, "tracker_url": settings.tracker_url, "days": days},
    )


def schedule_reconcile(scheduler: BaseScheduler) -> None:
    """Every few minutes (and soon after start): give every stored reminder without a job its job."""
    scheduler.add_job(
        "bot.jobs:reconcile_reminders",
        "interval",
        minutes=RECONCILE_MINUTES,
        id=RECONCILE_JOB,
        replace_existing=True,
        coalesce=True,
        misfire_grace_time=RECONCILE_MINUTES * 60,
        next_run_time=datetime.now(UTC) + timedelta(seconds=10),
    )


def poll_job_store(scheduler: BaseScheduler, *, every: float = STORE_POLL_SECONDS) -> asyncio.Task[None]:
    """Wake the scheduler regularly: APScheduler 3 sees at once only the jobs its own process adds."""

    async def poll() -> None:
        while True:
            await asyncio.sleep(every)
            scheduler.wakeup()

    return asyncio.create_task(poll(), name="job-store-poll")
