"""The chat page on the recoverable feed (/feed/<room>, static/wsgi-ws.js) in headless Chromium, over a real Redis.

A worker restarts under the open page: lines published while it is down are replayed once the page is back, each
exactly once and in order, and the page says how many it recovered; when Redis loses the history, the page says so.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.chromium import WAIT_MS, require_chromium
from tests.conftest import ServerFactory
from tests.constants import TIMEOUT
from tests.redis_server import REDIS, RedisServer
from tests.server import GunicornServer
from tests.waiting import wait_until
from wsgi_ws.hub import publish

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not shutil.which(REDIS), reason="redis-server missing (apt-get install redis-server); CI installs it"),
]

HISTORY_SIZE = 1000
HISTORY_TTL = 300

require_chromium()

from playwright.sync_api import Browser, Page, expect  # noqa: E402

#: Records every text #status shows (window.statusSeen), so a test can look back at states that went by quickly.
WATCH_STATUS = """() => {
  const status = document.getElementById("status");
  window.statusSeen = [status.textContent];
  new MutationObserver(() => window.statusSeen.push(status.textContent))
    .observe(status, { childList: true, characterData: true, subtree: true });
}"""


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == [], "no uncaught error in the page"


@pytest.fixture
def feed_server(start_server: ServerFactory, redis_server: RedisServer) -> GunicornServer:
    """The sample app with a Redis hub keeping history; a short graceful timeout bounds a retiring worker's life."""
    return start_server(
        "app:app",
        WS_HUB_URL=redis_server.url,
        WS_HUB_HISTORY_SIZE=str(HISTORY_SIZE),
        WS_HUB_HISTORY_TTL=str(HISTORY_TTL),
        WSGI_WS_GRACEFUL_TIMEOUT="2",
    )


def workers(server: GunicornServer) -> list[int]:
    """The gunicorn master's child processes: its workers."""
    pid = server.process.pid
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def the_worker(server: GunicornServer) -> int:
    wait_until(lambda: len(workers(server)) == 1, "the master has one worker")
    return workers(server)[0]


def exited(pid: int) -> bool:
    """True once ``pid`` has exited (gone, or a zombie its stopped parent has not reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


@contextmanager
def worker_down(server: GunicornServer) -> Iterator[int]:
    """Retire the worker (SIGTERM: 1001 to every WebSocket) and keep the feed down until the block ends.

    The master is stopped first so that it cannot fork the replacement: once the old worker has exited, nobody
    accepts, and a client's reconnects wait in the listen backlog. At the end the master goes on, reaps the old worker
    and forks a new one, which takes the waiting connection. Yields the old worker's pid.
    """
    master, worker = server.process.pid, the_worker(server)
    os.kill(master, signal.SIGSTOP)
    try:
        os.kill(worker, signal.SIGTERM)
        # A reconnect that lands on the retiring worker before it stops accepting is cut by its graceful timeout.
        wait_until(lambda: exited(worker), "the old worker exits", timeout=3 * TIMEOUT)
        yield worker
    finally:
        os.kill(master, signal.SIGCONT)


def lines(page: Page) -> list[str]:
    """The text of every message line the page shows, in order (recovery notices are not lines)."""
    return page.locator("#lines li.line .text").all_inner_texts()


def notices(page: Page) -> list[str]:
    """The recovery notices the page put among its lines, in order."""
    return page.locator("#lines li.notice").all_inner_texts()


def say(page: Page, text: str) -> None:
    page.fill("#text", text)
    page.press("#text", "Enter")


def open_chat(page: Page, server: GunicornServer, room: str) -> None:
    page.goto(f"{server.http_url}/chat?room={room}")
    expect(page.locator("#status")).to_have_text("connected")
    page.evaluate(WATCH_STATUS)
    page.fill("#name", "page")


@pytest.mark.timeout(120)
def test_lines_published_while_the_worker_restarts_reach_the_page_once_each_and_in_order(
    page: Page, feed_server: GunicornServer, redis_server: RedisServer
) -> None:
    open_chat(page, feed_server, "t")
    say(page, "hello before the restart")
    expect(page.locator("#lines li.line")).to_have_count(1)
    expect(page.locator("#lines li.line").first).to_contain_text("page:hello before the restart")
    assert notices(page) == [] and page.locator("#notice").is_hidden(), "a first connect recovers nothing and says nothing"
    assert page.evaluate("feed.position"), "the page knows where it stands"

    down = [f"published while down {number}" for number in range(20)]
    with worker_down(feed_server) as old_worker:
        expect(page.locator("#status")).to_have_attribute("data-state", "reconnecting")
        for text in down:
            publish(redis_server.url, "t", text, history_size=HISTORY_SIZE, history_ttl=HISTORY_TTL)
        say(page, "sent while down")  # queued by the page until it has joined again
        expect(page.locator("#lines li.line")).to_have_count(1)

    expect(page.locator("#status")).to_have_text("connected", timeout=3 * WAIT_MS)
    expect(page.locator("#notice")).to_have_text("recovered 20 messages")
    expect(page.locator("#lines li.line")).to_have_count(22)
    after = [f"published after {number}" for number in range(5)]
    for text in after:
        publish(redis_server.url, "t", text, history_size=HISTORY_SIZE, history_ttl=HISTORY_TTL)
    expect(page.locator("#lines li.line")).to_have_count(27)

    assert lines(page) == ["hello before the restart", *down, "sent while down", *after]
    assert notices(page) == ["recovered 20 messages"], "recovered, and told so once; nothing was lost"
    kinds = page.locator("#lines li").evaluate_all("items => items.map(item => item.className)")
    assert kinds == ["line", "notice", *["line"] * 26], "the notice stands where the replayed lines begin"
    seen: list[str] = page.evaluate("window.statusSeen")
    assert any(text.startswith("connection lost (code 1001") for text in seen), seen
    assert the_worker(feed_server) != old_worker


@pytest.mark.timeout(120)
def test_the_page_says_so_when_redis_lost_the_history(page: Page, feed_server: GunicornServer, redis_server: RedisServer) -> None:
    open_chat(page, feed_server, "lossy")
    say(page, "before redis restarts")
    expect(page.locator("#lines li.line")).to_have_count(1)
    redis_server.stop()
    redis_server.start()  # same port, empty: the room's history and its epoch are gone
    with worker_down(feed_server):  # the page comes back with ?since=, which the empty Redis cannot answer
        expect(page.locator("#status")).to_have_attribute("data-state", "reconnecting")
    expect(page.locator("#notice")).to_have_text("some messages could not be recovered")
    expect(page.locator("#status")).to_have_text("connected")
    say(page, "after redis restarts")
    expect(page.locator("#lines li.line")).to_have_count(2)
    assert lines(page) == ["before redis restarts", "after redis restarts"]
    assert notices(page) and set(notices(page)) == {"some messages could not be recovered"}, notices(page)
