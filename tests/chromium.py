"""Headless Chromium for the browser tier: Debian's package, driven by Playwright; CI must have it, a laptop may not.

A browser test module calls :func:`require_chromium` at import (it skips the module, or in CI fails loudly), then
uses the ``browser`` fixture of conftest.py.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.constants import TIMEOUT

if TYPE_CHECKING:
    from playwright.sync_api import Browser

__all__ = ["CHROMIUM", "FLAGS", "WAIT_MS", "launch", "require_chromium"]

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Playwright's default wait, in milliseconds.
WAIT_MS = int(TIMEOUT * 1000)


def require_chromium() -> None:
    """Skip the calling module when Chromium is missing; in CI (``CI`` set) that is an error instead."""
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        if os.environ.get("CI"):
            raise RuntimeError(f"{CHROMIUM} is missing: .ci/run must install Debian's chromium package")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium); CI installs it and never skips", allow_module_level=True)


@contextmanager
def launch() -> Iterator[Browser]:
    """A headless Chromium, closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield browser
        browser.close()
