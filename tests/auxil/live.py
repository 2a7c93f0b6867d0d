"""Helpers for end-to-end tests on the session's live stack: restart its app (same port and database, so the
engine keeps calling it) with other settings, and keep the handoff's organisations open around the clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from bot.app import create_app
from bot.bootstrap import DirectoryChooser, Services, bootstrap
from bot.settings import Settings
from tests.auxil.servers import ServerThread
from tests.conftest import LiveStack


class AlwaysOpen(DirectoryChooser):
    """The real routing, with every organisation open (tests must not depend on the time of day)."""

    def next_opening(self, organisation: str, after: datetime) -> datetime | None:
        """Always open."""
        return None


def always_open(services: Services) -> Services:
    """Route handoffs as configured but ignore office hours."""
    chooser = services.handoff.chooser
    if isinstance(chooser, DirectoryChooser):
        services.handoff.chooser = AlwaysOpen(chooser.directory, chooser.rules)
    return services


def restart_app(live: LiveStack, settings: Settings | None = None) -> Services:
    """Stop the live app (its lifespan closes its services) and start a fresh one on the same port."""
    settings = settings or live.settings
    detector = live.services.router.detector
    port = live.server.port
    live.server.stop()
    services = always_open(bootstrap(settings, detector=detector))
    live.server = ServerThread(create_app(services), port=port).start()
    live.services, live.settings = services, settings
    return services


def with_libre(settings: Settings, url: str) -> Settings:
    """The same settings with the LibreTranslate-compatible server at ``url`` as translator."""
    return replace(settings, translator="libre", translator_url=url, translator_timeout=5.0)
