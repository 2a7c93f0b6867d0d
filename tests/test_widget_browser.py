"""The web chat widget in real headless Chromium (Debian's package): against the live app and engine, and
against the app alone with an adviser acting through the real HandoffService."""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from bot.app import create_app
from bot.bootstrap import Services, bootstrap
from bot.language import LanguageDetector
from bot.settings import ROOT
from tests.auxil.console import LoopServer
from tests.auxil.servers import free_port
from tests.conftest import LiveStack, make_settings
from tests.test_widget import MarkingTranslator, claimed_ticket

pytestmark = [pytest.mark.browser]
T = TypeVar("T")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = ROOT / "docs" / "screenshots"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
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
        yield browser
        browser.close()


class AppThread:
    """The whole app (no engine behind it) served from an event loop on a thread of its own; ``run``
    executes a coroutine on that loop, so in-process services push to the browser's socket."""

    def __init__(self, services: Services, port: int) -> None:
        self.services = services
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = LoopServer(create_app(services), lifespan="on", port=port)
        self.run(self.server.__aenter__())

    @property
    def url(self) -> str:
        """The app's base URL."""
        return self.server.url

    def run(self, work: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run ``work`` on the app's loop and return its result (bounded)."""
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)

    def stop(self) -> None:
        """Stop the server (its lifespan closes the services) and the loop."""
        self.run(self.server.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="module")
def app_alone(tmp_path_factory: pytest.TempPathFactory, detector: LanguageDetector) -> Iterator[AppThread]:
    """The app with a dead engine (answers "briefly unavailable" in the client's language)."""
    tmp: Path = tmp_path_factory.mktemp("widget")
    port = free_port()  # the socket accepts the app's own origin only
    settings = make_settings(tmp, LOTSE_PUBLIC_URL=f"http://127.0.0.1:{port}")
    app = AppThread(bootstrap(settings, detector=detector, translator=MarkingTranslator()), port)
    yield app
    app.stop()


def _open(page: Page, url: str, name: str = "Chat öffnen") -> None:
    page.goto(url)
    page.get_by_role("button", name=name).click()
    expect(page.locator(".lotse-panel")).to_be_visible()


def _ask(page: Page, text: str) -> None:
    before = page.locator(".lotse-bot").count()
    page.locator(".lotse-input").fill(text)
    page.locator(".lotse-input").press("Enter")
    expect(page.locator(".lotse-bot")).not_to_have_count(before, timeout=30_000)


@pytest.mark.engine
def test_arabic_question_buttons_history_and_no_html(live: LiveStack, browser: Browser) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 860})
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    _open(page, live.url + "/")
    _ask(page, "كم تكلفة دورة الاندماج Integrationskurs؟")
    answer = page.locator(".lotse-bot").last
    expect(answer).to_have_attribute("lang", "ar")
    expect(answer).to_have_attribute("dir", "rtl")
    assert answer.evaluate("e => getComputedStyle(e.querySelector('.lotse-bubble')).direction") == "rtl"
    assert "Integrationskurs" in answer.inner_text()
    page.screenshot(path=str(SCREENSHOTS / "widget-ar-desktop.png"))

    buttons = answer.locator(".lotse-button")
    assert buttons.count() >= 3
    count = page.locator(".lotse-bot").count()
    buttons.first.click()
    expect(page.locator(".lotse-bot")).not_to_have_count(count, timeout=30_000)
    assert page.locator(".lotse-bot").last.get_attribute("lang") == "ar"

    page.reload()
    _open(page, live.url + "/", live.services.content.texts["ar"]["widget.open"])  # labels stay Arabic
    expect(page.locator(".lotse-client").first).to_contain_text("كم تكلفة", timeout=10_000)
    assert page.locator(".lotse-bot").count() >= 2

    attack = "<img src=x onerror=alert(1)>"
    _ask(page, attack)
    expect(page.locator(".lotse-client").last.locator(".lotse-bubble")).to_have_text(attack)
    assert page.locator(".lotse-log img").count() == 0
    assert dialogs == []
    page.close()


@pytest.mark.engine
@pytest.mark.parametrize(("lang", "width", "height"), [("de", 1280, 860), ("de", 360, 740), ("ar", 360, 740)])
def test_screenshots_and_phone_width(
    live: LiveStack, browser: Browser, lang: str, width: int, height: int
) -> None:
    page = browser.new_page(viewport={"width": width, "height": height})
    page.add_init_script(f"localStorage.setItem('lotse.lang', '{lang}')")
    page.goto(live.url + "/")
    page.locator(".lotse-launcher").click()
    question = {"de": "Was kostet der Integrationskurs?", "ar": "كيف أسجل في دورة الاندماج؟"}[lang]
    _ask(page, question)
    panel = page.locator(".lotse-panel").bounding_box()
    assert panel is not None and panel["width"] <= width and panel["x"] >= 0
    for control in (
        page.locator(".lotse-send"),
        page.locator(".lotse-close"),
        page.locator(".lotse-button").first,
    ):
        box = control.bounding_box()
        assert box is not None and box["height"] >= 44 and box["width"] >= 44, (
            "touch targets of at least 44 px"
        )
    kind = "desktop" if width > 400 else "phone"
    if not (lang == "ar" and kind == "desktop"):
        page.screenshot(path=str(SCREENSHOTS / f"widget-{lang}-{kind}.png"))
    page.close()


@pytest.mark.engine
def test_keyboard_only_use(live: LiveStack, browser: Browser) -> None:
    page = browser.new_page()
    page.goto(live.url + "/")
    page.locator(".lotse-launcher").focus()
    page.keyboard.press("Enter")
    expect(page.locator(".lotse-input")).to_be_focused()
    page.keyboard.type("Hallo")
    page.keyboard.press("Enter")
    expect(page.locator(".lotse-bot")).not_to_have_count(0, timeout=30_000)
    page.keyboard.press("Escape")
    expect(page.locator(".lotse-panel")).to_be_hidden()
    expect(page.locator(".lotse-launcher")).to_be_focused()
    assert page.locator(".lotse-log").get_attribute("aria-live") == "polite"
    page.close()


@pytest.mark.parametrize(
    ("lang", "question"),
    [
        ("uk", "Які документи потрібні для визнання мого диплома інженера?"),
        ("ar", "كيف أسجل في دورة الاندماج؟"),
    ],
)
def test_labels_follow_the_language_the_client_writes_in(
    app_alone: AppThread, browser: Browser, lang: str, question: str
) -> None:
    texts = app_alone.services.content.texts
    page = browser.new_page(viewport={"width": 420, "height": 860})
    _open(page, app_alone.url + "/")
    expect(page.locator(".lotse-send")).to_have_text(texts["de"]["widget.send"])
    _ask(page, question)
    expect(page.locator(".lotse-bot").last).to_have_attribute("lang", lang)
    panel = page.locator(".lotse-panel")
    expect(panel).to_have_attribute("lang", lang)
    expect(panel).to_have_attribute("dir", "rtl" if lang == "ar" else "ltr")
    expect(page.locator(".lotse-send")).to_have_text(texts[lang]["widget.send"])
    expect(page.locator(".lotse-input")).to_have_attribute("placeholder", texts[lang]["widget.placeholder"])
    expect(page.locator(".lotse-input")).to_have_accessible_name(texts[lang]["widget.placeholder"])
    expect(page.locator(".lotse-title")).to_have_text(texts[lang]["widget.title"])
    expect(page.locator(".lotse-close")).to_have_accessible_name(texts[lang]["widget.close"])
    expect(page.locator(".lotse-lang")).to_have_value(lang)

    page.reload()  # the language is kept with the session
    _open(page, app_alone.url + "/", texts[lang]["widget.open"])
    expect(page.locator(".lotse-send")).to_have_text(texts[lang]["widget.send"])
    page.close()


def test_an_adviser_reply_is_marked_once_and_no_typing_indicator_waits_for_the_bot(
    app_alone: AppThread, browser: Browser
) -> None:
    services = app_alone.services
    uk = services.content.texts["uk"]
    mark = uk["translation.machine"]
    claimed = app_alone.run(claimed_ticket(services, "widget"))
    page = browser.new_page(viewport={"width": 420, "height": 860})
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.add_init_script(
        f"localStorage.setItem('lotse.session', '{claimed.external_id}');"
        "localStorage.setItem('lotse.lang', 'uk')"
    )
    _open(page, app_alone.url + "/", uk["widget.open"])
    # The history arrives after the session is confirmed: from here on the socket is in the session's room.
    expect(page.locator(".lotse-client").first).to_contain_text(claimed.opened.turn.text)

    reply = "Guten Tag, welchen Abschluss haben Sie?"
    app_alone.run(services.handoff.send(claimed.opened.ticket_id, claimed.adviser, reply))
    answer = page.locator(".lotse-bot", has_text=f"[de->uk] {reply}")
    expect(answer).to_have_count(1)
    expect(answer.locator(".lotse-mt")).to_have_count(1)
    expect(answer.locator(".lotse-mt")).to_have_text(mark)
    assert answer.inner_text().count(mark) == 1, answer.inner_text()

    bot_messages = page.locator(".lotse-bot").count()
    clients = page.locator(".lotse-client").count()
    page.locator(".lotse-input").fill("Диплом інженера-будівельника з Харкова")
    page.locator(".lotse-input").press("Enter")
    expect(page.locator(".lotse-client")).to_have_count(clients + 1)
    # Only the adviser answers now: the bot's typing indicator goes with the server's acknowledgement.
    expect(page.locator(".lotse-typing")).to_have_count(0, timeout=2_000)
    sent = page.locator(".lotse-client").last.locator(".lotse-sent")
    expect(sent).to_have_text(uk["widget.forwarded"])
    expect(sent).to_have_attribute("lang", "uk")
    assert page.locator(".lotse-bot").count() == bot_messages

    page.reload()
    _open(page, app_alone.url + "/", uk["widget.open"])
    answer = page.locator(".lotse-bot", has_text=f"[de->uk] {reply}")
    expect(answer.locator(".lotse-mt")).to_have_count(1)
    assert answer.inner_text().count(mark) == 1, answer.inner_text()
    # The "passed on" note is stored with the message and comes back with the history.
    forwarded = page.locator(".lotse-client", has_text="Диплом інженера-будівельника з Харкова")
    expect(forwarded.locator(".lotse-sent")).to_have_text(uk["widget.forwarded"])
    expect(forwarded.locator(".lotse-sent")).to_have_attribute("lang", "uk")
    expect(page.locator(".lotse-sent")).to_have_count(1)
    assert problems == []
    page.close()
