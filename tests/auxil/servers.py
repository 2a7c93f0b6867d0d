"""Run ASGI apps and the engine on loopback for tests; every wait is bounded."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from bot.training import engine_command, engine_env, train


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerThread:
    """An ASGI app served by uvicorn in a background thread."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> ServerThread:
        """Start and wait until the server accepts connections."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"server on port {self.port} did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """Ask the server to exit and wait for it."""
        self.server.should_exit = True
        self.thread.join(timeout=15)


class EngineProcess:
    """The real Rasa engine with the current trained model, started once per test run."""

    def __init__(self, *, action_endpoint: str, tracker_db: Path, log_path: Path) -> None:
        self.port = free_port()
        # LOTSE_TEST_MODEL pins a model while developing; by default the current one (trained if needed).
        pinned = os.environ.get("LOTSE_TEST_MODEL")
        self.model = Path(pinned) if pinned else train()
        self.action_endpoint = action_endpoint
        self.tracker_db = tracker_db
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the engine's HTTP API."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float | None = None) -> EngineProcess:
        """Start the engine and wait until its model is loaded (LOTSE_TEST_ENGINE_TIMEOUT: busy machines)."""
        timeout = timeout or float(os.environ.get("LOTSE_TEST_ENGINE_TIMEOUT", "180"))
        env = engine_env()
        env["LOTSE_ACTION_ENDPOINT"] = self.action_endpoint
        env["LOTSE_TRACKER_DB"] = str(self.tracker_db)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            engine_command(self.model, self.port), env=env, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"engine exited with {self.process.returncode}; see {self.log_path}")
            try:
                status = httpx.get(f"{self.url}/status", timeout=2.0)
                if status.status_code == 200 and status.json().get("model_file"):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"engine did not load its model within {timeout} s; see {self.log_path}")

    def stop(self) -> None:
        """Terminate the engine (kill after a grace period)."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def kill(self) -> None:
        """kill -9, as a crash would."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def postgres_admin_url() -> str:
    """Where the test PostgreSQL server is (trust authentication on this machine)."""
    return os.environ.get("LOTSE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
