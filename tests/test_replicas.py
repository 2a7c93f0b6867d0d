"""Production mode on one machine: two app processes on one PostgreSQL database and one Redis.

A widget tab on replica A receives what replica B emits (python-socketio's AsyncRedisManager), both
replicas read and write the same conversations, and only the scheduler owner runs scheduled jobs,
each once. Replica B owns the scheduler (LOTSE_SCHEDULER=on), replica A does not.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import socketio
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import create_engine, text

from bot.errors import SettingsError
from bot.scheduler import JOB_TABLE, STORE_POLL_SECONDS
from bot.settings import ROOT, load_settings
from bot.storage.database import Database
from tests.auxil.jobs import RUNS_TABLE
from tests.auxil.servers import free_port, postgres_admin_url

REDIS_URL = os.environ.get("LOTSE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
START_TIMEOUT = 120.0


@dataclass
class Replica:
    """One app process."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        """Base URL of this replica."""
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self) -> str:
        """The end of the replica's log, for failure messages."""
        return self.log.read_text(errors="replace")[-3000:]


@dataclass
class Cluster:
    """Two replicas on one database."""

    database_url: str
    a: Replica
    b: Replica


def _start(name: str, env: dict[str, str], log: Path) -> Replica:
    port = int(env["APP_PORT"])
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve"],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    return Replica(name=name, port=port, process=process, log=log)


def _wait_healthy(replica: Replica, deadline: float) -> None:
    while time.monotonic() < deadline:
        if replica.process.poll() is not None:
            raise RuntimeError(f"replica {replica.name} exited:\n{replica.log_tail()}")
        try:
            if httpx.get(f"{replica.url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"replica {replica.name} did not answer /health in time:\n{replica.log_tail()}")


def _stop(replica: Replica) -> None:
    if replica.process.poll() is None:
        replica.process.terminate()
        try:
            replica.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            replica.process.kill()
            replica.process.wait(timeout=10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A fresh PostgreSQL database, migrated, and replicas A (no scheduler) and B (scheduler owner)."""
    tmp = tmp_path_factory.mktemp("replicas")
    admin = create_engine(postgres_admin_url(), isolation_level="AUTOCOMMIT")
    name = f"lotse_replicas_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    database_url = postgres_admin_url().rsplit("/", 1)[0] + f"/{name}"
    replicas: list[Replica] = []
    try:
        Database(database_url).upgrade()
        dead_engine = f"http://127.0.0.1:{free_port()}"  # the messages used here never reach the engine
        for replica_name, scheduler in (("A", "off"), ("B", "on")):
            port = free_port()
            env = {
                **os.environ,
                "APP_PORT": str(port),
                "LOTSE_DATABASE_URL": database_url,
                "LOTSE_ENGINE_URL": dead_engine,
                "LOTSE_ENV": "test",
                "LOTSE_REDIS_URL": REDIS_URL,
                "LOTSE_SCHEDULER": scheduler,
                "LOTSE_TRACKER_URL": f"sqlite:///{tmp / 'tracker.db'}",
                "LOTSE_PUBLIC_URL": f"http://127.0.0.1:{port}",
                "LOTSE_TRANSLATOR": "none",
            }
            replicas.append(_start(replica_name, env, tmp / f"replica-{replica_name}.log"))
        deadline = time.monotonic() + START_TIMEOUT
        for replica in replicas:
            _wait_healthy(replica, deadline)
        yield Cluster(database_url=database_url, a=replicas[0], b=replicas[1])
    finally:
        for replica in replicas:
            _stop(replica)
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class Tab:
    """A browser tab of the widget: one socket.io connection in one session's room."""

    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self.sio = socketio.AsyncClient(reconnection=False)
        self.replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.confirmed = asyncio.Event()
        self.sio.on("session_confirm", self._confirm)
        self.sio.on("bot_uttered", self._reply)

    async def _confirm(self, _session: str) -> None:
        self.confirmed.set()

    async def _reply(self, data: dict[str, Any]) -> None:
        await self.replies.put(data)

    async def open(self, session: str) -> Tab:
        """Connect by websocket and join the session."""
        url = self.replica.url
        await self.sio.connect(url, transports=["websocket"], headers={"Origin": url}, wait_timeout=10)
        await self.sio.emit("session_request", {"session_id": session})
        await asyncio.wait_for(self.confirmed.wait(), 10)
        return self


@pytest.mark.postgres
async def test_a_tab_on_replica_a_receives_the_reply_replica_b_emits(cluster: Cluster) -> None:
    session = uuid.uuid4().hex
    tab_a = await Tab(cluster.a).open(session)
    tab_b = await Tab(cluster.b).open(session)
    try:
        # The client writes in the tab connected to B; B answers itself (no engine needed) and
        # emits to the session's room, which has a member only A holds.
        await tab_b.sio.emit("user_uttered", {"message": "/choose_language en", "session_id": session})
        on_b = await asyncio.wait_for(tab_b.replies.get(), 15)
        try:
            on_a = await asyncio.wait_for(tab_a.replies.get(), 15)
        except TimeoutError:
            pytest.fail("the tab on replica A never received the reply emitted on replica B")
    finally:
        await tab_a.sio.disconnect()
        await tab_b.sio.disconnect()
    assert on_a == on_b
    assert on_a["metadata"]["lotse"]["key"] == "language.set"
    assert on_a["metadata"]["lotse"]["language"] == "en"
    # Both replicas share the database: A shows the conversation B stored, each message once.
    async with httpx.AsyncClient(timeout=10) as http:
        history = (await http.get(f"{cluster.a.url}/widget/history/{session}")).json()["messages"]
    assert [(m["from"], m["text"]) for m in history] == [
        ("client", "/choose_language en"),
        ("bot", on_a["text"]),
    ]


@pytest.mark.postgres
def test_only_the_scheduler_owner_runs_scheduled_jobs_each_once(cluster: Cluster) -> None:
    database = create_engine(cluster.database_url)
    with database.begin() as connection:
        connection.execute(
            text(
                f"CREATE TABLE {RUNS_TABLE} (id SERIAL PRIMARY KEY, job VARCHAR(64), replica VARCHAR(8), "
                "ran_at TIMESTAMP WITH TIME ZONE)"
            )
        )
    # Jobs enter the shared job store the way a replica without the scheduler adds them: through a
    # paused scheduler on the same store. They are due 2 s from now and one second apart, so that a
    # second scheduler on the store (the fault this test looks for) would run them as well.
    store = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(url=cluster.database_url, tablename=JOB_TABLE)},
        timezone=UTC,
    )
    store.start(paused=True)
    first = datetime.now(UTC) + timedelta(seconds=2)
    due = {f"replica-test-{i}": first + timedelta(seconds=i) for i in range(5)}
    for job, when in due.items():
        store.add_job(
            "tests.auxil.jobs:record_run",
            "date",
            run_date=when,
            id=job,
            replace_existing=True,
            coalesce=True,
            misfire_grace_time=60,
            kwargs={"database_url": cluster.database_url, "job": job},
        )
    store.shutdown(wait=False)

    deadline = time.monotonic() + 2 + len(due) + STORE_POLL_SECONDS + 10
    rows: list[Any] = []
    while time.monotonic() < deadline:
        with database.connect() as connection:
            rows = list(connection.execute(text(f"SELECT job, replica, ran_at FROM {RUNS_TABLE}")))
        if {r.job for r in rows} == set(due):
            break
        time.sleep(0.25)
    time.sleep(2)  # a duplicate run would land within moments of the first
    with database.connect() as connection:
        rows = list(connection.execute(text(f"SELECT job, replica, ran_at FROM {RUNS_TABLE} ORDER BY id")))
        left = connection.scalar(text(f"SELECT count(*) FROM {JOB_TABLE} WHERE id LIKE 'replica-test-%'"))
    database.dispose()

    assert sorted(r.job for r in rows) == sorted(due), (
        f"each job runs exactly once; ran: {[(r.job, r.replica) for r in rows]}\n"
        f"B's log:\n{cluster.b.log_tail()}"
    )
    assert {r.replica for r in rows} == {str(cluster.b.port)}, "only the scheduler owner B runs jobs"
    for r in rows:
        assert r.ran_at >= due[r.job] - timedelta(milliseconds=50), "no job runs before it is due"
    assert left == 0, "a job that ran is gone from the store"


def test_the_redis_url_is_optional_and_checked() -> None:
    assert load_settings({}).redis_url is None
    assert load_settings({"LOTSE_REDIS_URL": "redis://redis:6379/0"}).redis_url == "redis://redis:6379/0"
    with pytest.raises(SettingsError, match="LOTSE_REDIS_URL"):
        load_settings({"LOTSE_REDIS_URL": "redis-host:6379"})
