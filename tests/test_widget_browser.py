"""The web chat widget in real headless Chromium (Debian's package) against the live app and engine."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from bot.settings import ROOT
from tests.conftest import LiveStack

pytestmark = [pytest.mark.engine, pytest.mark.browser]

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


def _open(page: Page, url: str) -> None:
    page.goto(url)
    page.get_by_role("button", name="Chat öffnen").click()
    expect(page.locator(".lotse-panel")).to_be_visible()


def _ask(page: Page, text: str) -> None:
    before = page.locator(".lotse-bot").count()
    page.locator(".lotse-input").fill(text)
    page.locator(".lotse-input").press("Enter")
    expect(page.locator(".lotse-bot")).not_to_have_count(before, timeout=30_000)


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
    _open(page, live.url + "/")
    expect(page.locator(".lotse-client").first).to_contain_text("كم تكلفة", timeout=10_000)
    assert page.locator(".lotse-bot").count() >= 2

    attack = "<img src=x onerror=alert(1)>"
    _ask(page, attack)
    expect(page.locator(".lotse-client").last.locator(".lotse-bubble")).to_have_text(attack)
    assert page.locator(".lotse-log img").count() == 0
    assert dialogs == []
    page.close()


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
