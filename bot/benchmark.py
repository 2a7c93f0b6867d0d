"""`make bench`: bot-turn latency through the app beside the same turns sent straight to the engine.

Starts the engine and the app as separate processes on loopback, then runs closed-loop load at 1,
10 and 50 concurrent conversations against the app's REST channel and against the engine's REST
channel in the same run, so the app's overhead is a ratio measured under the same machine load.
Also reports resident memory (RSS) of both processes at rest and after load, and start-up time to
the first answer. Every loop is bounded in time and count. Results: docs/bench/.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import yaml

from bot import LANGUAGES
from bot.settings import ROOT
from bot.training import engine_command, engine_env, train

OUT = ROOT / "docs" / "bench"
LEVELS = (1, 10, 50)
SECONDS_PER_RUN = float(os.environ.get("BENCH_SECONDS", "15"))
MAX_REQUESTS_PER_RUN = 5000
QUESTION_INTENTS = ("ask_language_course", "ask_recognition", "ask_qualification", "greet", "thanks")


@dataclass
class Run:
    """One load level against one target."""

    target: str
    concurrency: int
    requests: int
    errors: int
    seconds: float
    throughput: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


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


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return round(ordered[index] * 1000, 1)


def _messages() -> list[str]:
    """Realistic client messages in every language (held-out examples, never trained on)."""
    texts: list[str] = []
    for lang in LANGUAGES:
        data = yaml.safe_load((ROOT / "nlu_data" / "heldout" / f"{lang}.yml").read_text(encoding="utf-8"))
        for intent in QUESTION_INTENTS:
            texts += [str(t) for t in data["intents"].get(intent, [])]
    random.Random(7).shuffle(texts)
    return texts


def _wait(url: str, check: str, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200 and check in response.text:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} did not become ready within {timeout:.0f} s")


async def _closed_loop(url: str, concurrency: int, messages: list[str], label: str) -> Run:
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + SECONDS_PER_RUN
    budget = MAX_REQUESTS_PER_RUN
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:

        async def worker(index: int) -> None:
            nonlocal errors, budget
            sender = f"bench-{label}-{concurrency}-{index}-{random.randrange(1 << 30)}"
            turn = 0
            while time.monotonic() < deadline and budget > 0:
                budget -= 1
                text = messages[(index * 31 + turn) % len(messages)]
                turn += 1
                started = time.perf_counter()
                try:
                    response = await http.post(url, json={"sender": sender, "message": text})
                    if response.status_code != 200 or not response.json():
                        errors += 1
                except httpx.HTTPError:
                    errors += 1
                latencies.append(time.perf_counter() - started)

        started = time.monotonic()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        seconds = time.monotonic() - started
    return Run(
        target=label,
        concurrency=concurrency,
        requests=len(latencies),
        errors=errors,
        seconds=round(seconds, 1),
        throughput=round(len(latencies) / seconds, 1),
        p50_ms=_percentile(latencies, 0.50),
        p95_ms=_percentile(latencies, 0.95),
        p99_ms=_percentile(latencies, 0.99),
    )


def _plot(runs: list[Run], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    for target, marker in (("engine", "o"), ("app", "s")):
        points = [r for r in runs if r.target == target]
        ax.plot(
            [r.concurrency for r in points], [r.p95_ms for r in points], marker=marker, label=f"{target} p95"
        )
        ax.plot(
            [r.concurrency for r in points],
            [r.p50_ms for r in points],
            marker=marker,
            linestyle="--",
            label=f"{target} p50",
        )
    ax.set_xscale("log")
    ax.set_xticks(list(LEVELS), [str(level) for level in LEVELS])
    ax.set_xlabel("concurrent conversations (closed loop)")
    ax.set_ylabel("latency per turn (ms)")
    ax.set_title("Bot-turn latency: through the app vs. straight to the engine")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    """Start engine and app, measure, print and write the results."""
    model = train()
    workdir = Path(tempfile.mkdtemp(prefix="lotse-bench-"))
    app_port, engine_port = _free_port(), _free_port()
    env = engine_env()
    env.update(
        {
            "APP_PORT": str(app_port),
            "ENGINE_PORT": str(engine_port),
            "LOTSE_ENGINE_URL": f"http://127.0.0.1:{engine_port}",
            "LOTSE_ACTION_ENDPOINT": f"http://127.0.0.1:{app_port}/webhook",
            "LOTSE_DATABASE_URL": f"sqlite:///{workdir / 'bench.db'}",
            "LOTSE_TRACKER_DB": str(workdir / "tracker.db"),
            "LOTSE_TRACKER_URL": f"sqlite:///{workdir / 'tracker.db'}",
            "LOTSE_SCHEDULER": "off",
        }
    )
    subprocess.run([sys.executable, "-m", "bot", "db-upgrade"], env=env, check=True, capture_output=True)
    logs = (workdir / "engine.log").open("wb"), (workdir / "app.log").open("wb")
    started = time.monotonic()
    engine = subprocess.Popen(
        engine_command(model, engine_port), env=env, stdout=logs[0], stderr=subprocess.STDOUT
    )
    app = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve"], env=env, stdout=logs[1], stderr=subprocess.STDOUT
    )
    try:
        _wait(f"http://127.0.0.1:{app_port}/health", '"state":"up","url"', 240)
        first = httpx.post(
            f"http://127.0.0.1:{app_port}/webhooks/rest/webhook",
            json={"sender": "first", "message": "Hallo"},
            timeout=30,
        )
        first.raise_for_status()
        startup_seconds = round(time.monotonic() - started, 1)
        rest = {"engine": _rss_mb(engine.pid), "app": _rss_mb(app.pid)}
        messages = _messages()
        runs: list[Run] = []
        for level in LEVELS:
            for label, url in (
                ("engine", f"http://127.0.0.1:{engine_port}/webhooks/rest/webhook"),
                ("app", f"http://127.0.0.1:{app_port}/webhooks/rest/webhook"),
            ):
                runs.append(asyncio.run(_closed_loop(url, level, messages, label)))
                print(f"  {label:6s} x{level:<3d} done", flush=True)
        loaded = {"engine": _rss_mb(engine.pid), "app": _rss_mb(app.pid)}
    finally:
        for process in (app, engine):
            process.terminate()
        for process in (app, engine):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    OUT.mkdir(parents=True, exist_ok=True)
    result = {
        "model": model.name,
        "seconds_per_run": SECONDS_PER_RUN,
        "cpu_count": os.cpu_count(),
        "startup_to_first_answer_s": startup_seconds,
        "rss_mb_at_rest": rest,
        "rss_mb_after_load": loaded,
        "runs": [asdict(r) for r in runs],
    }
    (OUT / "results.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    _plot(runs, OUT / "latency.png")
    print(f"\nstart-up to first answer: {startup_seconds} s; RSS at rest {rest} MB, after load {loaded} MB")
    print(
        "| level | target | requests | errors | turns/s | p50 ms | p95 ms | p99 ms | app p95 / engine p95 |"
    )
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for level in LEVELS:
        pair = {r.target: r for r in runs if r.concurrency == level}
        ratio = pair["app"].p95_ms / pair["engine"].p95_ms if pair["engine"].p95_ms else float("nan")
        for target in ("engine", "app"):
            r = pair[target]
            shown = f"{ratio:.2f}" if target == "app" else ""
            print(
                f"| {level} | {target} | {r.requests} | {r.errors} | {r.throughput} | {r.p50_ms} "
                f"| {r.p95_ms} | {r.p99_ms} | {shown} |"
            )


if __name__ == "__main__":
    main()
