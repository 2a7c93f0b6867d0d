"""A scheduled job for the replica tests: each run is one row, naming the replica that ran it."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from sqlalchemy import create_engine, text

RUNS_TABLE = "test_job_runs"


def record_run(*, database_url: str, job: str) -> None:
    """Insert one row for this run (the test counts rows per job and replica)."""
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(f"INSERT INTO {RUNS_TABLE} (job, replica, ran_at) VALUES (:job, :replica, :ran_at)"),
                {"job": job, "replica": os.environ.get("APP_PORT", "?"), "ran_at": datetime.now(UTC)},
            )
    finally:
        engine.dispose()
