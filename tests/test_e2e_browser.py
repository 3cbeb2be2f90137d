"""End to end in headless Chromium (Debian's package, driven by Playwright) against the sample app's test page."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.chromium import WAIT_MS, require_chromium
from tests.conftest import ServerFactory
from tests.server import ROOT, GunicornServer

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "test-artifacts"
require_chromium()

from playwright.sync_api import Browser, Dialog, Page, expect  # noqa: E402


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    dialogs: list[str] = []

    def dismiss(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    page.dialogs = dialogs  # type: ignore[attr-defined]
    yield page
    context.close()


def log_lines(page: Page) -> list[str]:
    return page.locator("#log li").all_inner_texts()


def test_page_connects_echoes_text_and_binary_and_closes_with_custom_code(page: Page, echo_server: GunicornServer) -> None:
    page.goto(f"{echo_server.http_url}/")
    status = page.locator("#status")
    expect(status).to_have_text("ready to connect")
    expect(page.locator("#url")).to_have_value(f"ws://127.0.0.1:{echo_server.port}/ws")
    expect(page.locator("#send")).to_be_disabled()
    expect(page.locator("#close")).to_be_disabled()

    page.click("#connect")
    expect(status).to_have_attribute("data-state", "open")
    expect(page.locator("#connect")).to_be_disabled()
    expect(page.locator("#send")).to_be_enabled()

    page.fill("#message", "hello from chromium ✓")
    page.click("#send")
    expect(page.locator("#log li[data-kind=receive]").last).to_contain_text("hello from chromium ✓")

    page.check("input[value=binary]")
    page.fill("#message", "bin")
    page.press("#message", "Enter")  # Enter sends too
    expect(page.locator("#log li[data-kind=receive]").last).to_contain_text("binary, 3 bytes: 62 69 6e")

    page.check("input[value=text]")
    injection = "<img src=x onerror=alert(1)>"
    page.fill("#message", injection)
    page.click("#send")
    expect(page.locator("#log li[data-kind=receive]").last.locator(".data")).to_have_text(injection)
    assert page.locator("#log img").count() == 0
    assert page.dialogs == []  # type: ignore[attr-defined]

    page.fill("#close-code", "4000")
    page.fill("#close-reason", "bye now")
    page.click("#close")
    expect(status).to_have_text("closed (code 4000, reason “bye now”, clean)")
    expect(page.locator("#connect")).to_be_enabled()
    expect(page.locator("#send")).to_be_disabled()

    kinds = page.locator("#log li").evaluate_all("items => items.map(item => item.dataset.kind)")
    assert kinds[:3] == ["info", "open", "send"] and kinds[-1] == "close"
    assert all(line.split("\n")[0].count(":") == 2 for line in log_lines(page)), "every log line starts with its time"

    page.click("#connect")  # reconnect
    expect(status).to_have_attribute("data-state", "open")
    page.fill("#message", "again")
    page.click("#send")
    expect(page.locator("#log li[data-kind=receive]").last).to_contain_text("again")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-session.png"), full_page=True)
    assert (ARTIFACTS / "browser-session.png").stat().st_size > 10_000

    page.click("#clear")
    assert page.locator("#log li").count() == 0


def test_page_links_the_other_pages_and_the_clock_link_connects_to_clock(page: Page, echo_server: GunicornServer) -> None:
    page.goto(f"{echo_server.http_url}/")
    assert page.locator("nav a[href='/chat']").count() == 1 and page.locator("nav a[href='/stats']").count() == 1
    assert page.locator("nav a[href='/metrics']").count() == 1
    page.click("nav a[href='/?path=/clock']")
    expect(page.locator("#url")).to_have_value(f"ws://127.0.0.1:{echo_server.port}/clock")
    page.click("#connect")
    expect(page.locator("#status")).to_have_attribute("data-state", "open")
    expect(page.locator("#log li[data-kind=receive]").first).to_contain_text('"tick": 1')


def test_page_reports_failure_when_the_origin_is_refused(page: Page, start_server: ServerFactory) -> None:
    server = start_server("app:app", WS_ALLOWED_ORIGINS="https://only.example")
    page.goto(f"{server.http_url}/")
    page.click("#connect")
    status = page.locator("#status")
    expect(status).to_have_attribute("data-state", "failed")
    expect(status).to_contain_text("refused")
    expect(page.locator("#connect")).to_be_enabled()
    assert f"origin 'http://127.0.0.1:{server.port}' is not allowed" in server.log()


def test_page_fits_a_phone_screen(browser: Browser, echo_server: GunicornServer) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 740}, device_scale_factor=2)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{echo_server.http_url}/")
    page.click("#connect")
    expect(page.locator("#status")).to_have_attribute("data-state", "open")
    page.fill("#message", "a long message " * 20)
    page.click("#send")
    expect(page.locator("#log li[data-kind=receive]")).to_have_count(1)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"page is {overflow}px wider than the phone screen"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-phone.png"), full_page=True)
    context.close()


def test_page_works_offline_with_no_outside_requests(page: Page, echo_server: GunicornServer) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{echo_server.http_url}/")
    page.click("#connect")
    expect(page.locator("#status")).to_have_attribute("data-state", "open")
    assert requested and all(
        url.startswith(f"http://127.0.0.1:{echo_server.port}/") or url.startswith("ws://127.0.0.1") for url in requested
    )


def test_page_over_https_connects_with_wss(browser: Browser, start_server: ServerFactory, certificate: tuple[str, str]) -> None:
    cert, key = certificate
    server = start_server("app:app", WSGI_WS_CERTFILE=cert, WSGI_WS_KEYFILE=key)
    context = browser.new_context(ignore_https_errors=True)  # the test's self-signed certificate, in this test only
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(f"https://127.0.0.1:{server.port}/")
    expect(page.locator("#url")).to_have_value(f"wss://127.0.0.1:{server.port}/ws")
    page.click("#connect")
    expect(page.locator("#status")).to_have_attribute("data-state", "open")
    page.fill("#message", "over tls")
    page.click("#send")
    expect(page.locator("#log li[data-kind=receive]").last).to_contain_text("over tls")
    page.click("#close")
    expect(page.locator("#status")).to_have_text("closed (code 1000, clean)")
    context.close()


def test_chromium_negotiates_permessage_deflate_when_enabled(page: Page, start_server: ServerFactory) -> None:
    server = start_server("app:app", WS_COMPRESSION="true")
    page.goto(f"{server.http_url}/")
    page.click("#connect")
    expect(page.locator("#status")).to_have_attribute("data-state", "open")
    assert page.evaluate("socket.extensions").startswith("permessage-deflate")
    page.fill("#message", "squeeze me " * 50)
    page.click("#send")
    expect(page.locator("#log li[data-kind=receive]").last).to_contain_text("squeeze me squeeze me")
    assert "server_max_window_bits=12" in page.evaluate("socket.extensions")


def test_chat_tabs_on_two_workers_see_each_others_messages(browser: Browser, start_server: ServerFactory) -> None:
    from tests.redis_server import RedisServer

    redis_server = RedisServer()
    try:
        server = start_server("app:app", WS_HUB_URL=redis_server.url, WSGI_WS_WORKERS="2")
        context = browser.new_context()
        tabs = [context.new_page() for _ in range(3)]
        for index, tab in enumerate(tabs):
            tab.set_default_timeout(WAIT_MS)
            tab.goto(f"{server.http_url}/chat")
            expect(tab.locator("#status")).to_have_text("connected")
            tab.fill("#name", f"tab{index}")
        tabs[0].fill("#text", "hello from tab 0")
        tabs[0].press("#text", "Enter")
        tabs[2].fill("#text", "<b>not bold</b>")
        tabs[2].click("#send")
        for tab in tabs:
            expect(tab.locator("#lines li")).to_have_count(2)
            expect(tab.locator("#lines li").nth(0)).to_contain_text("tab0:hello from tab 0")
            expect(tab.locator("#lines li").nth(1)).to_contain_text("tab2:<b>not bold</b>")
            assert tab.locator("#lines b").count() == 0
        ARTIFACTS.mkdir(exist_ok=True)
        tabs[1].screenshot(path=str(ARTIFACTS / "chat.png"))
        context.close()
    finally:
        redis_server.stop()
