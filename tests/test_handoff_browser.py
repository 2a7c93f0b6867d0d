"""The handoff acceptance test in two real headless Chromium contexts (Debian's package): a Ukrainian
client in the widget asks for a person and consents; an adviser sees the ticket arrive live in the console,
claims it, reads the German translation, replies in German; the client reads the reply in Ukrainian; the
adviser hands back and the bot answers again.
Translation by the LibreTranslate-compatible server on loopback."""

from __future__ import annotations

import asyncio
import re
import shutil
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from playwright.sync_api import Browser, Dialog, Page, expect, sync_playwright

from bot.console.accounts import add_adviser
from bot.settings import ROOT
from bot.storage.database import Database
from tests.auxil.console import PASSWORD
from tests.auxil.libretranslate import FakeLibreTranslate
from tests.auxil.live import restart_app, with_libre
from tests.auxil.servers import ServerThread
from tests.conftest import LiveStack

pytestmark = [pytest.mark.engine, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = ROOT / "docs" / "screenshots"
WAIT = 30_000  # ms; every wait is bounded


@pytest.fixture(scope="module")
def translated(live: LiveStack) -> Iterator[LiveStack]:
    """The live app restarted with the loopback translator (restored afterwards)."""
    fake = FakeLibreTranslate()
    server = ServerThread(fake.app).start()
    original = live.settings
    try:
        restart_app(live, with_libre(original, server.url))
        yield live
    finally:
        restart_app(live, original)
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
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
        launched.close()


def _adviser(live: LiveStack, organisation: str) -> str:
    """A new adviser account (username returned; password PASSWORD)."""
    username = f"olga-{uuid.uuid4().hex[:6]}"

    async def create() -> None:
        db = Database(live.settings.database_url)
        try:
            async with db.unit_of_work() as session:
                await add_adviser(
                    session,
                    organisations=live.services.content.organisations,
                    organisation=organisation,
                    username=username,
                    display_name="Olga Schmidt",
                    password=PASSWORD,
                )
                await session.commit()
        finally:
            await db.dispose()

    # The test runs inside pytest-asyncio's loop, so the account is made on a thread of its own.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, create()).result(timeout=30)
    return username


def _watch(page: Page) -> list[str]:
    """Script errors and dialogs, which must stay empty."""
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"pageerror: {error}"))

    def dialog(opened: Dialog) -> None:
        problems.append(f"dialog: {opened.message}")
        opened.dismiss()

    page.on("dialog", dialog)
    return problems


def _ask(page: Page, text: str) -> None:
    before = page.locator(".lotse-bot").count()
    page.locator(".lotse-input").fill(text)
    page.locator(".lotse-input").press("Enter")
    expect(page.locator(".lotse-bot")).not_to_have_count(before, timeout=WAIT)


def test_a_ukrainian_client_and_a_german_adviser_talk_through_the_console(
    translated: LiveStack, browser: Browser
) -> None:
    live = translated
    uk = live.services.content.texts["uk"]
    username = _adviser(live, "caritas-pb")

    console_context = browser.new_context(viewport={"width": 1280, "height": 860})
    console = console_context.new_page()
    console_problems = _watch(console)
    console.goto(live.url + "/console/login")
    console.get_by_label("Benutzername").fill(username)
    console.get_by_label("Passwort").fill(PASSWORD)
    console.get_by_role("button", name="Anmelden").click()
    expect(console.get_by_role("heading", name="Warteschlange")).to_be_visible(timeout=WAIT)
    expect(console.locator("#connection")).to_have_text("Live verbunden.", timeout=WAIT)
    console.evaluate("window.loadedOnce = true")

    client_context = browser.new_context(viewport={"width": 420, "height": 860})
    client = client_context.new_page()
    client_problems = _watch(client)
    client.goto(live.url + "/")
    client.get_by_role("button", name="Chat öffnen").click()
    expect(client.locator(".lotse-panel")).to_be_visible()
    _ask(client, "Які документи потрібні для визнання мого диплома інженера?")
    expect(client.locator(".lotse-bot").last).to_have_attribute("lang", "uk")
    _ask(client, "Я хочу поговорити з живою людиною, будь ласка")
    consent = client.locator(".lotse-bot").last
    expect(consent).to_contain_text(uk["consent.handoff.v1"].split("{")[0].strip()[:30], timeout=WAIT)
    before = client.locator(".lotse-bot").count()
    consent.get_by_role("button", name=uk["button.yes"]).click()
    waiting_start = uk["handoff.waiting"].split("{")[0].strip()
    expect(client.locator(".lotse-bot").last).to_contain_text(waiting_start, timeout=WAIT)
    assert client.locator(".lotse-bot").count() > before

    row = console.locator("#queue-rows tr", has_text="Ukrainisch").last
    expect(row).to_be_visible(timeout=WAIT)
    expect(row).to_contain_text("wartet")
    assert console.evaluate("window.loadedOnce === true"), "the queue was reloaded"
    row.get_by_role("link").click()
    console.get_by_role("button", name="Übernehmen").click()
    expect(console.get_by_text("Sie bearbeiten dieses Ticket jetzt.")).to_be_visible(timeout=WAIT)
    asked = console.locator("#messages li.from-client", has_text="живою людиною").last
    expect(asked.locator(".german")).to_contain_text("<de> Я хочу поговорити з живою людиною", timeout=WAIT)
    expect(client.locator(".lotse-bot").last).to_contain_text(
        uk["handoff.claimed"].split("{")[0].strip(), timeout=WAIT
    )

    console.get_by_label("Antwort auf Deutsch").fill(
        "Guten Tag, ich helfe Ihnen gern. Welchen Abschluss haben Sie?"
    )
    console.get_by_role("button", name="Senden", exact=True).click()
    expect(console.get_by_text("Nachricht gesendet.")).to_be_visible(timeout=WAIT)
    answer = client.locator(".lotse-bot").last
    expect(answer).to_contain_text("<uk> Guten Tag, ich helfe Ihnen gern.", timeout=WAIT)
    expect(answer.locator(".lotse-mt")).to_be_visible()
    expect(answer).to_have_attribute("lang", "uk")

    before = client.locator(".lotse-client").count()
    client.locator(".lotse-input").fill("Диплом інженера-будівельника з Харкова")
    client.locator(".lotse-input").press("Enter")
    expect(client.locator(".lotse-client")).to_have_count(before + 1, timeout=WAIT)
    latest = console.locator("#messages li.from-client").last
    expect(latest.locator(".german")).to_contain_text("<de> Диплом інженера-будівельника", timeout=WAIT)
    client.screenshot(path=str(SCREENSHOTS / "handoff-client.png"))
    console.screenshot(path=str(SCREENSHOTS / "handoff-console.png"), full_page=True)

    console.get_by_role("button", name="An den Bot zurückgeben").click()
    expect(client.locator(".lotse-bot").last).to_contain_text(
        uk["handoff.returned"].split("{")[0].strip()[:30], timeout=WAIT
    )
    _ask(client, "Скільки коштує інтеграційний курс?")
    bot_answer = client.locator(".lotse-bot").last
    expect(bot_answer).to_contain_text(re.compile("Stand"), timeout=WAIT)
    expect(bot_answer).to_contain_text(uk["answer.language_course.cost"][:30])

    assert client_problems == [] and console_problems == []
    client_context.close()
    console_context.close()
