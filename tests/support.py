"""Helpers the tests import by name. They live here, not in a conftest: with one
conftest per package, `from conftest import ...` picks whichever conftest was loaded last."""

from __future__ import annotations

import hashlib

BROWSER_TIMEOUT_MS = 60_000


def fixture_pseudonym(i: int) -> str:
    """A pseudonym shaped like the real ones: 'u_' + 64 hex digits."""
    return "u_" + hashlib.sha256(f"fixture-customer-{i}".encode()).hexdigest()


def wait_until_rendered(page, url: str) -> None:
    """Load `url` and wait until Streamlit has finished running the page script."""
    page.goto(url, timeout=BROWSER_TIMEOUT_MS)
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']",
                           timeout=BROWSER_TIMEOUT_MS)
