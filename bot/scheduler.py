"""APScheduler 3 with a persistent SQLAlchemy job store in the app's database; one owner runs it.

Jobs are module-level functions in bot.jobs taking primitive arguments, with explicit ids,
``replace_existing=True``, ``coalesce`` and ``misfire_grace_time``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.settings import Settings
from bot.storage.database import sync_url

JOB_TABLE = "scheduled_jobs"
RETENTION_JOB = "retention-purge"
STORE_POLL_SECONDS = 5.0
"""How often the owner looks into the job store for jobs that other app replicas added."""


def build_scheduler(settings: Settings) -> AsyncIOScheduler:
    """A scheduler whose jobs survive restarts (stored in the app's database)."""
    return AsyncIOScheduler(
        jobstores={"default": SQLAlchemyJobStore(url=sync_url(settings.database_url), tablename=JOB_TABLE)},
        job_defaults={"coalesce": True, "misfire_grace_time": 6 * 3600, "max_instances": 1},
        timezone=UTC,
    )


def schedule_retention(scheduler: AsyncIOScheduler, settings: Settings, *, days: int) -> None:
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


def poll_job_store(scheduler: AsyncIOScheduler, *, every: float = STORE_POLL_SECONDS) -> asyncio.Task[None]:
    """Wake the scheduler regularly: APScheduler 3 sees at once only the jobs its own process adds."""

    async def poll() -> None:
        while True:
            await asyncio.sleep(every)
            scheduler.wakeup()

    return asyncio.create_task(poll(), name="job-store-poll")
