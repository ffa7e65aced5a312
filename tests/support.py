"""Helpers the tests import by name. They live here, not in a conftest: with one
conftest per package, `from conftest import ...` picks whichever conftest was loaded last."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

BROWSER_TIMEOUT_MS = 60_000


def fixture_pseudonym(i: int) -> str:
    """A pseudonym shaped like the real ones: 'u_' + 32 hex digits (128 bits)."""
    return "u_" + hashlib.sha256(f"fixture-customer-{i}".encode()).hexdigest()[:32]


def wait_until_rendered(page, url: str) -> None:
    """Load `url` and wait until Streamlit has finished running the page script."""
    page.goto(url, timeout=BROWSER_TIMEOUT_MS)
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']",
                           timeout=BROWSER_TIMEOUT_MS)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_health(base_url: str, proc: subprocess.Popen, log: Path, *,
                    timeout_s: float) -> None:
    """Wait until the Streamlit server at `base_url` answers its health check; fail with
    its log if it exits or does not answer in time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{base_url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    pytest.fail(f"no answer on {base_url} in {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")
