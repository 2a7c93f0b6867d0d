"""`make bench`: bot-turn latency through the app beside the same turns sent straight to the engine.

Two stacks of real processes on loopback, one after the other:

1. as ``make run`` starts it (engine with its SQLite tracker store, app on SQLite): closed-loop load at
   1, 10 and 50 concurrent conversations straight to the engine's REST channel, through the app's
   REST channel and through the app's socket.io channel (Rasa's protocol, python-socketio's client),
   in the same run (each level 30 s per target, and at least 1.2 s per conversation: 60 s at 50, split
   into BENCH_ROUNDS rounds (3) in which the three targets take turns, so that they share the machine's
   slow spells; the level's figures take the rounds' turns together); then open-loop load
   (Poisson arrivals at fixed rates, 30 s each) straight to the engine and through the app,
   interleaved rate by rate so that both see the same machine, until p95 passes one second;
2. the production mode (engine trackers in PostgreSQL, conversation locks in Redis, app on PostgreSQL
   with socket.io through Redis), once with one engine worker and once with two (``SANIC_WORKERS``,
   which Rasa allows with the Redis lock store): the same open-loop sweep through the app.

Reported: p50/p95/p99 per level and rate, the app's overhead as a ratio, the highest rate whose p95
stays under 500 ms, sustained throughput until p95 passes one second, resident memory (RSS) of engine
and app at rest and under load, training time and start-up time to the first answer. Every loop is
bounded in time and count. Results: docs/bench/results.json and two charts beside it.

Needs PostgreSQL on 127.0.0.1:5432 (trust authentication; LOTSE_BENCH_POSTGRES_URL) and Redis on
127.0.0.1:6379 for the second stack, as the tests do. LOTSE_BENCH_MODEL pins a model file; by default
the current one is used (trained first if the training data changed). BENCH_SECONDS and
BENCH_RATE_SECONDS shorten or lengthen each closed-loop level and open-loop rate.

Two more stages measure appointments:

3. ``bookings``: on a fresh SQLite stack, 1, 5 and 10 concurrent simulated clients each run the whole
   booking dialogue through the app's REST channel (opening in their language, topic, town, age,
   language, Jobcenter when asked, the first offered time, consent, reminders yes or no, contact
   skipped, confirmation), one booking after another for BENCH_BOOKING_SECONDS per level. A booking
   counts only with its appointment row in the app's database (checked after the stage). Reported:
   bookings per second, turns per booking, p50/p95 of the whole dialogue and of one turn.
4. ``reminders``: one app process with its scheduler on and no engine, once on SQLite and once on
   PostgreSQL; BENCH_REMINDERS (300) reminder rows and jobs are created by BookingService in this process
   against the app's database (the jobs go into the shared SQLAlchemy job store that the app's scheduler
   polls), due at random times 20-60 s ahead. Reported: how late the app sent them (sent_at - due_at:
   median, p95, worst), how many were missed or lost, and the errors in the app's log.

Both run against a copy of content/ in which every service is open around the clock (LOTSE_CONTENT_DIR),
so they do not depend on the time of day and do not run out of free slots; content/ is not changed.
BENCH_STAGES (comma list of turns, production, bookings, reminders; default all) runs some stages
alone; the results of the stages not run are kept from docs/bench/results.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import socketio
import yaml

from bot import LANGUAGES
from bot.settings import ROOT
from bot.training import CONFIG, engine_command, engine_env, train

OUT = Path(os.environ.get("LOTSE_BENCH_OUT") or ROOT / "docs" / "bench")
LEVELS = (1, 10, 50)
SECONDS_PER_RUN = float(os.environ.get("BENCH_SECONDS", "30"))
ROUNDS = max(1, int(os.environ.get("BENCH_ROUNDS", "3")))
"""A closed-loop level runs in this many rounds, the targets taking turns in each (see _closed_loops)."""
SECONDS_PER_CONVERSATION = 1.2
"""A closed-loop level runs at least this long per conversation (50 conversations: 60 s), so that every
conversation takes several turns at the engine's ~7 turns/s and p95 is not the opening burst alone."""
SECONDS_PER_RATE = float(os.environ.get("BENCH_RATE_SECONDS", "30"))
MAX_REQUESTS_PER_RUN = 5000
TURNS_PER_CONVERSATION = 8
"""A conversation ends after this many turns and a new one starts: real ones are short, and the
engine reads a conversation's whole tracker on every turn."""
MAX_IN_FLIGHT = 400
"""Open loop: arrivals beyond this many unanswered requests are shed and counted as errors."""
DRAIN_SECONDS = 30.0
TURN_TIMEOUT = 30.0
TARGET_P95_MS = 500.0
SATURATED_P95_MS = 1000.0
MAX_RATE = 60.0
QUESTION_INTENTS = ("ask_language_course", "ask_recognition", "ask_qualification", "greet", "thanks")
ERROR_KEYS = frozenset({"engine.unavailable", "error.generic", "storage.unavailable"})
"""Apologies the app answers with when something behind it failed: errors, although HTTP 200."""
PRODUCTION_ENDPOINTS = CONFIG / "endpoints.production.yml"
STAGES = ("turns", "production", "bookings", "reminders")
"""``turns``: stack 1 (closed and open loop); ``production``: stack 2 with one and two engine workers."""
BOOKING_LEVELS = (1, 5, 10)
SECONDS_PER_BOOKING_LEVEL = float(os.environ.get("BENCH_BOOKING_SECONDS", "40"))
MAX_BOOKINGS_PER_LEVEL = 200
MAX_TURNS_PER_BOOKING = 30
"""A dialogue that needs more turns than this (about three times the usual) counts as failed."""
BOOKING_TIMEOUT = 180.0
REMINDER_COUNT = int(os.environ.get("BENCH_REMINDERS", "300"))
REMINDER_WINDOW = (20.0, 60.0)
"""Reminders fall due at random times this many seconds after they were put into the job store."""
REMINDER_GRACE = 60.0
"""How long after the last due time the stage waits before counting unsent reminders as lost."""


@dataclass
class Run:
    """One closed-loop level against one target."""

    target: str
    concurrency: int
    requests: int
    errors: int
    seconds: float
    throughput: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    round_p95_ms: list[float] = field(default_factory=list)
    """p95 of each round alone (the level's figures above take all rounds' turns together)."""
    steady_p95_ms: float = float("nan")
    """p95 without each round's opening turns (every conversation slot's first, sent in one instant)."""
    opening_max_ms: float = float("nan")
    """The slowest of those opening turns."""


@dataclass
class RateRun:
    """One open-loop rate against one target."""

    target: str
    rate: float
    sent: int
    completed: int
    errors: int
    seconds: float
    throughput: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


@dataclass
class Sweep:
    """Open-loop rates against one target until p95 passes one second."""

    target: str
    runs: list[RateRun] = field(default_factory=list)

    @property
    def max_rate_under_target(self) -> float:
        """The highest rate whose p95 stays under 500 ms, every lower rate passing too."""
        best = 0.0
        for run in self.runs:
            if run.p95_ms >= TARGET_P95_MS or run.errors:
                break
            best = run.rate
        return best

    @property
    def sustained_throughput(self) -> float:
        """Answered turns per second at the highest rate whose p95 stays under one second."""
        best = 0.0
        for run in self.runs:
            if run.p95_ms > SATURATED_P95_MS or run.errors:
                break
            best = max(best, run.throughput)
        return best


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, in MB (Linux /proc)."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return round(total / 1024, 1)


class PeakMemory:
    """Samples the RSS of some processes twice a second and keeps the highest value of each."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.peak = {name: 0.0 for name in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], _rss_mb(pid))

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return round(ordered[index] * 1000, 1)


def client_messages() -> list[str]:
    """Realistic client messages in every language (held-out examples, never trained on)."""
    texts: list[str] = []
    for lang in LANGUAGES:
        data = yaml.safe_load((ROOT / "nlu_data" / "heldout" / f"{lang}.yml").read_text(encoding="utf-8"))
        for intent in QUESTION_INTENTS:
            texts += [str(t) for t in data["intents"].get(intent, [])]
    random.Random(7).shuffle(texts)
    return texts


def answered(replies: Any) -> bool:
    """A real answer: a non-empty list of replies, none of them an apology for a failure behind the app."""
    if not isinstance(replies, list) or not replies:
        return False
    for reply in replies:
        key = ((reply.get("custom") or {}).get("lotse") or {}).get("key") if isinstance(reply, dict) else None
        if key in ERROR_KEYS:
            return False
    return True


Sender = Callable[[str, str], Awaitable[bool]]
"""Sends one message of one conversation; True when it was answered properly."""


def _rest_sender(http: httpx.AsyncClient, url: str) -> Sender:
    """Sends through a REST channel (the engine's or the app's: the same shape)."""

    async def send(sender: str, text: str) -> bool:
        try:
            response = await http.post(url, json={"sender": sender, "message": text})
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and answered(response.json())

    return send


def _limits(connections: int) -> httpx.Limits:
    return httpx.Limits(max_connections=connections, max_keepalive_connections=connections)


@dataclass
class Round:
    """One round of a closed-loop level against one target: its raw latencies."""

    latencies: list[float]
    errors: int
    seconds: float
    opening: list[float] = field(default_factory=list)
    """The first turn of each conversation slot (all slots open in the same instant); also in latencies."""


async def _closed_loop_rest(
    url: str, concurrency: int, messages: list[str], label: str, seconds: float
) -> Round:
    latencies: list[float] = []
    opening: list[float] = []
    errors = 0
    budget = MAX_REQUESTS_PER_RUN
    async with httpx.AsyncClient(timeout=TURN_TIMEOUT, limits=_limits(concurrency)) as http:
        send = _rest_sender(http, url)

        async def worker(index: int, deadline: float) -> None:
            nonlocal errors, budget
            turn = 0
            sender = ""
            while time.monotonic() < deadline and budget > 0:
                budget -= 1
                if turn % TURNS_PER_CONVERSATION == 0:
                    sender = f"bench-{label}-{concurrency}-{index}-{uuid.uuid4().hex[:12]}"
                text = messages[(index * 31 + turn) % len(messages)]
                turn += 1
                started = time.perf_counter()
                if not await send(sender, text):
                    errors += 1
                latencies.append(time.perf_counter() - started)
                if turn == 1:
                    opening.append(latencies[-1])

        started = time.monotonic()
        deadline = started + seconds
        await asyncio.gather(*(worker(i, deadline) for i in range(concurrency)))
        took = time.monotonic() - started
    return Round(latencies, errors, took, opening)


def _level_seconds(concurrency: int) -> float:
    """How long one closed-loop level runs per target, all its rounds together."""
    return max(SECONDS_PER_RUN, concurrency * SECONDS_PER_CONVERSATION)


def _run(label: str, concurrency: int, rounds: list[Round]) -> Run:
    """A level's figures from its rounds' latencies taken together."""
    latencies = [x for r in rounds for x in r.latencies]
    opening = [x for r in rounds for x in r.opening]
    steady = list((Counter(latencies) - Counter(opening)).elements())
    seconds = sum(r.seconds for r in rounds)
    return Run(
        target=label,
        concurrency=concurrency,
        requests=len(latencies),
        errors=sum(r.errors for r in rounds),
        seconds=round(seconds, 1),
        throughput=round(len(latencies) / seconds, 1),
        p50_ms=_percentile(latencies, 0.50),
        p95_ms=_percentile(latencies, 0.95),
        p99_ms=_percentile(latencies, 0.99),
        round_p95_ms=[_percentile(r.latencies, 0.95) for r in rounds],
        steady_p95_ms=_percentile(steady, 0.95),
        opening_max_ms=_percentile(opening, 1.0),
    )


class WidgetTab:
    """One widget client speaking Rasa's socket.io protocol, as the web chat widget does."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sio = socketio.AsyncClient(reconnection=False)
        self.replies: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()
        self.confirmed = asyncio.Event()
        self.sio.on("session_confirm", self._confirm)
        self.sio.on("bot_uttered", self._reply)

    async def _confirm(self, _session: str) -> None:
        self.confirmed.set()

    async def _reply(self, data: dict[str, Any]) -> None:
        self.replies.put_nowait((time.perf_counter(), data))

    async def connect(self) -> None:
        """Open the websocket."""
        await self.sio.connect(
            self.url, transports=["websocket"], headers={"Origin": self.url}, wait_timeout=TURN_TIMEOUT
        )

    async def new_session(self) -> str:
        """Start a new conversation (a new browser session id)."""
        session = uuid.uuid4().hex
        self.confirmed.clear()
        await self.sio.emit("session_request", {"session_id": session})
        await asyncio.wait_for(self.confirmed.wait(), TURN_TIMEOUT)
        return session

    async def turn(self, session: str, text: str) -> tuple[float, bool]:
        """Send one message; the seconds to the first reply and whether it was a proper answer."""
        while not self.replies.empty():  # late replies of an earlier turn
            self.replies.get_nowait()
        started = time.perf_counter()
        await self.sio.emit("user_uttered", {"message": text, "session_id": session})
        try:
            arrived, first = await asyncio.wait_for(self.replies.get(), TURN_TIMEOUT)
        except TimeoutError:
            return TURN_TIMEOUT, False
        ok = (first.get("metadata") or {}).get("lotse", {}).get("key") not in ERROR_KEYS
        # The app emits all replies of a turn together: let the rest arrive before the next message,
        # so they are not taken for the next turn's answer. This wait is not part of the latency.
        while True:
            try:
                _, more = await asyncio.wait_for(self.replies.get(), 0.03)
            except TimeoutError:
                break
            ok = ok and (more.get("metadata") or {}).get("lotse", {}).get("key") not in ERROR_KEYS
        return arrived - started, ok

    async def close(self) -> None:
        """Close the websocket."""
        await self.sio.disconnect()


async def _closed_loop_socketio(
    url: str, concurrency: int, messages: list[str], label: str, seconds: float
) -> Round:
    latencies: list[float] = []
    opening: list[float] = []
    errors = 0
    budget = MAX_REQUESTS_PER_RUN
    tabs = [WidgetTab(url) for _ in range(concurrency)]
    await asyncio.gather(*(tab.connect() for tab in tabs))
    try:

        async def worker(index: int, deadline: float) -> None:
            nonlocal errors, budget
            tab = tabs[index]
            turn = 0
            session = ""
            while time.monotonic() < deadline and budget > 0:
                budget -= 1
                if turn % TURNS_PER_CONVERSATION == 0:
                    session = await tab.new_session()
                text = messages[(index * 31 + turn) % len(messages)]
                turn += 1
                seconds, ok = await tab.turn(session, text)
                errors += not ok
                latencies.append(seconds)
                if turn == 1:
                    opening.append(seconds)

        started = time.monotonic()
        deadline = started + seconds
        await asyncio.gather(*(worker(i, deadline) for i in range(concurrency)))
        took = time.monotonic() - started
    finally:
        await asyncio.gather(*(tab.close() for tab in tabs), return_exceptions=True)
    return Round(latencies, errors, took, opening)


async def _open_loop(url: str, rate: float, messages: list[str], label: str) -> RateRun:
    """Poisson arrivals at ``rate`` per second for SECONDS_PER_RATE; latency counts from the arrival."""
    # Exactly rate x seconds arrivals at uniformly random times: a Poisson process given its count, so
    # bursts are as in real traffic but a short run offers the rate it is labelled with.
    rng = random.Random(int(rate * 100))  # the same arrivals for every target at a given rate
    arrivals = sorted(rng.uniform(0, SECONDS_PER_RATE) for _ in range(round(rate * SECONDS_PER_RATE)))
    idle: deque[tuple[str, int]] = deque()
    latencies: list[float] = []
    errors = 0
    last_done = 0.0
    in_flight: set[asyncio.Task[None]] = set()
    async with httpx.AsyncClient(timeout=TURN_TIMEOUT, limits=_limits(MAX_IN_FLIGHT)) as http:
        send = _rest_sender(http, url)
        start = time.perf_counter()

        async def one(arrival: float, sender: str, turn: int) -> None:
            nonlocal errors, last_done
            ok = await send(sender, messages[(zlib.crc32(sender.encode()) + turn) % len(messages)])
            done = time.perf_counter()
            last_done = max(last_done, done)
            latencies.append(done - (start + arrival))
            errors += not ok
            if turn + 1 < TURNS_PER_CONVERSATION:
                idle.append((sender, turn + 1))

        for arrival in arrivals:
            delay = start + arrival - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(in_flight) >= MAX_IN_FLIGHT:
                errors += 1
                continue
            # A conversation is never asked twice at once: a client waits for the answer.
            sender, turn = idle.popleft() if idle else (f"open-{label}-{uuid.uuid4().hex[:12]}", 0)
            task = asyncio.create_task(one(arrival, sender, turn))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            _done, pending = await asyncio.wait(set(in_flight), timeout=DRAIN_SECONDS)
            for task in pending:
                task.cancel()
                errors += 1
    seconds = max(SECONDS_PER_RATE, last_done - start)
    return RateRun(
        target=label,
        rate=rate,
        sent=len(arrivals),
        completed=len(latencies),
        errors=errors,
        seconds=round(seconds, 1),
        throughput=round(len(latencies) / seconds, 1),
        p50_ms=_percentile(latencies, 0.50),
        p95_ms=_percentile(latencies, 0.95),
        p99_ms=_percentile(latencies, 0.99),
    )


def _rates() -> Iterator[float]:
    """One more turn per second up to 10, then two more: one engine worker answers about 10 turns per
    second, and a queue in front of one server passes 500 ms at p95 well before that."""
    yield from (2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0)
    rate = 12.0
    while rate <= MAX_RATE:
        yield rate
        rate += 2.0


REFINE_STEPS = int(os.environ.get("BENCH_REFINE_STEPS", "2"))
"""Bisection steps between the last rate under 500 ms and the first above it (2: to a quarter step)."""


def _sweeps(targets: list[tuple[str, str]], messages: list[str]) -> list[Sweep]:
    """Open-loop sweeps of several (url, label) targets, interleaved rate by rate so that they see the
    same machine: rate after rate until a target's p95 passes one second (or errors appear, or
    MAX_RATE); then each knee is narrowed by bisection, again target after target, so that a ratio of
    two targets' highest rates is not one whole step coarse."""
    sweeps = [Sweep(target=label) for _url, label in targets]

    def measure(index: int, rate: float) -> RateRun:
        url, label = targets[index]
        sweep = sweeps[index]
        run = asyncio.run(_open_loop(url, rate, messages, label))
        sweep.runs.append(run)
        sweep.runs.sort(key=lambda r: r.rate)
        print(
            f"  open loop {label:22s} {rate:5.2f}/s: p95 {run.p95_ms:7.1f} ms, "
            f"{run.throughput:5.1f} turns/s, {run.errors} errors",
            flush=True,
        )
        time.sleep(1)  # let the last answers settle before the next rate
        return run

    active = set(range(len(targets)))
    for rate in _rates():
        if not active:
            break
        for index in sorted(active):
            run = measure(index, rate)
            if run.p95_ms > SATURATED_P95_MS or run.errors:
                active.discard(index)
    bounds: dict[int, tuple[float, float]] = {}
    for index, sweep in enumerate(sweeps):
        low = sweep.max_rate_under_target
        above = [r.rate for r in sweep.runs if r.rate > low]
        if low and above:
            bounds[index] = (low, min(above))
    for _ in range(REFINE_STEPS):
        for index, (low, high) in sorted(bounds.items()):
            middle = round((low + high) / 2, 2)
            run = measure(index, middle)
            bounds[index] = (middle, high) if run.p95_ms < TARGET_P95_MS and not run.errors else (low, middle)
    return sweeps


def _wait(url: str, check: str, timeout: float, process: subprocess.Popen[bytes], log: Path) -> None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise SystemExit(f"a process exited early; see {log}:\n{log.read_text(errors='replace')[-2000:]}")
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200 and check in response.text:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} did not become ready within {timeout:.0f} s; see {log}")


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_ticks_tree(pid: int) -> int:
    """CPU ticks used so far by a process and its direct children (Sanic workers)."""
    try:
        children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        children = []
    return sum(_cpu_ticks(p) for p in [pid, *children])


def _wait_idle(pid: int, *, deadline: float) -> None:
    """Wait until a process and its children (Sanic workers) use no CPU for two seconds."""
    while time.monotonic() < deadline:
        try:
            children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            children = []
        before = [_cpu_ticks(p) for p in [pid, *children]]
        time.sleep(2)
        after = [_cpu_ticks(p) for p in [pid, *children]]
        if all(b - a <= 5 for a, b in zip(before, after, strict=True)):  # at most 50 ms of CPU
            return
    raise SystemExit("the engine's workers did not settle (still loading the model?)")


class Stack:
    """An engine (one or more Sanic workers) and the app in front of it, as separate processes."""

    def __init__(
        self,
        *,
        name: str,
        model: Path,
        workdir: Path,
        env: dict[str, str],
        endpoints: Path | None = None,
        workers: int = 1,
    ) -> None:
        self.name = name
        self.model = model
        self.app_port, self.engine_port = _free_port(), _free_port()
        self.endpoints = endpoints
        self.workers = workers
        self.env = engine_env()
        self.env.update(
            {
                "APP_PORT": str(self.app_port),
                "ENGINE_PORT": str(self.engine_port),
                "LOTSE_ENGINE_URL": f"http://127.0.0.1:{self.engine_port}",
                "LOTSE_ACTION_ENDPOINT": f"http://127.0.0.1:{self.app_port}/webhook",
                "LOTSE_PUBLIC_URL": f"http://127.0.0.1:{self.app_port}",
                "LOTSE_SCHEDULER": "off",
                "SANIC_WORKERS": str(workers),
                **env,
            }
        )
        self.logs = workdir / f"{name}-engine.log", workdir / f"{name}-app.log"
        self.engine: subprocess.Popen[bytes] | None = None
        self.app: subprocess.Popen[bytes] | None = None
        self.startup_seconds = 0.0
        self.rss_at_rest: dict[str, float] = {}

    @property
    def app_url(self) -> str:
        """The app's base URL."""
        return f"http://127.0.0.1:{self.app_port}"

    @property
    def engine_url(self) -> str:
        """The engine's base URL."""
        return f"http://127.0.0.1:{self.engine_port}"

    def start(self) -> Stack:
        """Start both, wait for every engine worker and the first answer through the app."""
        subprocess.run(
            [sys.executable, "-m", "bot", "db-upgrade"], env=self.env, check=True, capture_output=True
        )
        started = time.monotonic()
        self.engine = subprocess.Popen(
            engine_command(self.model, self.engine_port, endpoints=self.endpoints),
            env=self.env,
            stdout=self.logs[0].open("wb"),
            stderr=subprocess.STDOUT,
        )
        self.app = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve"],
            env=self.env,
            stdout=self.logs[1].open("wb"),
            stderr=subprocess.STDOUT,
        )
        _wait(f"{self.app_url}/health", '"state":"up","url"', 600, self.engine, self.logs[0])
        first = httpx.post(
            f"{self.app_url}/webhooks/rest/webhook", json={"sender": "first", "message": "Hallo"}, timeout=60
        )
        first.raise_for_status()
        self.startup_seconds = round(time.monotonic() - started, 1)
        self.rss_at_rest = self.rss()  # started and answered once; before the warm-up's turns
        # Each Sanic worker loads the model on its own and accepts connections only once it has it;
        # the first one answering says nothing of the others. A worker is ready when it is idle.
        _wait_idle(self.engine.pid, deadline=time.monotonic() + 600)
        asyncio.run(self._warm_up())
        return self

    async def _warm_up(self) -> None:
        """A few turns before measuring: the first ones of each engine worker (TensorFlow) and of the
        app (connection pools) are slow. New connections each time, so every worker gets some."""
        messages = client_messages()
        limits = httpx.Limits(max_connections=4, max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=TURN_TIMEOUT, limits=limits) as http:
            for url, turns in ((self.engine_url, 8 * self.workers), (self.app_url, 12)):
                send = _rest_sender(http, f"{url}/webhooks/rest/webhook")
                for start in range(0, turns, 4):
                    await asyncio.gather(
                        *(
                            send(f"warm-up-{uuid.uuid4().hex[:12]}", messages[i])
                            for i in range(start, start + 4)
                        )
                    )

    def rss(self) -> dict[str, float]:
        """Resident memory of engine (with its workers) and app, in MB."""
        assert self.engine is not None and self.app is not None
        return {"engine": _rss_mb(self.engine.pid), "app": _rss_mb(self.app.pid)}

    def peak(self) -> PeakMemory:
        """A sampler of both processes' memory while a load runs."""
        assert self.engine is not None and self.app is not None
        return PeakMemory({"engine": self.engine.pid, "app": self.app.pid})

    def stop(self) -> None:
        """Terminate both (kill after a grace period)."""
        for process in (self.app, self.engine):
            if process is not None and process.poll() is None:
                process.terminate()
        for process in (self.app, self.engine):
            if process is None:
                continue
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@contextmanager
def _postgres_databases(*names: str) -> Iterator[list[str]]:
    """Fresh databases on the machine's PostgreSQL server, dropped afterwards."""
    from sqlalchemy import create_engine, text

    admin_url = os.environ.get(
        "LOTSE_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    suffix = uuid.uuid4().hex[:8]
    created = [f"lotse_bench_{name}_{suffix}" for name in names]
    with admin.connect() as connection:
        for database in created:
            connection.execute(text(f'CREATE DATABASE "{database}"'))
    try:
        yield [admin_url.rsplit("/", 1)[0] + f"/{database}" for database in created]
    finally:
        with admin.connect() as connection:
            for database in created:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


def _production_env(app_db: str, tracker_db: str) -> dict[str, str]:
    """What endpoints.production.yml and the app read in the production mode, on loopback."""
    from sqlalchemy.engine import make_url

    tracker = make_url(tracker_db)
    redis_host = os.environ.get("LOTSE_BENCH_REDIS_HOST", "127.0.0.1")
    return {
        "LOTSE_DATABASE_URL": app_db,
        "LOTSE_TRACKER_URL": tracker_db,
        "LOTSE_TRACKER_HOST": tracker.host or "127.0.0.1",
        "LOTSE_TRACKER_PORT": str(tracker.port or 5432),
        "LOTSE_TRACKER_DB": tracker.database or "",
        "LOTSE_TRACKER_USER": tracker.username or "postgres",
        "LOTSE_TRACKER_PASSWORD": tracker.password or "",
        "LOTSE_REDIS_HOST": redis_host,
        "LOTSE_REDIS_PORT": "6379",
        "LOTSE_REDIS_URL": f"redis://{redis_host}:6379/0",
    }


def _model() -> Path:
    # LOTSE_BENCH_MODEL pins a model (as LOTSE_TEST_MODEL does for the tests); else the current one.
    pinned = os.environ.get("LOTSE_BENCH_MODEL")
    return Path(pinned) if pinned else train()


def _training_seconds(model: Path) -> float | None:
    record = model.with_name(model.name + ".seconds")
    try:
        return float(record.read_text().strip())
    except (OSError, ValueError):
        return None


def _closed_loops(stack: Stack, levels: tuple[int, ...], messages: list[str], suffix: str = "") -> list[Run]:
    """Each level straight to the engine, through the app's REST channel and through socket.io.

    A level is split into ROUNDS rounds; in each round the three targets take their turn one after the
    other, the order rotated from round to round. Slow spells of the machine (they last seconds to
    minutes here) so fall on all three alike instead of on whichever target ran then, and the level's
    figures take all rounds' turns of a target together. At one conversation the targets take turns
    message by message (``_single_interleaved``): a slow spell of a few seconds then touches all three."""
    engine_rest, app_rest = (
        f"{stack.engine_url}/webhooks/rest/webhook",
        f"{stack.app_url}/webhooks/rest/webhook",
    )
    targets: list[tuple[str, Callable[[int, float], Coroutine[Any, Any, Round]]]] = [
        (f"engine{suffix}", lambda level, s: _closed_loop_rest(engine_rest, level, messages, "engine", s)),
        (f"app{suffix}", lambda level, s: _closed_loop_rest(app_rest, level, messages, "app", s)),
        (
            f"app-socketio{suffix}",
            lambda level, s: _closed_loop_socketio(stack.app_url, level, messages, "socketio", s),
        ),
    ]
    runs: list[Run] = []
    labels = [label for label, _ in targets]
    for level in levels:
        seconds = _level_seconds(level) / ROUNDS
        rounds: dict[str, list[Round]] = {label: [] for label in labels}
        for index in range(ROUNDS):
            if level == 1:
                # One conversation each: the targets take turns message by message, not round by round.
                taken = asyncio.run(
                    _single_interleaved(
                        stack.app_url, (engine_rest, app_rest), messages, labels, seconds * len(labels)
                    )
                )
                for label in labels:
                    rounds[label].append(taken[label])
                continue
            shift = index % len(targets)
            for label, measure in targets[shift:] + targets[:shift]:
                rounds[label].append(asyncio.run(measure(level, seconds)))
        for label, _ in targets:
            run = _run(label, level, rounds[label])
            runs.append(run)
            print(
                f"  closed loop {run.target:24s} x{level:<3d} p95 {run.p95_ms:7.1f} ms "
                f"(rounds {', '.join(f'{p:.0f}' for p in run.round_p95_ms)}; without the openings "
                f"{run.steady_p95_ms:.0f}, slowest opening {run.opening_max_ms:.0f}), "
                f"{run.throughput:5.1f} turns/s, {run.errors} errors",
                flush=True,
            )
    return runs


async def _single_interleaved(
    app_url: str, rest_urls: tuple[str, str], messages: list[str], labels: list[str], seconds: float
) -> dict[str, Round]:
    """One conversation per target (engine REST, app REST, app socket.io, as ``labels`` name them), the
    same message sent to each in turn, the order rotated from message to message."""
    engine_rest, app_rest = rest_urls
    latencies: dict[str, list[float]] = {label: [] for label in labels}
    errors = dict.fromkeys(labels, 0)
    tab = WidgetTab(app_url)
    await tab.connect()
    started = time.monotonic()
    try:
        async with httpx.AsyncClient(timeout=TURN_TIMEOUT, limits=_limits(2)) as http:
            senders = {labels[0]: _rest_sender(http, engine_rest), labels[1]: _rest_sender(http, app_rest)}
            deadline, turn, ids, session = started + seconds, 0, {}, ""
            while time.monotonic() < deadline and turn < MAX_REQUESTS_PER_RUN:
                if turn % TURNS_PER_CONVERSATION == 0:
                    ids = {label: f"bench-{label}-1-{uuid.uuid4().hex[:12]}" for label in labels[:2]}
                    session = await tab.new_session()
                text = messages[turn % len(messages)]
                shift = turn % len(labels)
                for label in labels[shift:] + labels[:shift]:
                    if label in senders:
                        begun = time.perf_counter()
                        ok = await senders[label](ids[label], text)
                        took = time.perf_counter() - begun
                    else:
                        took, ok = await tab.turn(session, text)
                    latencies[label].append(took)
                    errors[label] += not ok
                turn += 1
    finally:
        await tab.close()
    return {
        label: Round(latencies[label], errors[label], sum(latencies[label]), latencies[label][:1])
        for label in labels
    }


def _default_stage(
    model: Path, workdir: Path, messages: list[str]
) -> tuple[dict[str, Any], list[Run], list[Sweep]]:
    """Stack 1, as `make run` starts it: closed loops, then open-loop sweeps to the engine and the app."""
    print("stack 1: engine (SQLite tracker store) and app (SQLite), as `make run` starts them", flush=True)
    stack = Stack(
        name="default",
        model=model,
        workdir=workdir,
        env={
            "LOTSE_DATABASE_URL": f"sqlite:///{workdir / 'bench.db'}",
            "LOTSE_TRACKER_DB": str(workdir / "tracker.db"),
            "LOTSE_TRACKER_URL": f"sqlite:///{workdir / 'tracker.db'}",
        },
    )
    try:
        stack.start()
        figures: dict[str, Any] = {
            "startup_to_first_answer_s": stack.startup_seconds,
            "rss_mb_at_rest": stack.rss_at_rest,
        }
        with stack.peak() as peak:
            runs = _closed_loops(stack, LEVELS, messages)
            sweeps = _sweeps(
                [
                    (f"{stack.engine_url}/webhooks/rest/webhook", "engine"),
                    (f"{stack.app_url}/webhooks/rest/webhook", "app"),
                ],
                messages,
            )
        figures["rss_mb_peak_under_load"] = peak.peak
        figures["rss_mb_after_load"] = stack.rss()
    finally:
        stack.stop()
    return figures, runs, sweeps


def _production_stage(
    model: Path, workdir: Path, messages: list[str], workers: int
) -> tuple[dict[str, Any], list[Run], Sweep]:
    """Stack 2 with one or two engine workers: the open-loop sweep through the app (and, with one
    worker, socket.io through the Redis manager beside REST at 10 conversations)."""
    print(f"stack 2: production mode with {workers} engine worker(s): PostgreSQL, Redis", flush=True)
    with _postgres_databases("app", "tracker") as (app_db, tracker_db):
        stack = Stack(
            name=f"production-{workers}",
            model=model,
            workdir=workdir,
            env=_production_env(app_db, tracker_db),
            endpoints=PRODUCTION_ENDPOINTS,
            workers=workers,
        )
        try:
            stack.start()
            label = f"app, production, {workers} engine worker{'s' if workers > 1 else ''}"
            with stack.peak() as peak:
                (sweep,) = _sweeps([(f"{stack.app_url}/webhooks/rest/webhook", label)], messages)
                runs = _closed_loops(stack, (10,), messages, suffix="-production") if workers == 1 else []
        finally:
            stack.stop()
    figures = {
        "startup_to_first_answer_s": stack.startup_seconds,
        "rss_mb_at_rest": stack.rss_at_rest,
        "rss_mb_peak_under_load": peak.peak,
        "max_rate_p95_under_500ms": sweep.max_rate_under_target,
        "sustained_throughput": sweep.sustained_throughput,
    }
    return figures, runs, sweep


# ---- appointments: a directory open around the clock -------------------------------------------------

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _always_open_content(workdir: Path) -> Path:
    """A copy of content/ in which every service is open every day from 00:00 to 23:55, without holidays
    or exceptions: the booking stages must not depend on the time of day nor run out of free slots.
    Slot lengths, capacities, towns, languages and the routing rules stay as authored."""
    from bot.directory import load_directory

    target = workdir / "content-always-open"
    if target.exists():
        return target
    shutil.copytree(ROOT / "content", target)
    path = target / "directory.yml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for service in data["services"].values():
        service["hours"] = [{"day": day, "from": "00:00", "to": "23:55"} for day in WEEKDAYS]
        service.pop("exceptions", None)
        service["closed_on_public_holidays"] = False
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    load_directory(target)  # the app validates it the same way at start-up
    return target


# ---- bookings through the whole stack -------------------------------------------------------------------


@dataclass(frozen=True)
class BookingProfile:
    """What one simulated client writes: an opening in their language, then the form's answers."""

    language: str
    opening: str
    topic: str
    town: str
    age: str


BOOKING_PROFILES = (
    BookingProfile("de", "ich brauche einen termin", "language_course", "ich wohne in bad wünnenberg", "34"),
    BookingProfile("en", "I want an appointment", "recognition", "Paderborn", "29"),
    BookingProfile("ar", "بدي موعد", "counselling", "بادربورن", "٤١"),
    BookingProfile("uk", "хочу записатися на консультацію", "recognition", "Я живу в Падерборні", "27"),
    BookingProfile("ru", "хочу записаться на консультацию", "qualification", "Дельбрюк", "45"),
    BookingProfile("tr", "randevu almak istiyorum", "language_course", "Salzkotten", "23"),
    BookingProfile("fa", "میشه وقت بگیرم؟", "counselling", "پادربورن", "۳۵"),
    BookingProfile("fr", "je voudrais un rendez-vous", "qualification", "Büren", "38"),
)
"""Eight clients, one per language: towns in their script, ages in their digits, every topic."""
ICS_LINK = re.compile(r"/appointments/([^/?\s]+)\.ics\?token=")


@dataclass
class BookingDialogue:
    """One client's booking dialogue from the first message to the confirmation (or where it stuck)."""

    booked: str | None
    turns: int
    seconds: float
    turn_seconds: list[float]
    slot_taken: int
    failure: str = ""


@dataclass
class BookingRun:
    """One concurrency level of the booking stage."""

    concurrency: int
    bookings: int
    failed: int
    seconds: float
    bookings_per_s: float
    turns_per_booking: float
    p50_ms: float
    p95_ms: float
    turn_p50_ms: float
    turn_p95_ms: float
    slot_taken: int
    """How often a chosen time had been taken by another client meanwhile (the form offers others)."""
    failures: list[str] = field(default_factory=list)
    cores: dict[str, float] = field(default_factory=dict)
    """CPU used by engine and app while the level ran, in cores (1.0 = one core busy all the time)."""


def _reply_key(reply: Any) -> str:
    if not isinstance(reply, dict):
        return ""
    return str(((reply.get("custom") or {}).get("lotse") or {}).get("key") or "")


def _button(replies: list[Any], fragment: str) -> str | None:
    """The payload of the first button whose payload contains ``fragment`` (as the client taps it)."""
    for reply in replies:
        for button in (reply.get("buttons") or []) if isinstance(reply, dict) else []:
            payload = str(button.get("payload", ""))
            if fragment in payload:
                return payload
    return None


def _next_message(replies: list[Any], profile: BookingProfile, reminders: bool) -> str | None:
    """The client's answer to the last question among the replies; None when nothing was asked."""
    for reply in reversed(replies):
        key = _reply_key(reply)
        if key == "booking.ask_topic":
            return _button([reply], f'"topic":"{profile.topic}"')
        if key == "booking.ask_town":
            return profile.town
        if key == "booking.ask_age":
            return profile.age
        if key == "booking.ask_language":
            return _button([reply], f'"language":"{profile.language}"') or _button([reply], '"language":')
        if key == "booking.ask_jobcenter":
            return _button([reply], '"jobcenter":"no"')
        if key == "booking.offer":
            return _button([reply], '"slot":')
        if key.startswith("consent.booking"):
            return _button([reply], "/consent_yes")
        if key.startswith("consent.reminders"):
            return _button([reply], "/consent_yes" if reminders else "/consent_no")
        if key == "booking.ask_contact":
            return _button([reply], '"contact":"skip"')
    return None


async def _book_once(
    http: httpx.AsyncClient, url: str, profile: BookingProfile, *, reminders: bool
) -> BookingDialogue:
    """Run the whole booking dialogue as one client; bounded in turns (and by BOOKING_TIMEOUT outside)."""
    sender = f"bench-booking-{profile.language}-{uuid.uuid4().hex[:12]}"
    turn_seconds: list[float] = []
    slot_taken = 0
    started = time.perf_counter()

    def result(booked: str | None, failure: str = "") -> BookingDialogue:
        return BookingDialogue(
            booked, len(turn_seconds), time.perf_counter() - started, turn_seconds, slot_taken, failure
        )

    text: str | None = profile.opening
    while text is not None and len(turn_seconds) < MAX_TURNS_PER_BOOKING:
        said = text
        sent = time.perf_counter()
        try:
            response = await http.post(
                url, json={"sender": sender, "message": text, "metadata": {"language": profile.language}}
            )
        except httpx.HTTPError as exc:
            return result(None, f"{profile.language}: {type(exc).__name__} after {said[:40]!r}")
        turn_seconds.append(time.perf_counter() - sent)
        replies = response.json() if response.status_code == 200 else None
        if not isinstance(replies, list):
            return result(None, f"{profile.language}: HTTP {response.status_code} after {said[:40]!r}")
        keys = [_reply_key(r) for r in replies]
        slot_taken += keys.count("booking.slot_taken")
        if "booking.confirmed" in keys:
            confirmed = replies[keys.index("booking.confirmed")]
            link = ICS_LINK.search(str(confirmed.get("text", "")))
            return result(link.group(1) if link else None, "" if link else "confirmation without a link")
        text = _next_message(replies, profile, reminders)
        if text is None:
            return result(None, f"{profile.language}: no question to answer after {said[:40]!r}: {keys}")
    return result(None, f"{profile.language}: more than {MAX_TURNS_PER_BOOKING} turns")


async def _booking_level(app_url: str, concurrency: int, booked: list[str]) -> BookingRun:
    """``concurrency`` clients book one appointment after another until the level's time is up."""
    url = f"{app_url}/webhooks/rest/webhook"
    dialogues: list[BookingDialogue] = []
    budget = MAX_BOOKINGS_PER_LEVEL
    async with httpx.AsyncClient(timeout=TURN_TIMEOUT, limits=_limits(concurrency)) as http:

        async def client(index: int, deadline: float) -> None:
            nonlocal budget
            round_ = 0
            while time.monotonic() < deadline and budget > 0:
                budget -= 1
                number = index + round_ * concurrency
                profile = BOOKING_PROFILES[number % len(BOOKING_PROFILES)]
                round_ += 1
                try:
                    dialogue = await asyncio.wait_for(
                        _book_once(http, url, profile, reminders=number % 2 == 0), BOOKING_TIMEOUT
                    )
                except TimeoutError:
                    dialogue = BookingDialogue(None, 0, BOOKING_TIMEOUT, [], 0, "timed out")
                dialogues.append(dialogue)
                if dialogue.booked:
                    booked.append(dialogue.booked)

        started = time.monotonic()
        await asyncio.gather(*(client(i, started + SECONDS_PER_BOOKING_LEVEL) for i in range(concurrency)))
        seconds = time.monotonic() - started
    done = [d for d in dialogues if d.booked]
    turns = [t for d in dialogues for t in d.turn_seconds]
    return BookingRun(
        concurrency=concurrency,
        bookings=len(done),
        failed=len(dialogues) - len(done),
        seconds=round(seconds, 1),
        bookings_per_s=round(len(done) / seconds, 2),
        turns_per_booking=round(sum(d.turns for d in done) / len(done), 1) if done else float("nan"),
        p50_ms=_percentile([d.seconds for d in done], 0.50),
        p95_ms=_percentile([d.seconds for d in done], 0.95),
        turn_p50_ms=_percentile(turns, 0.50),
        turn_p95_ms=_percentile(turns, 0.95),
        slot_taken=sum(d.slot_taken for d in dialogues),
        failures=[d.failure for d in dialogues if d.failure][:5],
    )


def _appointment_rows(database_url: str) -> dict[str, str]:
    """Every appointment in the app's database: id -> status."""
    from sqlalchemy import create_engine, select

    from bot.storage.database import sync_url
    from bot.storage.models import Appointment

    engine = create_engine(sync_url(database_url))
    try:
        with engine.connect() as connection:
            return {str(i): str(s) for i, s in connection.execute(select(Appointment.id, Appointment.status))}
    finally:
        engine.dispose()


def _booking_stage(model: Path, workdir: Path) -> tuple[dict[str, Any], list[BookingRun]]:
    """A fresh SQLite stack with an always-open directory; one warm-up booking, then each level."""
    print("bookings: the whole booking dialogue through the app's REST channel (SQLite stack)", flush=True)
    database_url = f"sqlite:///{workdir / 'bookings.db'}"
    stack = Stack(
        name="bookings",
        model=model,
        workdir=workdir,
        env={
            "LOTSE_DATABASE_URL": database_url,
            "LOTSE_TRACKER_DB": str(workdir / "bookings-tracker.db"),
            "LOTSE_TRACKER_URL": f"sqlite:///{workdir / 'bookings-tracker.db'}",
            "LOTSE_CONTENT_DIR": str(_always_open_content(workdir)),
        },
    )
    booked: list[str] = []
    runs: list[BookingRun] = []
    began = time.monotonic()
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    try:
        stack.start()
        warm_up = asyncio.run(_warm_up_booking(stack.app_url, booked))
        assert stack.engine is not None and stack.app is not None
        pids = {"engine": stack.engine.pid, "app": stack.app.pid}
        for level in BOOKING_LEVELS:
            before = {name: _cpu_ticks_tree(pid) for name, pid in pids.items()}
            run = asyncio.run(_booking_level(stack.app_url, level, booked))
            run.cores = {
                name: round((_cpu_ticks_tree(pid) - before[name]) / CLOCK_TICKS / run.seconds, 2)
                for name, pid in pids.items()
            }
            runs.append(run)
            print(
                f"  bookings x{level:<3d} {run.bookings:3d} booked, {run.failed} failed, "
                f"{run.bookings_per_s:5.2f} bookings/s, {run.turns_per_booking} turns each, "
                f"p50 {run.p50_ms:7.0f} ms, p95 {run.p95_ms:7.0f} ms per booking; CPU cores {run.cores}",
                flush=True,
            )
            for failure in run.failures:
                print(f"    failed: {failure}", flush=True)
    finally:
        stack.stop()
    rows = _appointment_rows(database_url)
    reported = set(booked)
    figures: dict[str, Any] = {
        "model": model.name,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_at_start": load_at_start,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "seconds_per_level": SECONDS_PER_BOOKING_LEVEL,
        "directory": "every service open 00:00-23:55 every day (a copy of content/ via LOTSE_CONTENT_DIR)",
        "warm_up_booking": warm_up,
        "bookings_reported": len(booked),
        "appointment_rows": len(rows),
        "rows_match_bookings": reported == set(rows) and len(reported) == len(booked),
        "rows_without_confirmation": len(set(rows) - reported),
        "confirmations_without_row": len(reported - set(rows)),
        "rows_booked": sum(1 for status in rows.values() if status == "booked"),
        "runs": [asdict(r) for r in runs],
        "app_log": _log_errors(stack.logs[1]),
        "engine_log": _log_errors(stack.logs[0]),
        "stage_seconds": round(time.monotonic() - began),
    }
    print(
        f"  {len(booked)} bookings reported (one of them the warm-up), {len(rows)} appointment rows in the "
        f"app's database: {'match' if figures['rows_match_bookings'] else 'MISMATCH'}",
        flush=True,
    )
    return figures, runs


async def _warm_up_booking(app_url: str, booked: list[str]) -> bool:
    """One booking before measuring (the first one of a stack loads what a booking needs)."""
    url = f"{app_url}/webhooks/rest/webhook"
    async with httpx.AsyncClient(timeout=TURN_TIMEOUT) as http:
        dialogue = await asyncio.wait_for(
            _book_once(http, url, BOOKING_PROFILES[0], reminders=True), BOOKING_TIMEOUT
        )
    if dialogue.booked:
        booked.append(dialogue.booked)
    else:
        print(f"  warm-up booking failed: {dialogue.failure}", flush=True)
    return dialogue.booked is not None


# ---- reminder lateness ---------------------------------------------------------------------------------


async def _create_reminders(env: dict[str, str], count: int) -> dict[str, Any]:
    """Book appointments a day ahead through BookingService (two reminders each), then move every
    reminder to a random time 20-60 s ahead and put its job into the app's job store (replacing the one
    the booking scheduled): the same rows and jobs the app makes, only due sooner."""
    from sqlalchemy import select

    from bot.bootstrap import bootstrap
    from bot.consent import ConsentPrompt, ConsentRequest, text_hash
    from bot.conversations import find_or_create
    from bot.scheduler import build_scheduler
    from bot.settings import load_settings
    from bot.storage.models import Reminder

    settings = load_settings(env)
    services = bootstrap(settings)
    booking = services.booking
    scheduler = build_scheduler(settings)
    scheduler.start(paused=True)  # writes jobs into the shared store; never runs them
    booking.scheduler = scheduler
    try:
        service_ids = list(services.directory.services)
        after = datetime.now(UTC) + timedelta(hours=25)  # both reminders (24 h and 2 h) lie ahead
        free = {sid: await booking.free_slots(sid, after=after, limit=count) for sid in service_ids}
        appointments = 0
        index = 0
        while appointments * 2 < count:
            service_id = service_ids[index % len(service_ids)]
            slot = free[service_id].pop(0)
            language = LANGUAGES[index % len(LANGUAGES)]
            index += 1
            organisation = services.directory.services[service_id].organisation
            async with services.database.unit_of_work() as session:
                client, conversation, _ = await find_or_create(
                    session, channel="rest", external_id=f"bench-reminder-{uuid.uuid4().hex[:12]}"
                )
                client.language = language
                for request in (
                    ConsentRequest(scope="booking", organisation=organisation),
                    ConsentRequest(scope="reminders"),
                ):
                    version = services.content.consent.current(request.scope)
                    shown = await services.texts.message(
                        version.key, language, params=services.consent.params(request)
                    )
                    prompt = ConsentPrompt(
                        request=request,
                        text=shown.text,
                        language=shown.language,
                        version=version.version,
                        text_id=version.text_id,
                        text_hash=text_hash(shown.text),
                    )
                    await services.consent.record(
                        session, client_id=client.id, prompt=prompt, granted=True, channel="rest"
                    )
                await session.commit()
                client_id, conversation_id = client.id, conversation.id
            await booking.book(
                client_id=client_id,
                conversation_id=conversation_id,
                channel="rest",
                slot=slot,
                language=language,
                topic="counselling",
            )
            appointments += 1
        rng = random.Random(11)
        async with services.database.unit_of_work() as session:
            reminders = list(await session.scalars(select(Reminder).where(Reminder.status == "scheduled")))
            now = datetime.now(UTC)
            for reminder in reminders:
                reminder.due_at = now + timedelta(seconds=rng.uniform(*REMINDER_WINDOW))
            await session.commit()
        await booking._schedule(reminders)  # the app's own call: replaces each job with the sooner run date
        scheduled = datetime.now(UTC)
        due = sorted(r.due_at for r in reminders)
        return {
            "appointments": appointments,
            "reminders": len(reminders),
            "jobs_written_s": round((scheduled - now).total_seconds(), 2),
            "first_due": due[0],
            "last_due": due[-1],
        }
    finally:
        booking.scheduler = None
        scheduler.shutdown(wait=False)
        await services.close()


def _reminder_outcome(database_url: str, until: datetime) -> dict[str, Any]:
    """Wait until no reminder is left scheduled (or ``until``), then read what the app did."""
    from sqlalchemy import create_engine, func, select

    from bot.storage.database import sync_url
    from bot.storage.models import Reminder, as_utc

    engine = create_engine(sync_url(database_url))
    try:
        while datetime.now(UTC) < until:
            with engine.connect() as connection:
                pending = connection.scalar(
                    select(func.count()).select_from(Reminder).where(Reminder.status == "scheduled")
                )
            if not pending:
                break
            time.sleep(1)
        with engine.connect() as connection:
            rows = list(connection.execute(select(Reminder.status, Reminder.due_at, Reminder.sent_at)))
    finally:
        engine.dispose()
    statuses = Counter(str(status) for status, _due, _sent in rows)
    late = sorted(
        (as_utc(sent) - as_utc(due)).total_seconds()
        for status, due, sent in rows
        if status == "sent" and sent is not None
    )
    return {
        "statuses": dict(statuses),
        "sent": statuses.get("sent", 0),
        "missed": statuses.get("missed", 0),
        "lost": statuses.get("scheduled", 0),
        "early": sum(1 for s in late if s < 0),
        "lateness_ms": {
            "median": _percentile(late, 0.50),
            "p95": _percentile(late, 0.95),
            "p99": _percentile(late, 0.99),
            "worst": round(late[-1] * 1000, 1) if late else None,
            "best": round(late[0] * 1000, 1) if late else None,
        },
        "lateness_s_all": [round(s, 4) for s in late],
    }


EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Unavailable): .*")


def _log_errors(log: Path) -> dict[str, Any]:
    """ERROR records in an app log and the exceptions that ended its tracebacks, most frequent first."""
    lines = log.read_text(errors="replace").splitlines()
    exceptions = Counter(line[:160] for line in lines if EXCEPTION_LINE.match(line))
    return {
        "error_records": sum(1 for line in lines if " ERROR " in line),
        "exceptions": dict(exceptions.most_common(3)),
    }


def _reminder_run(workdir: Path, label: str, database_url: str) -> dict[str, Any]:
    """One app process with its scheduler on (no engine) on one database; reminders from this process."""
    began = time.monotonic()
    port = _free_port()
    env = {
        **os.environ,
        "APP_PORT": str(port),
        "LOTSE_DATABASE_URL": database_url,
        "LOTSE_ENGINE_URL": f"http://127.0.0.1:{_free_port()}",  # nothing listens: no engine needed
        "LOTSE_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "LOTSE_TRACKER_URL": f"sqlite:///{workdir / f'reminders-{label}-tracker.db'}",
        "LOTSE_CONTENT_DIR": str(_always_open_content(workdir)),
        "LOTSE_SCHEDULER": "on",
        "LOTSE_REDIS_URL": "",
    }
    subprocess.run([sys.executable, "-m", "bot", "db-upgrade"], env=env, check=True, capture_output=True)
    log = workdir / f"reminders-{label}-app.log"
    app = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve"], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    try:
        _wait(f"http://127.0.0.1:{port}/health", '"database":{"state":"up"}', 120, app, log)
        created = asyncio.run(_create_reminders(env, REMINDER_COUNT))
        print(
            f"  {label}: {created['reminders']} reminders of {created['appointments']} appointments in the "
            f"job store after {created['jobs_written_s']} s; waiting for them",
            flush=True,
        )
        outcome = _reminder_outcome(database_url, created["last_due"] + timedelta(seconds=REMINDER_GRACE))
        rss = _rss_mb(app.pid)
    finally:
        if app.poll() is None:
            app.terminate()
        try:
            app.wait(timeout=30)
        except subprocess.TimeoutExpired:
            app.kill()
            app.wait(timeout=10)
    lateness = outcome["lateness_ms"]
    print(
        f"  {label}: sent {outcome['sent']}, missed {outcome['missed']}, lost {outcome['lost']}; late by "
        f"median {lateness['median']} ms, p95 {lateness['p95']} ms, worst {lateness['worst']} ms",
        flush=True,
    )
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "appointments": created["appointments"],
        "reminders": created["reminders"],
        "due_spread_s": round((created["last_due"] - created["first_due"]).total_seconds(), 1),
        "jobs_written_s": created["jobs_written_s"],
        **{k: v for k, v in outcome.items() if k != "lateness_s_all"},
        "app_rss_mb_after": rss,
        "app_log": _log_errors(log),
        "run_seconds": round(time.monotonic() - began),
        "lateness_s_all": outcome["lateness_s_all"],
    }


def _reminder_stage(workdir: Path) -> dict[str, Any]:
    """The same reminders on SQLite (as `make run` stores them) and on PostgreSQL (production mode)."""
    from bot.scheduler import STORE_POLL_SECONDS

    print(f"reminders: {REMINDER_COUNT} reminders due 20-60 s ahead, sent by a real app process", flush=True)
    figures: dict[str, Any] = {
        "path": (
            "BookingService.book in the bench process against the app's database (consents, appointments a "
            "day ahead, two reminder rows each, jobs in the shared SQLAlchemy job store through a paused "
            "scheduler); the due times then moved to random times 20-60 s ahead and the jobs replaced by "
            "BookingService._schedule; sent by the app process's own scheduler, which polls the job store"
        ),
        "due_window_s": list(REMINDER_WINDOW),
        "store_poll_seconds": STORE_POLL_SECONDS,
        "lost_means": f"still scheduled {REMINDER_GRACE:.0f} s after the last reminder was due",
        "sqlite": _reminder_run(workdir, "sqlite", f"sqlite:///{workdir / 'reminders.db'}"),
    }
    with _postgres_databases("reminders") as (database_url,):
        figures["postgresql"] = _reminder_run(workdir, "postgresql", database_url)
    return figures


def _stages() -> list[str]:
    """The stages BENCH_STAGES names (comma list), in their fixed order; all when unset."""
    raw = os.environ.get("BENCH_STAGES", "")
    chosen = {s.strip() for s in raw.split(",") if s.strip()} or set(STAGES)
    unknown = chosen - set(STAGES)
    if unknown:
        raise SystemExit(f"BENCH_STAGES: unknown {', '.join(sorted(unknown))} (stages: {', '.join(STAGES)})")
    return [s for s in STAGES if s in chosen]


def _previous() -> dict[str, Any]:
    """The last results, so a run of some stages keeps the others' figures."""
    try:
        data = json.loads((OUT / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _production_target(target: str) -> bool:
    return "production" in target


def main() -> None:
    """Start the stacks one after the other, measure, print and write the results."""
    stages = _stages()
    began = time.monotonic()
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    model = _model() if {"turns", "production", "bookings"} & set(stages) else None
    workdir = Path(tempfile.mkdtemp(prefix="lotse-bench-"))
    result = _previous() if stages != list(STAGES) else {}
    result["stages_last_run"] = stages
    runs: list[Run] = []
    sweeps: list[Sweep] = []
    if {"turns", "production"} & set(stages):
        assert model is not None
        messages = client_messages()

        # The figures of the turn stages run now are replaced; those of the other one are kept.
        def owned(target: str) -> bool:
            return ("production" if _production_target(target) else "turns") in stages

        kept_runs = [r for r in result.get("runs", []) if not owned(str(r.get("target", "")))]
        kept_sweeps = {k: v for k, v in result.get("open_loop", {}).items() if not owned(k)}
        if "turns" in stages:
            figures, runs, sweeps = _default_stage(model, workdir, messages)
            result.update(figures)
        if "production" in stages:
            scaling: dict[str, Any] = {}
            for workers in (1, 2):
                scaling[str(workers)], more_runs, sweep = _production_stage(model, workdir, messages, workers)
                runs += more_runs
                sweeps.append(sweep)
            one, two = scaling["1"]["max_rate_p95_under_500ms"], scaling["2"]["max_rate_p95_under_500ms"]
            scaling["ratio_two_to_one"] = round(two / one, 2) if one else None
            result["scaling"] = scaling
        if "turns" in stages:
            by_target = {s.target: s for s in sweeps}
            engine_max = by_target["engine"].max_rate_under_target
            app_max = by_target["app"].max_rate_under_target
            result["app_max_rate_share_of_engine"] = round(app_max / engine_max, 2) if engine_max else None
        result.update(
            {
                "model": model.name,
                "training_seconds": _training_seconds(model),
                "cpu_count": os.cpu_count(),
                "seconds_per_run": SECONDS_PER_RUN,
                "seconds_per_rate": SECONDS_PER_RATE,
                "turns_per_conversation": TURNS_PER_CONVERSATION,
                # Other work on the machine shows here; the figures are only as quiet as the machine was.
                "load_average_at_start": load_at_start,
                "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
                "runs": kept_runs + [asdict(r) for r in runs],
                "open_loop": {
                    **kept_sweeps,
                    **{
                        s.target: {
                            "max_rate_p95_under_500ms": s.max_rate_under_target,
                            "sustained_throughput": s.sustained_throughput,
                            "runs": [asdict(r) for r in s.runs],
                        }
                        for s in sweeps
                    },
                },
                "bench_seconds": round(time.monotonic() - began),
            }
        )
    booking_runs: list[BookingRun] = []
    if "bookings" in stages:
        assert model is not None
        result["bookings"], booking_runs = _booking_stage(model, workdir)
    if "reminders" in stages:
        result["reminders"] = _reminder_stage(workdir)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    if "turns" in stages:
        _plot_closed(runs, OUT / "latency.png")
    if "turns" in stages and "production" in stages:
        _plot_open(sweeps, OUT / "open-loop.png")
    if "reminders" in stages:
        _plot_reminders(result["reminders"], OUT / "reminders.png")
    if runs or sweeps:
        _print(result, runs, sweeps)
    if "bookings" in stages:
        _print_bookings(result["bookings"], booking_runs)
    if "reminders" in stages:
        _print_reminders(result["reminders"])
    print(f"\nstages {', '.join(stages)} took {round(time.monotonic() - began)} s", flush=True)


def _print(result: dict[str, Any], runs: list[Run], sweeps: list[Sweep]) -> None:
    if "startup_to_first_answer_s" in result:
        print(
            f"\nstart-up to first answer: {result['startup_to_first_answer_s']} s; training: "
            f"{result['training_seconds']} s; RSS MB at rest {result['rss_mb_at_rest']}, peak under load "
            f"{result.get('rss_mb_peak_under_load')}, after load {result.get('rss_mb_after_load')}"
        )
    print("\nclosed loop")
    print(
        "| level | target | turns | errors | turns/s | p50 ms | p95 ms | p99 ms | p95 ÷ engine p95 "
        "| p95 without openings (÷ engine) | slowest opening ms |"
    )
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in runs:
        engine = next((e for e in runs if e.target == "engine" and e.concurrency == r.concurrency), None)
        ratio = f"{r.p95_ms / engine.p95_ms:.2f}" if engine and r is not engine and engine.p95_ms else ""
        steady = f"{r.steady_p95_ms}"
        if engine and r is not engine and engine.steady_p95_ms:
            steady += f" ({r.steady_p95_ms / engine.steady_p95_ms:.2f})"
        print(
            f"| {r.concurrency} | {r.target} | {r.requests} | {r.errors} | {r.throughput} | {r.p50_ms} "
            f"| {r.p95_ms} | {r.p99_ms} | {ratio} | {steady} | {r.opening_max_ms} |"
        )
    print("\nopen loop (Poisson arrivals)")
    print("| target | rate/s | sent | errors | turns/s | p50 ms | p95 ms | p99 ms |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for sweep in sweeps:
        for o in sweep.runs:
            print(
                f"| {o.target} | {o.rate} | {o.sent} | {o.errors} | {o.throughput} | {o.p50_ms} | {o.p95_ms} "
                f"| {o.p99_ms} |"
            )
    print("\n| target | highest rate with p95 < 500 ms | sustained turns/s (p95 ≤ 1 s) |")
    print("| --- | ---: | ---: |")
    for sweep in sweeps:
        print(f"| {sweep.target} | {sweep.max_rate_under_target} | {sweep.sustained_throughput} |")
    print(
        f"\napp's highest rate ÷ engine's: {result.get('app_max_rate_share_of_engine')}; "
        f"two engine workers ÷ one: {(result.get('scaling') or {}).get('ratio_two_to_one')}; "
        f"the turn stages took {result['bench_seconds']} s"
    )


def _print_bookings(figures: dict[str, Any], runs: list[BookingRun]) -> None:
    print("\nbookings through the whole stack (REST channel, app, engine, SQLite)")
    print(
        "| clients | bookings | failed | bookings/s | turns per booking | booking p50 / p95 ms "
        "| turn p50 / p95 ms | time taken meanwhile | CPU cores engine / app |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in runs:
        print(
            f"| {r.concurrency} | {r.bookings} | {r.failed} | {r.bookings_per_s} | {r.turns_per_booking} "
            f"| {r.p50_ms:.0f} / {r.p95_ms:.0f} | {r.turn_p50_ms:.0f} / {r.turn_p95_ms:.0f} "
            f"| {r.slot_taken} | {r.cores.get('engine')} / {r.cores.get('app')} |"
        )
    print(
        f"appointment rows {figures['appointment_rows']}, bookings reported {figures['bookings_reported']} "
        f"(with the warm-up): {'match' if figures['rows_match_bookings'] else 'MISMATCH'}; rows the client "
        f"was not told of: {figures['rows_without_confirmation']}"
    )
    for name in ("app", "engine"):
        for exception, count in figures[f"{name}_log"]["exceptions"].items():
            print(f"  {name} log: {count} x {exception}")


def _print_reminders(figures: dict[str, Any]) -> None:
    print("\nreminders sent by the app's scheduler (sent_at - due_at)")
    print("| database | reminders | sent | missed | lost | median ms | p95 ms | p99 ms | worst ms | errors |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label in ("sqlite", "postgresql"):
        run = figures.get(label)
        if not run:
            continue
        late = run["lateness_ms"]
        print(
            f"| {label} | {run['reminders']} | {run['sent']} | {run['missed']} | {run['lost']} "
            f"| {late['median']} | {late['p95']} | {late['p99']} | {late['worst']} "
            f"| {run['app_log']['error_records']} |"
        )
        for exception, count in run["app_log"]["exceptions"].items():
            print(f"  {label} log: {count} x {exception}")


def _plot_closed(runs: list[Run], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 3.8), dpi=110)
    for target, marker in (("engine", "o"), ("app", "s"), ("app-socketio", "^")):
        points = [r for r in runs if r.target == target and r.concurrency in LEVELS]
        xs = [r.concurrency for r in points]
        (line,) = ax.plot(xs, [r.p95_ms for r in points], marker=marker, label=f"{target} p95")
        ax.plot(
            xs, [r.p50_ms for r in points], marker=marker, linestyle="--", color=line.get_color(), alpha=0.6
        )
    ax.set_xscale("log")
    ax.set_xticks(list(LEVELS), [str(level) for level in LEVELS])
    ax.set_xlabel("concurrent conversations (closed loop); dashed: p50")
    ax.set_ylabel("latency per turn (ms)")
    ax.set_title("Bot-turn latency: straight to the engine, through the app (REST, socket.io)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_open(sweeps: list[Sweep], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 3.8), dpi=110)
    for sweep in sweeps:
        ax.plot([r.rate for r in sweep.runs], [r.p95_ms for r in sweep.runs], marker="o", label=sweep.target)
    ax.axhline(TARGET_P95_MS, color="grey", linestyle=":", linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel("offered rate (turns per second, Poisson arrivals)")
    ax.set_ylabel("p95 latency (ms)")
    ax.set_title("Open loop: p95 by offered rate (dotted: 500 ms)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_reminders(figures: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 3.4), dpi=110)
    for label in ("sqlite", "postgresql"):
        run = figures.get(label)
        if run and run["lateness_s_all"]:
            late = sorted(s * 1000 for s in run["lateness_s_all"])
            share = [100 * (i + 1) / run["reminders"] for i in range(len(late))]
            ax.step(late, share, where="post", label=f"{label}: {run['sent']} of {run['reminders']} sent")
    ax.set_xscale("log")
    ax.set_xlabel("sent after due (ms, log scale)")
    ax.set_ylabel("reminders sent (%)")
    ax.set_title("Reminder lateness: 300 reminders due within 40 s, one app process")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
