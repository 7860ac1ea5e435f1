"""A real headless browser for page tests: Debian's ``chromium`` (``apt-get install chromium``;
.ci/run installs it) driven by playwright, never playwright's own browser download. A missing
browser fails the test with what to install; it is not skipped."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = Path(os.environ.get("STREAMREC_TEST_CHROMIUM", "/usr/bin/chromium"))
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


@contextmanager
def browser_page(width: int = 1400, height: int = 1800) -> Iterator[Any]:
    """A fresh page in a fresh profile (its own --user-data-dir), closed afterwards."""
    if not CHROMIUM.exists():
        msg = f"no browser at {CHROMIUM}: apt-get install -y chromium (or STREAMREC_TEST_CHROMIUM)"
        raise AssertionError(msg)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="streamrec-chromium-") as profile:
        with sync_playwright() as pw:
            ctx = pw.chromium.launch_persistent_context(
                profile,
                executable_path=str(CHROMIUM),
                headless=True,
                args=FLAGS,
                viewport={"width": width, "height": height},
            )
            try:
                yield ctx.new_page()
            finally:
                ctx.close()
