"""The console in real headless Chromium (Debian's package): an adviser signs in and sees a new ticket and
a new client message appear without reloading; screenshots for the README."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from bot.app import create_app
from bot.bootstrap import bootstrap
from bot.language import LanguageDetector
from bot.settings import ROOT
from tests.auxil.console import PASSWORD, LoopServer, adviser, client_writes, open_ticket
from tests.auxil.servers import free_port
from tests.conftest import make_settings

pytestmark = [pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = ROOT / "docs" / "screenshots"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield launched
        await launched.close()


def _watch(page: Page) -> list[str]:
    """Script errors, CSP violations and dialogs, which must all stay empty."""
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"pageerror: {error}"))
    page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("dialog", lambda d: problems.append(f"dialog: {d.message}"))
    return problems


async def test_an_adviser_sees_a_ticket_and_a_message_arrive_live(
    tmp_path: Path, detector: LanguageDetector, browser: Browser
) -> None:
    port = free_port()
    settings = make_settings(tmp_path, LOTSE_PUBLIC_URL=f"http://127.0.0.1:{port}")
    services = bootstrap(settings, detector=detector)
    await adviser(services, "caritas-pb", "anna", name="Anna Kowalski")
    colleague = await adviser(services, "caritas-pb", "carl", name="Carl Becker")
    earlier = await open_ticket(
        services,
        organisation="caritas-pb",
        language="ar",
        question="كيف أسجل في دورة الاندماج؟",
        topic="language_course",
    )
    await services.handoff.claim(earlier.ticket_id, colleague)
    await open_ticket(services, organisation="awo", question="Für eine andere Organisation")
    async with LoopServer(create_app(services), lifespan="on", port=port) as server:
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        problems = _watch(page)
        await page.goto(server.url + "/console/")
        await expect(page).to_have_url(server.url + "/console/login")
        await page.get_by_label("Benutzername").fill("anna")
        await page.get_by_label("Passwort").fill(PASSWORD)
        await page.get_by_role("button", name="Anmelden").click()
        await expect(page.get_by_role("heading", name="Warteschlange")).to_be_visible()
        await expect(page.locator("#connection")).to_have_text("Live verbunden.", timeout=10_000)
        rows = page.locator("#queue-rows tr")
        await expect(rows).to_have_count(1)  # the colleague's claimed ticket; awo's is not shown
        await page.evaluate("window.loadedOnce = true")

        opened = await open_ticket(
            services,
            organisation="caritas-pb",
            question="Мені потрібна допомога з визнанням диплома",
            town="Büren",
        )
        new_row = page.locator(f'#queue-rows tr[data-ticket="{opened.ticket_id}"]')
        await expect(new_row).to_be_visible(timeout=10_000)
        await expect(new_row).to_contain_text("Ukrainisch")
        await expect(new_row).to_contain_text("wartet")
        assert await page.evaluate("window.loadedOnce === true"), "the page was reloaded"
        await expect(page.locator("#live")).to_have_text(f"Neues Ticket #{opened.ticket_id}")
        await page.screenshot(path=str(SCREENSHOTS / "console-queue.png"))

        await new_row.get_by_role("link").click()
        await page.get_by_role("button", name="Übernehmen").click()
        await expect(page.get_by_text("Sie bearbeiten dieses Ticket jetzt.")).to_be_visible()
        await page.get_by_label("Antwort auf Deutsch").fill(
            "Guten Tag, ich helfe Ihnen gern. Welchen Abschluss haben Sie?"
        )
        await page.get_by_role("button", name="Senden", exact=True).click()
        await expect(page.get_by_text("Nachricht gesendet.")).to_be_visible()
        await page.evaluate("window.loadedOnce = true")
        attack = "<img src=x onerror=alert(1)> Bachelor Informatik"
        await client_writes(services, opened, attack)
        latest = page.locator("#messages li.from-client").last
        await expect(latest.locator(".original")).to_contain_text(attack, timeout=10_000)
        assert await page.locator("#messages img").count() == 0
        assert await page.evaluate("window.loadedOnce === true"), "the page was reloaded"
        await page.get_by_label("Neue Notiz").fill("Zeugnis aus Kyjiw, Anerkennung über ZAB prüfen")
        await page.get_by_role("button", name="Notiz speichern").click()
        await expect(page.get_by_text("Notiz gespeichert.")).to_be_visible()
        await page.screenshot(path=str(SCREENSHOTS / "console-ticket.png"), full_page=True)

        await page.get_by_role("link", name="Zahlen").click()
        await expect(page.locator("figure.chart svg")).to_be_visible()
        await page.screenshot(path=str(SCREENSHOTS / "console-figures.png"), full_page=True)
        assert problems == []
        await page.close()
