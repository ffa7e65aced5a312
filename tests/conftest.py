"""Shared fixtures. Each group is named for what it provides; add new ones below."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO

import pytest

ROOT = Path(__file__).resolve().parent.parent
# pytest puts only tests/ on sys.path; the project packages need the repository
# root when the project is not pip-installed.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from support import fixture_pseudonym, free_port, wait_for_health  # noqa: E402

from core.config import Paths  # noqa: E402
from core.store.warehouse import write_transaction  # noqa: E402

APP = ROOT / "dashboard" / "app.py"


# --- warehouse fixtures ------------------------------------------------------


@pytest.fixture
def warehouse_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    """`Paths()` of an empty data directory in tmp (no warehouse file yet)."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    monkeypatch.setenv("CLEARMARK_DATA", str(data_dir))
    monkeypatch.delenv("CLEARMARK_WAREHOUSE", raising=False)
    return Paths()


SMALL_RUN_ID = "run_20250701T120000_fixture"
SMALL_MONTHS = [datetime(2025, m, 1) for m in range(1, 7)]
# Distinct customers per (event type, month): below the floor of 10 for
# purchases in the first three months and for reviews in every month (3 + 6
# cells). April to June then hide only their review cell in the month, so
# complementary suppression hides the month's next smallest cell too (add to
# cart, 12): 9 + 3 = 12 of the 30 cells are hidden.
SMALL_CUSTOMERS_PER_CELL = {
    "view": [40] * 6,
    "click": [25] * 6,
    "add_to_cart": [12] * 6,
    "purchase": [6, 6, 6, 15, 15, 15],
    "review": [5] * 6,
}
# Distinct reviewers per star: 2 and 1 star fall under the floor (2 of 5 hidden;
# together 10 reviewers, so no third star is hidden with them).
SMALL_REVIEWERS_PER_STAR = {5: 20, 4: 15, 3: 10, 2: 6, 1: 4}
SMALL_REJECTIONS = {"missing customer_id": 4, "timestamp in the future": 3, "unknown event_type": 2}


@pytest.fixture
def small_warehouse(warehouse_paths: Paths) -> Paths:
    """A small, realistic warehouse (and its read snapshot) in `warehouse_paths`.

    60 customers, 30 items, events of every type over January to June 2025,
    55 reviews (one per reviewer, every star), one ingest run with 9 rejected
    rows in 3 reasons, and a k-anonymity report (k 6 reached, target 5).
    Small cells: see SMALL_CUSTOMERS_PER_CELL and SMALL_REVIEWERS_PER_STAR.
    """
    rng = random.Random(20250701)
    users = [fixture_pseudonym(i) for i in range(60)]
    regions = ["North", "South", "East", "West"]
    user_rows = [
        (
            u,
            f"{20 + 10 * (i % 4)}-{29 + 10 * (i % 4)}",
            regions[i % 3],
            f"2024-Q{1 + i % 4}",
            SMALL_RUN_ID,
        )
        for i, u in enumerate(users)
    ]
    categories = ["Gift Cards", "Books", "Kitchen"]
    item_rows = [
        (
            f"i_{j:04d}",
            f"Fixture item {j}",
            f"Brand {j % 5}",
            categories[j % 3],
            round(5 + 2.5 * j, 2),
            f"Description of fixture item {j}.",
            SMALL_RUN_ID,
        )
        for j in range(30)
    ]

    event_rows = []
    for event_type, per_month in SMALL_CUSTOMERS_PER_CELL.items():
        for month, n_customers in zip(SMALL_MONTHS, per_month, strict=True):
            for u in rng.sample(users, n_customers):
                for _ in range(rng.randint(1, 3)):
                    ts = month + timedelta(days=rng.randint(0, 27), seconds=rng.randint(0, 86399))
                    item = rng.choice(item_rows)[0]
                    event_rows.append((u, item, event_type, ts, rng.random() < 0.2, SMALL_RUN_ID))

    review_rows = []
    reviewers = iter(users)
    for stars, n in SMALL_REVIEWERS_PER_STAR.items():
        for _ in range(n):
            u = next(reviewers)
            item = rng.choice(item_rows)[0]
            ts = rng.choice(SMALL_MONTHS) + timedelta(days=rng.randint(0, 27))
            text = f"{stars} stars: {'great' if stars >= 4 else 'not great'} product."
            review_id = hashlib.sha256(f"{u}|{item}|{ts}|{text}".encode()).hexdigest()
            review_rows.append(
                (
                    review_id,
                    u,
                    item,
                    float(stars),
                    ts,
                    f"{stars} stars",
                    text,
                    rng.random() < 0.8,
                    rng.randint(0, 12),
                    SMALL_RUN_ID,
                )
            )

    rejected = sum(SMALL_REJECTIONS.values())
    started = datetime(2025, 7, 1, 12, 0, 0)
    with write_transaction(warehouse_paths) as con:
        con.executemany("INSERT INTO users VALUES (?, ?, ?, ?, ?)", user_rows)
        con.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?)", item_rows)
        con.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)", event_rows)
        con.executemany("INSERT INTO reviews VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", review_rows)
        con.execute(
            "INSERT INTO ingest_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                SMALL_RUN_ID,
                "demo_events.csv",
                "csv",
                "events",
                hashlib.sha256(b"fixture").hexdigest(),
                started,
                started + timedelta(seconds=4),
                len(event_rows) + rejected,
                len(event_rows),
                rejected,
                "name,email,phone",
                f"quarantine/{SMALL_RUN_ID}.csv",
            ],
        )
        con.executemany(
            "INSERT INTO ingest_rejections VALUES (?, ?, ?)",
            [(SMALL_RUN_ID, reason, n) for reason, n in SMALL_REJECTIONS.items()],
        )
        con.execute(
            "INSERT INTO anonymity_reports VALUES (?, ?, ?, ?, ?, ?)",
            [
                SMALL_RUN_ID,
                "age_band,region,signup_month",
                5,
                6,
                "age: 10-year bands; signup: quarter",
                2,
            ],
        )
    return warehouse_paths


# --- running app (a real `streamlit run` server) ------------------------------


@pytest.fixture
def running_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., str]]:
    """Factory: `running_app(data_dir) -> base_url` starts `streamlit run
    dashboard/app.py` on a free port with `CLEARMARK_DATA=data_dir` and waits
    until it answers. Every server started is terminated at teardown; its log
    is in the returned server's tmp dir (printed when it fails to start)."""
    servers: list[tuple[subprocess.Popen, IO[bytes]]] = []

    def start(data_dir: Path | str, *, timeout_s: float = 60.0) -> str:
        port = free_port()
        log_path = tmp_path_factory.mktemp("streamlit") / "server.log"
        log = log_path.open("wb")  # closed at teardown, after the server stops
        env = {**os.environ, "CLEARMARK_DATA": str(data_dir)}
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                str(APP),
                "--server.headless",
                "true",
                "--server.port",
                str(port),
                "--server.address",
                "127.0.0.1",
                "--server.fileWatcherType",
                "none",
                "--browser.gatherUsageStats",
                "false",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        servers.append((proc, log))
        base_url = f"http://127.0.0.1:{port}"
        wait_for_health(base_url, proc, log_path, timeout_s=timeout_s)
        return base_url

    yield start

    for proc, log in servers:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


# --- browser fixtures --------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture
def browser_page():
    """A Playwright page in Debian's chromium (headless). Fails, not skips, without it."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install it with `apt-get install -y chromium` "
                    "(playwright cannot download browsers here)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1000})
        finally:
            browser.close()


# --- key fixtures --------------------------------------------------------------

TEST_KEY = bytes(range(32))


@pytest.fixture
def pseudonym_key(monkeypatch: pytest.MonkeyPatch) -> bytes:
    """A fixed 256-bit test key, also set as CLEARMARK_KEY for CLI calls."""
    monkeypatch.setenv("CLEARMARK_KEY", TEST_KEY.hex())
    return TEST_KEY
