"""Faults: the app killed mid-conversation, the engine killed, PostgreSQL restarted, a burst for one client.

The app runs as a real process (`python -m bot serve`) so it can be killed with SIGKILL; the real
engine with the trained model is started once for the module (and restarted by the engine test).
Every wait is bounded and every process this module starts is stopped in a finalizer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml
from sqlalchemy import create_engine, text

from bot.settings import ROOT
from tests.auxil.servers import EngineProcess, free_port

pytestmark = pytest.mark.engine
log = logging.getLogger(__name__)

ENDPOINT = "/webhooks/rest/webhook"
REMINDER_SERVICE = "caritas-bueren-mbe"
FAILURE_KEYS = frozenset({"engine.unavailable", "storage.unavailable", "error.generic"})
"""Content keys of the replies that say something went wrong."""
PG_BIN = Path(os.environ.get("LOTSE_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def authored(lang: str, key: str) -> str:
    """The authored text of a key, read straight from content/texts/<lang>.yml."""
    texts = yaml.safe_load((ROOT / "content" / "texts" / f"{lang}.yml").read_text(encoding="utf-8"))
    value = texts[key]
    assert isinstance(value, str)
    return value.strip()


def lotse(reply: dict[str, Any]) -> dict[str, Any]:
    """The Lotse part of a REST reply's custom payload."""
    meta = reply["custom"]["lotse"]
    assert isinstance(meta, dict)
    return meta


# ---------------------------------------------------------------------------------------------------
# Processes


class AppProcess:
    """The app as its own process (`python -m bot serve`), so that it can be killed like a crash."""

    def __init__(self, *, port: int, env: dict[str, str], log_path: Path) -> None:
        self.port = port
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the app."""
        return f"http://127.0.0.1:{self.port}"

    def migrate(self, timeout: float = 120.0) -> None:
        """`python -m bot db-upgrade` against the configured database."""
        done = subprocess.run(
            [sys.executable, "-m", "bot", "db-upgrade"],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]

    def start(self, timeout: float = 90.0) -> float:
        """Start and wait until /health answers; return the seconds it took."""
        started = time.monotonic()
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve"],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"app exited with {self.process.returncode}; see {self.log_path}")
            try:
                if httpx.get(f"{self.url}/health", timeout=5.0).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"app did not answer /health within {timeout} s; see {self.log_path}")

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """Terminate (kill after a grace period)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@dataclass
class FaultStack:
    """The module's engine and the one port every app of this module listens on."""

    engine: EngineProcess
    app_port: int
    tmp: Path

    def app(self, name: str, database_url: str, **env: str) -> AppProcess:
        """An app process (not started) on the module's port with its own database."""
        base = {k: v for k, v in os.environ.items() if not k.startswith(("LOTSE_", "TELEGRAM_"))}
        base.update(
            {
                "LOTSE_DATABASE_URL": database_url,
                "LOTSE_ENGINE_URL": self.engine.url,
                "APP_PORT": str(self.app_port),
                "LOTSE_HOST": "127.0.0.1",
                "LOTSE_PUBLIC_URL": f"http://127.0.0.1:{self.app_port}",
                "LOTSE_ENV": "test",
                "LOTSE_ENGINE_TIMEOUT": "20",
                "LOTSE_SCHEDULER": "off",
                "LOTSE_TRACKER_URL": f"sqlite:///{self.engine.tracker_db}",
            }
        )
        base.update(env)
        return AppProcess(port=self.app_port, env=base, log_path=self.tmp / f"app-{name}.log")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    """The real engine, started once for the module; its custom actions call the module's app port."""
    tmp = tmp_path_factory.mktemp("faults")
    app_port = free_port()
    engine = EngineProcess(
        action_endpoint=f"http://127.0.0.1:{app_port}/webhook",
        tracker_db=tmp / "tracker.db",
        log_path=tmp / "engine.log",
    )
    try:
        engine.start()
        yield FaultStack(engine=engine, app_port=app_port, tmp=tmp)
    finally:
        engine.stop()


@pytest.fixture
def running(stack: FaultStack) -> Iterator[list[AppProcess]]:
    """Apps a test starts; each is stopped when the test ends, however it ends."""
    apps: list[AppProcess] = []
    yield apps
    for app in apps:
        app.stop()


# ---------------------------------------------------------------------------------------------------
# Conversations under load


@dataclass
class Exchange:
    """One message sent and what came back (status None: the connection broke)."""

    sender: str
    text: str
    started: float
    finished: float = 0.0
    status: int | None = None
    replies: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""


@dataclass
class Load:
    """Every exchange of a load run."""

    exchanges: list[Exchange] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def finish(self, exchange: Exchange) -> None:
        """Mark an exchange finished and wake whoever waits for progress."""
        exchange.finished = time.monotonic()
        self.changed.set()

    async def wait_until(self, condition: Callable[[], bool], within: float) -> bool:
        """Wait (bounded) until the condition holds; False when the time ran out first."""
        deadline = time.monotonic() + within
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), timeout=remaining)
            except TimeoutError:
                return condition()
        return True

    def ok(self, sender: str | None = None) -> list[Exchange]:
        """Exchanges answered with 200."""
        return [e for e in self.exchanges if e.status == 200 and sender in (None, e.sender)]

    def in_flight(self, at: float) -> list[Exchange]:
        """Exchanges sent before ``at`` and not finished then."""
        return [e for e in self.exchanges if e.started <= at and (e.finished == 0.0 or e.finished > at)]


async def converse(
    client: httpx.AsyncClient,
    load: Load,
    sender: str,
    texts: list[str],
    stop: asyncio.Event,
    *,
    language: str | None = None,
    limit: int = 200,
) -> None:
    """One client writing without pause until told to stop; each text is numbered to be told apart."""
    for n in range(limit):
        if stop.is_set():
            return
        numbered = f"{texts[n % len(texts)]} ({n + 1})"
        exchange = Exchange(sender=sender, text=numbered, started=time.monotonic())
        load.exchanges.append(exchange)
        body: dict[str, Any] = {"sender": sender, "message": exchange.text}
        if language:
            body["metadata"] = {"language": language}
        try:
            response = await client.post(ENDPOINT, json=body)
            exchange.status = response.status_code
            exchange.replies = response.json()
            if response.status_code != 200:
                await asyncio.sleep(0.1)  # as a client honouring Retry-After would, only sooner
        except (httpx.HTTPError, ValueError) as exc:
            exchange.error = repr(exc)
            await asyncio.sleep(0.1)  # the app is down: do not spin
        finally:
            load.finish(exchange)


def stored_messages(database_url: str, senders: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Each REST sender's stored messages in order (id order), read with a separate connection."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT i.external_id, m.conversation_id, m.direction, m.text, m.content_key "
                    "FROM messages m JOIN conversations c ON c.id = m.conversation_id "
                    "JOIN channel_identities i ON i.client_id = c.client_id AND i.channel = 'rest' "
                    "ORDER BY m.id"
                )
            ).all()
    finally:
        engine.dispose()
    found: dict[str, list[dict[str, Any]]] = {s: [] for s in senders}
    for sender, conversation, direction, body, key in rows:
        if sender in found:
            found[sender].append(
                {"conversation": conversation, "direction": direction, "text": body, "key": key}
            )
    return found


def replies_after(messages: list[dict[str, Any]], inbound_text: str) -> list[dict[str, Any]]:
    """The stored replies that follow an inbound message, up to the next inbound message."""
    index = next(i for i, m in enumerate(messages) if m["direction"] == "in" and m["text"] == inbound_text)
    following = []
    for message in messages[index + 1 :]:
        if message["direction"] == "in":
            break
        following.append(message)
    return following


def assert_answered_messages_stored(load: Load, database_url: str) -> dict[str, list[dict[str, Any]]]:
    """Every message answered with 200 is stored, and so is every reply it was answered with."""
    senders = sorted({e.sender for e in load.exchanges})
    stored = stored_messages(database_url, senders)
    for exchange in load.ok():
        messages = stored[exchange.sender]
        inbound = [m for m in messages if m["direction"] == "in" and m["text"] == exchange.text]
        assert len(inbound) == 1, (exchange.sender, exchange.text, "stored", len(inbound), "times")
        replies = [r["text"] for r in exchange.replies]
        stored_replies = [m["text"] for m in replies_after(messages, exchange.text)]
        assert stored_replies[: len(replies)] == replies, (exchange.text, replies, stored_replies)
    return stored


# Durable state: what must be there after a crash (every row committed before it).
DURABLE_STATE: dict[str, str] = {
    "clients": "SELECT id, language FROM clients",
    "identities": "SELECT channel, external_id, client_id FROM channel_identities",
    "conversations": "SELECT id, client_id, channel FROM conversations",
    "messages": "SELECT id, conversation_id, direction, text FROM messages",
    "consent_events": "SELECT id, client_id, scope, action FROM consent_events",
    # a reminder keeps its time; the retention purge is re-added (replace_existing) at every start
    "scheduled_jobs": "SELECT id, CASE WHEN id LIKE 'reminder-%' THEN next_run_time END FROM scheduled_jobs",
    "tickets": "SELECT id, organisation, status, conversation_id FROM tickets",
    "appointments": "SELECT id, client_id, starts_at, status FROM appointments",
    "reminders": "SELECT id, appointment_id, due_at, status FROM reminders",
}


def snapshot_durable_state(database_url: str) -> dict[str, set[tuple[Any, ...]]]:
    """The rows of every DURABLE_STATE query."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return {
                name: {tuple(row) for row in connection.execute(text(query))}
                for name, query in DURABLE_STATE.items()
            }
    finally:
        engine.dispose()


def assert_durable_state_survived(
    before: dict[str, set[tuple[Any, ...]]], after: dict[str, set[tuple[Any, ...]]]
) -> None:
    """Every row committed before the crash is still there after the restart."""
    for name, rows in before.items():
        lost = rows - after[name]
        assert not lost, f"{name}: {len(lost)} rows lost, e.g. {sorted(lost, key=repr)[:3]}"


def send(app: AppProcess, sender: str, message: str) -> list[dict[str, Any]]:
    """One message through the REST channel; the replies of a 200."""
    response = httpx.post(f"{app.url}{ENDPOINT}", json={"sender": sender, "message": message}, timeout=30)
    assert response.status_code == 200, response.text
    replies: list[dict[str, Any]] = response.json()
    return replies


def seed_pending_question(app: AppProcess, sender: str) -> None:
    """Leave a question waiting for the client's answer (deletion), stored in the conversation."""
    replies = send(app, sender, "/delete")
    assert lotse(replies[0])["key"] == "delete.confirm", replies


def assert_pending_question_survived(app: AppProcess, sender: str) -> None:
    """The waiting question is still open after the restart: answering it is understood."""
    replies = send(app, sender, "/keep")
    assert lotse(replies[0])["key"] == "delete.cancelled", replies


HANDOFF_SENDER = "kill-waiting"
HANDOFF_QUESTION = "Які документи потрібні для визнання диплома?"


def seed_waiting_ticket(app: AppProcess, database_url: str) -> int:
    """A Ukrainian client who asked for a person and consented: a ticket waits in an organisation's queue."""
    assert lotse(send(app, HANDOFF_SENDER, HANDOFF_QUESTION)[0])["language"] == "uk"
    offered = send(app, HANDOFF_SENDER, "/adviser")
    assert [lotse(r).get("key") for r in offered] == ["handoff.explain", "consent.handoff.v1"], offered
    waiting = send(app, HANDOFF_SENDER, "/consent_yes")
    assert lotse(waiting[0])["key"] == "consent.granted", waiting
    rows = _rows(database_url, "SELECT id, status FROM tickets")
    assert len(rows) == 1 and rows[0][1] == "waiting", rows
    return int(rows[0][0])


def _rows(database_url: str, query: str) -> list[tuple[Any, ...]]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(query))]
    finally:
        engine.dispose()


def seed_scheduled_reminders(database_url: str, tmp: Path) -> str:
    """A booked appointment in three days with both reminders in the app's persistent job store."""

    async def seed() -> str:
        from bot import jobs
        from bot.bootstrap import bootstrap
        from bot.scheduler import build_scheduler
        from tests.auxil.clients import new_client
        from tests.conftest import make_settings

        services = bootstrap(make_settings(tmp, LOTSE_DATABASE_URL=database_url))
        scheduler = build_scheduler(services.settings)
        try:
            service = services.directory.services[REMINDER_SERVICE]
            scopes = (("booking", service.organisation), ("reminders", ""))
            client_id, conversation_id = await new_client(
                services, scopes=scopes, language="tr", external_id="kill-reminded"
            )
            jobs.bind(booking=services.booking)
            scheduler.start(paused=True)  # only writes the jobs into the shared store; the app runs them
            services.booking.scheduler = scheduler
            after = datetime.now(UTC) + timedelta(days=3)
            slot = (await services.booking.free_slots(REMINDER_SERVICE, limit=1, after=after))[0]
            appointment = await services.booking.book(
                client_id=client_id,
                conversation_id=conversation_id,
                channel="rest",
                slot=slot,
                language="tr",
                topic="counselling",
            )
            return appointment.id
        finally:
            scheduler.shutdown(wait=False)
            await services.close()

    tmp.mkdir(parents=True, exist_ok=True)
    appointment = asyncio.run(seed())
    rows = _rows(database_url, "SELECT id FROM scheduled_jobs WHERE id LIKE 'reminder-%'")
    assert len(rows) == 2, rows
    return appointment


def assert_waiting_ticket_flows_after_restart(
    app: AppProcess, database_url: str, tmp: Path, ticket: int
) -> None:
    """The ticket still waits; the client's message is queued; an adviser claims it and the reply arrives."""
    rows = _rows(database_url, f"SELECT status FROM tickets WHERE id = {ticket}")
    assert rows == [("waiting",)], rows
    queued = send(app, HANDOFF_SENDER, "Я ще тут")
    assert [lotse(r).get("key") for r in queued] == ["handoff.still_waiting"], queued

    async def adviser_replies() -> None:
        from bot.bootstrap import bootstrap
        from tests.auxil.console import adviser
        from tests.conftest import make_settings

        desk = bootstrap(make_settings(tmp, LOTSE_DATABASE_URL=database_url))
        try:
            organisation = _rows(database_url, f"SELECT organisation FROM tickets WHERE id = {ticket}")[0][0]
            dora = await adviser(desk, str(organisation), "dora-after-kill")
            assert await desk.handoff.claim(ticket, dora)
            await desk.handoff.send(ticket, dora, "Ich bin jetzt für Sie da.", translate=False)
        finally:
            await desk.close()

    tmp.mkdir(parents=True, exist_ok=True)
    asyncio.run(adviser_replies())
    delivered = send(app, HANDOFF_SENDER, "Добре")
    texts = [str(r.get("text")) for r in delivered]
    assert any(t.startswith("Ich bin jetzt für Sie da.") for t in texts), texts
    assert _rows(database_url, f"SELECT status FROM tickets WHERE id = {ticket}") == [("claimed",)]


# The clients of the kill test: one language each, questions on one topic each, so that a follow-up
# after the restart still has its topic in the engine's tracker.
KILL_CLIENTS: dict[str, tuple[str, list[str]]] = {
    "de": ("de", ["Ich möchte einen Integrationskurs machen", "Gibt es Integrationskurse in Paderborn?"]),
    "uk": ("uk", ["Які документи потрібні для визнання диплома?", "Як визнати мій диплом у Німеччині?"]),
    "ar": ("ar", ["كيف أحصل على Bildungsgutschein من الجوب سنتر؟", "أريد دورة تدريب مهني"]),
    "en": ("en", ["How can I get my nursing diploma recognised in Germany?", "I need my degree recognised"]),
    "ru": ("ru", ["Сколько стоит интеграционный курс?", "Как записаться на интеграционный курс?"]),
    "tr": ("tr", ["Integrationskurs için nasıl kayıt olabilirim?", "Almanca kursu ne kadar?"]),
}
FOLLOW_UPS = {
    "de": ("und was kostet das?", "answer.language_course.cost"),
    "uk": ("Скільки це коштує?", None),
    "ar": ("شكرا", None),
    "en": ("What documents do I need?", None),
    "ru": ("Спасибо", None),
    "tr": ("Teşekkürler", None),
}


def test_the_app_log_keeps_no_session_ids_or_calendar_tokens(
    stack: FaultStack, running: list[AppProcess]
) -> None:
    """Paths carry secrets (a widget session id reads its history, a token opens a calendar file):
    the app writes no access log that would keep them."""
    app = stack.app("log", f"sqlite:///{stack.tmp / 'log.db'}")
    running.append(app)
    app.migrate()
    app.start()
    session, token = "S3ss10n" + os.urandom(8).hex(), "T0ken" + os.urandom(8).hex()
    with httpx.Client(base_url=app.url, timeout=30) as client:
        assert client.get(f"/widget/history/{session}").status_code in (200, 404)
        assert client.get(f"/appointments/{session}.ics", params={"token": token}).status_code == 404
        answered = client.post("/webhooks/rest/webhook", json={"sender": session, "message": "Hallo"})
        assert answered.status_code == 200 and answered.json()
    app.stop()
    log = app.log_path.read_text(encoding="utf-8", errors="replace")
    assert "Application startup complete" in log  # the log was written, at INFO
    assert session not in log and token not in log
    assert '"GET /' not in log and '"POST /' not in log


def test_app_killed_mid_conversation_loses_nothing_answered(
    stack: FaultStack, running: list[AppProcess]
) -> None:
    started = time.monotonic()
    database_url = f"sqlite:///{stack.tmp / 'kill.db'}"
    # the scheduler is on: its job store lives in the same SQLite file and must survive the kill too
    app = stack.app("kill", database_url, LOTSE_SCHEDULER="on")
    running.append(app)
    app.migrate()
    app.start()
    seed_pending_question(app, "kill-pending")
    ticket = seed_waiting_ticket(app, database_url)
    seed_scheduled_reminders(database_url, stack.tmp / "seed")
    senders = {lang: f"kill-{lang}" for lang in KILL_CLIENTS}

    async def run() -> tuple[Load, float, dict[str, set[tuple[Any, ...]]]]:
        load = Load()
        stop = asyncio.Event()
        async with httpx.AsyncClient(base_url=app.url, timeout=30) as client:
            tasks = [
                asyncio.create_task(converse(client, load, senders[lang], texts, stop))
                for lang, (_l, texts) in KILL_CLIENTS.items()
            ]
            # kill once every client has had answers, while all of them are waiting for the next one
            await load.wait_until(lambda: all(len(load.ok(s)) >= 2 for s in senders.values()), within=120)
            before = await asyncio.to_thread(snapshot_durable_state, database_url)
            killed_at = time.monotonic()
            app.kill()
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
        return load, killed_at, before

    load, killed_at, before = asyncio.run(run())
    in_flight = load.in_flight(killed_at)
    answered = load.ok()
    assert all(len(load.ok(s)) >= 2 for s in senders.values()), "each client was answered before the kill"
    assert in_flight, "the kill must hit conversations in the middle of a request"
    assert not [e for e in load.exchanges if e.status not in (200, None)], "answers or broken connections"

    restart_seconds = app.start()
    stored = assert_answered_messages_stored(load, database_url)
    inbound = sum(1 for s in senders.values() for m in stored[s] if m["direction"] == "in")
    # the messages sent are the answered ones, those cut off by the kill and those refused while down
    assert len(answered) <= inbound <= len(answered) + len(in_flight), (answered, inbound, in_flight)
    assert_durable_state_survived(before, snapshot_durable_state(database_url))
    assert_pending_question_survived(app, "kill-pending")
    reminders = _rows(database_url, "SELECT status FROM reminders")
    assert sorted(r[0] for r in reminders) == ["scheduled", "scheduled"], reminders
    assert_waiting_ticket_flows_after_restart(app, database_url, stack.tmp / "desk", ticket)

    health = httpx.get(f"{app.url}/health", timeout=10).json()
    assert health["status"] == "ok", health
    for lang, sender in senders.items():
        follow_up, expected_key = FOLLOW_UPS[lang]
        replies = send(app, sender, follow_up)
        keys = [lotse(r).get("key") for r in replies]
        assert replies and not FAILURE_KEYS & set(keys), (lang, keys)
        assert lotse(replies[0])["language"] == lang, (lang, replies[0])
        if expected_key:
            assert keys[0] == expected_key, (lang, keys)
        after = stored_messages(database_url, [sender])[sender]
        assert len({m["conversation"] for m in after}) == 1, "the conversation continues, no new one"
    log.info(
        f"kill test: {len(load.exchanges)} sent, {len(answered)} answered, {len(in_flight)} in flight at "
        f"the kill, {inbound} stored; restart to /health {restart_seconds:.1f} s; "
        f"whole test {time.monotonic() - started:.1f} s"
    )


# ---------------------------------------------------------------------------------------------------
# Twenty messages at once for one client


async def _http_exchange(reader: asyncio.StreamReader) -> tuple[int, Any]:
    """Read one HTTP/1.1 response (the server closes the connection after it)."""
    raw = await asyncio.wait_for(reader.read(), timeout=90)
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


def test_a_burst_for_one_client_is_stored_and_answered_in_the_order_sent(
    stack: FaultStack, running: list[AppProcess]
) -> None:
    started = time.monotonic()
    database_url = f"sqlite:///{stack.tmp / 'burst.db'}"
    app = stack.app("burst", database_url)
    running.append(app)
    app.migrate()
    app.start()
    sender = "burst"
    questions = [
        ("Was kostet der Integrationskurs?", "answer.language_course.cost"),
        ("Welche Unterlagen brauche ich für die Anerkennung?", "answer.recognition.documents"),
        ("Wie bekomme ich einen Bildungsgutschein?", "answer.qualification.bildungsgutschein"),
        ("Wie melde ich mich zum Integrationskurs an?", "answer.language_course.registration"),
    ]
    texts = [f"{questions[i % len(questions)][0]} (Nr. {i + 1})" for i in range(20)]
    first = httpx.post(f"{app.url}{ENDPOINT}", json={"sender": sender, "message": "Hallo"}, timeout=30)
    assert first.status_code == 200, first.text

    async def burst() -> list[tuple[int, Any]]:
        # Twenty connections first (the server accepts them while idle), then the twenty requests
        # written back to back without an await between them: "sent at once, in this order".
        connections = []
        for _ in texts:
            connections.append(await asyncio.open_connection("127.0.0.1", app.port))
        await asyncio.sleep(0.3)
        for (_reader, writer), message in zip(connections, texts, strict=True):
            body = json.dumps({"sender": sender, "message": message}).encode()
            writer.write(
                f"POST {ENDPOINT} HTTP/1.1\r\nHost: 127.0.0.1:{app.port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )
        try:
            return await asyncio.gather(*(_http_exchange(reader) for reader, _writer in connections))
        finally:
            for _reader, writer in connections:
                writer.close()

    sent = time.monotonic()
    responses = asyncio.run(burst())
    burst_seconds = time.monotonic() - sent
    assert [status for status, _body in responses] == [200] * 20, responses

    messages = stored_messages(database_url, [sender])[sender]
    inbound = [m["text"] for m in messages if m["direction"] == "in"]
    assert inbound == ["Hallo", *texts], "stored in the order sent"
    # processed one at a time: each message's replies come before the next message (in, out, in, out ...)
    after_hello = messages[[m["text"] for m in messages].index(texts[0]) :]
    directions = "".join("i" if m["direction"] == "in" else "o" for m in after_hello)
    assert directions.replace("o", "") == "i" * 20 and "ii" not in directions and directions.endswith("o")
    for i, (message, (_status, replies)) in enumerate(zip(texts, responses, strict=True)):
        stored_replies = replies_after(messages, message)
        assert [r["text"] for r in replies] == [m["text"] for m in stored_replies], message
        assert all(r["recipient_id"] == sender for r in replies)
        expected = questions[i % len(questions)][1]
        assert lotse(replies[0]).get("key") == expected, (message, [lotse(r).get("key") for r in replies])
    log.info(
        f"burst test: 20 answered in {burst_seconds:.1f} s; whole test {time.monotonic() - started:.1f} s"
    )


# ---------------------------------------------------------------------------------------------------
# PostgreSQL restarted under load (a private cluster: the shared server on 5432 is never touched)


class PrivatePostgres:
    """A throw-away PostgreSQL cluster on its own port with its socket in its own directory."""

    def __init__(self, port: int) -> None:
        # Not under tmp_path: pytest's base temp directory is private to root (0700), and the server
        # runs as the postgres user, which must be able to reach its data directory.
        self.root = Path(tempfile.mkdtemp(prefix="lotse-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = port

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the app's database in this cluster."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/lotse"

    def _run(self, *command: str, timeout: float = 90.0) -> None:
        as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        with (self.root / "commands.log").open("ab") as out:
            done = subprocess.run(
                [*as_owner, *command], stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False
            )
        assert done.returncode == 0, f"{command[0]} failed; see {self.root / 'commands.log'} and {self.log}"

    def init(self) -> None:
        """initdb with trust authentication, then start and create the app's database."""
        if os.geteuid() == 0:
            shutil.chown(self.root, user="postgres", group="postgres")
        self.root.chmod(0o755)
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--locale=C", "--no-sync")  # fmt: skip
        self.start()
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres") as connection:
            connection.autocommit = True
            connection.execute("CREATE DATABASE lotse")

    def start(self) -> None:
        """Start and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
                  "-w", "-t", "60", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """Stop (fast: disconnect every client, as a restart by an administrator does)."""
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def destroy(self) -> None:
        """Stop whatever runs and remove the cluster."""
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists():
            try:
                self.stop("immediate")
            except (AssertionError, subprocess.TimeoutExpired):
                if pid_file.exists():  # the postmaster we started did not stop: kill it by its pid
                    os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A private PostgreSQL cluster for one test, always stopped and removed afterwards."""
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"no PostgreSQL server binaries in {PG_BIN} (set LOTSE_TEST_PG_BIN)")
    cluster = PrivatePostgres(free_port())
    try:
        cluster.init()
        yield cluster
    finally:
        cluster.destroy()


PG_CLIENTS = {
    "de": ["Was kostet der Integrationskurs?", "Welche Unterlagen brauche ich für die Anerkennung?"],
    "uk": ["Скільки коштує інтеграційний курс?", "Які документи потрібні для визнання диплома?"],
    "ar": ["كيف أحصل على Bildungsgutschein من الجوب سنتر؟", "كم تكلفة دورة الاندماج؟"],
    "en": ["How much does the integration course cost?", "How can I get my diploma recognised?"],
}


@pytest.mark.postgres
def test_postgresql_restart_under_load_gives_retry_later_then_recovers(
    stack: FaultStack, running: list[AppProcess], private_postgres: PrivatePostgres
) -> None:
    started = time.monotonic()
    app = stack.app("postgres", private_postgres.url)
    running.append(app)
    app.migrate()
    app.start()
    senders = {lang: f"pg-{lang}" for lang in PG_CLIENTS}

    async def run() -> tuple[Load, float, float]:
        load = Load()
        stop = asyncio.Event()
        async with httpx.AsyncClient(base_url=app.url, timeout=30) as client:
            tasks = [
                asyncio.create_task(converse(client, load, senders[lang], texts, stop, language=lang))
                for lang, texts in PG_CLIENTS.items()
            ]
            await load.wait_until(lambda: len(load.ok()) >= 8, within=60)
            stopped_at = time.monotonic()
            await asyncio.to_thread(private_postgres.stop, "fast")
            await asyncio.sleep(2.0)  # an outage long enough that every client writes into it
            await asyncio.to_thread(private_postgres.start)
            restarted_at = time.monotonic()
            # then until every client has been answered three times after the restart
            await load.wait_until(
                lambda: all(
                    len([e for e in load.ok(s) if e.started > restarted_at]) >= 3 for s in senders.values()
                ),
                within=30,
            )
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
        return load, stopped_at, restarted_at

    load, stopped_at, restarted_at = asyncio.run(run())
    statuses = [e.status for e in load.exchanges]
    assert 500 not in statuses and set(statuses) <= {200, 503}, sorted(set(map(str, statuses)))
    refused = [e for e in load.exchanges if e.status == 503]
    assert refused, "the outage must be met by requests"
    for exchange in refused:
        lang = exchange.sender.removeprefix("pg-")
        assert [lotse(r)["key"] for r in exchange.replies] == ["storage.unavailable"], exchange.replies
        assert exchange.replies[0]["text"] == authored(lang, "storage.unavailable"), exchange.replies
        # only while the server was down (or just restarting), never long after it is back
        assert stopped_at - 1 < exchange.started < restarted_at + 3, exchange.started - restarted_at
    for lang, sender in senders.items():
        after = [e for e in load.ok(sender) if e.started > restarted_at]
        assert len(after) >= 3, (lang, len(after))
        for exchange in after:
            keys = [lotse(r).get("key") for r in exchange.replies]
            assert not FAILURE_KEYS & set(keys), (lang, keys)
    assert_answered_messages_stored(load, private_postgres.url)
    health = httpx.get(f"{app.url}/health", timeout=10).json()
    assert health["database"]["state"] == "up", health
    recovered = min(e.finished for e in load.ok() if e.started > restarted_at) - restarted_at
    late = [e for e in refused if e.started > restarted_at]
    log.info(
        f"postgres test: {len(load.exchanges)} sent, {len(refused)} got retry-later during the "
        f"{restarted_at - stopped_at:.1f} s outage ({len(late)} sent after the restart), first answer "
        f"{recovered:.2f} s after the restart; whole test {time.monotonic() - started:.1f} s"
    )


# ---------------------------------------------------------------------------------------------------
# The engine killed and restarted (last: it restarts the module's engine)

ENGINE_DOWN_CLIENTS = {
    "de": "Was kostet der Integrationskurs? Ich wohne in Paderborn.",
    "uk": "Які документи потрібні для визнання диплома?",
    "ar": "كيف أحصل على Bildungsgutschein من الجوب سنتر؟",
    "fa": "برای دوره ادغام چطور ثبت نام کنم؟",
}


def test_engine_killed_then_restarted_gives_unavailable_then_normal_answers(
    stack: FaultStack, running: list[AppProcess]
) -> None:
    started = time.monotonic()
    database_url = f"sqlite:///{stack.tmp / 'engine-down.db'}"
    app = stack.app("engine-down", database_url)
    running.append(app)
    app.migrate()
    app.start()

    # one client already talking before the crash keeps their language through it
    known = send(app, "engine-known", "Які документи потрібні для визнання диплома?")
    assert lotse(known[0])["language"] == "uk" and lotse(known[0])["key"] not in FAILURE_KEYS

    stack.engine.kill()
    killed_at = time.monotonic()
    health = httpx.get(f"{app.url}/health", timeout=10).json()
    assert health["engine"]["state"] == "down" and health["status"] == "degraded", health
    assert health["database"]["state"] == "up", health

    down_seconds = []
    cases = [*ENGINE_DOWN_CLIENTS.items(), ("uk", "Дякую! А скільки коштує інтеграційний курс?")]
    senders = [*(f"engine-{lang}" for lang in ENGINE_DOWN_CLIENTS), "engine-known"]
    for sender, (lang, message) in zip(senders, cases, strict=True):
        sent = time.monotonic()
        replies = send(app, sender, message)
        down_seconds.append(time.monotonic() - sent)
        assert lotse(replies[0])["key"] == "engine.unavailable", replies
        assert lotse(replies[0])["language"] == lang, replies
        assert replies[0]["text"] == authored(lang, "engine.unavailable"), replies
        stored = stored_messages(database_url, [sender])[sender]
        assert [m["text"] for m in stored if m["direction"] == "in"][-1] == message, "the message is kept"
        assert stored[-1]["key"] == "engine.unavailable"
    assert max(down_seconds) < 5, down_seconds

    stack.engine.start()
    back_at = time.monotonic()
    health = httpx.get(f"{app.url}/health", timeout=10).json()
    assert health["engine"]["state"] == "up" and health["status"] == "ok", health
    for sender, (lang, message) in zip(senders, cases, strict=True):
        replies = send(app, sender, message)
        keys = [lotse(r).get("key") for r in replies]
        assert keys[0] and keys[0].startswith("answer."), (lang, keys)
        assert lotse(replies[0])["language"] == lang, replies
    log.info(
        f"engine test: unavailable replies in at most {max(down_seconds):.2f} s; engine back after "
        f"{back_at - killed_at:.1f} s; whole test {time.monotonic() - started:.1f} s"
    )
