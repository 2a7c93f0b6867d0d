"""Fixtures: settings on a real SQLite file, the app on loopback, one real engine per test run."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from bot.app import create_app
from bot.bootstrap import Services, bootstrap
from bot.language import LanguageDetector
from bot.settings import Settings, load_settings
from bot.storage.database import Database
from tests.auxil.servers import EngineProcess, ServerThread, free_port


@pytest.fixture(scope="session")
def detector() -> LanguageDetector:
    """lingua is built once per test run (~1.6 s), as the app builds it."""
    from bot.content import load_content
    from bot.settings import ROOT

    return LanguageDetector(load_content(ROOT / "content").lexicons["de"].embedded_terms)


def make_settings(tmp: Path, **env: str) -> Settings:
    """Settings for a test: its own SQLite file, no translator, a dead engine unless given."""
    base = {
        "LOTSE_DATABASE_URL": f"sqlite:///{tmp / 'lotse.db'}",
        "LOTSE_ENGINE_URL": f"http://127.0.0.1:{free_port()}",
        "LOTSE_ENV": "test",
        "LOTSE_ENGINE_TIMEOUT": "10",
        "LOTSE_SCHEDULER": "off",
        "LOTSE_TRACKER_URL": f"sqlite:///{tmp / 'tracker.db'}",
    }
    base.update(env)
    settings = load_settings(base)
    Database(settings.database_url).upgrade()
    return settings


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory, detector: LanguageDetector) -> Iterator[LiveStack]:
    """The app (in a thread) and the real engine (a process) wired to each other."""
    tmp = tmp_path_factory.mktemp("live")
    app_port = free_port()
    engine = EngineProcess(
        action_endpoint=f"http://127.0.0.1:{app_port}/webhook",
        tracker_db=tmp / "tracker.db",
        log_path=tmp / "engine.log",
    )
    settings = make_settings(
        tmp, LOTSE_ENGINE_URL=engine.url, LOTSE_PUBLIC_URL=f"http://127.0.0.1:{app_port}"
    )
    services = bootstrap(settings, detector=detector)
    server = ServerThread(create_app(services), port=app_port).start()
    try:
        engine.start()
        yield LiveStack(settings=settings, services=services, server=server, engine=engine, tmp=tmp)
    finally:
        engine.stop()
        server.stop()


class LiveStack:
    """What end-to-end tests talk to."""

    def __init__(
        self,
        *,
        settings: Settings,
        services: Services,
        server: ServerThread,
        engine: EngineProcess,
        tmp: Path,
    ) -> None:
        self.settings = settings
        self.services = services
        self.server = server
        self.engine = engine
        self.tmp = tmp

    @property
    def url(self) -> str:
        """The app's base URL."""
        return self.server.url

    def rest(self, message: str, *, sender: str | None = None, **metadata: str) -> list[dict[str, object]]:
        """Send one message through the app's REST channel and return the replies."""
        body = {"sender": sender or uuid.uuid4().hex, "message": message, "metadata": metadata}
        response = httpx.post(f"{self.url}/webhooks/rest/webhook", json=body, timeout=30)
        assert response.status_code == 200, response.text
        replies: list[dict[str, object]] = response.json()
        return replies


@pytest.fixture
async def database(live: LiveStack) -> AsyncIterator[Database]:
    """A second handle on the live app's SQLite file, for assertions."""
    db = Database(live.settings.database_url)
    yield db
    await db.dispose()


@pytest.fixture
def offline_app(tmp_path: Path, detector: LanguageDetector) -> Iterator[tuple[Services, httpx.Client]]:
    """The app with no engine behind it (nothing listens on its engine port)."""
    port = free_port()
    settings = make_settings(tmp_path, LOTSE_PUBLIC_URL=f"http://127.0.0.1:{port}")
    services = bootstrap(settings, detector=detector)
    server = ServerThread(create_app(services), port=port).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield services, client
    finally:
        server.stop()
