"""The main job, as a new user runs it: `clearmark demo` (what `make run` calls) with its
models, then every page in a real browser.

The demo serves the app at once and builds the models in the background; the test
watches the sidebar say so, waits for the pipeline to end, and then checks that each
page shows its content: a run on Models, ten recommendations with their reasons on the
profile, a campaign created and scored on Campaigns, sentiment charts, the verified
ledger on Privacy. Small data (200 customers) keeps it to a few minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import BROWSER_TIMEOUT_MS, free_port, wait_for_health, wait_until_rendered

ROOT = Path(__file__).resolve().parents[2]
CUSTOMERS = 200
SERVE_TIMEOUT_S = 300
PIPELINE_TIMEOUT_S = 1200


def _pipeline_status(data_dir: Path) -> dict:
    path = data_dir / "pipeline_status.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _wait_for_pipeline(data_dir: Path) -> dict:
    deadline = time.monotonic() + PIPELINE_TIMEOUT_S
    while time.monotonic() < deadline:
        status = _pipeline_status(data_dir)
        if status.get("state") in ("done", "failed"):
            return status
        time.sleep(3)
    pytest.fail(f"the model pipeline did not end in {PIPELINE_TIMEOUT_S} s: "
                f"{_pipeline_status(data_dir)}")


def _no_exceptions(page, name: str) -> None:
    shown = page.locator("[data-testid='stException']")
    assert shown.count() == 0, f"{name}: {shown.first.inner_text()}"


def _open(page, url: str, title: str) -> None:
    wait_until_rendered(page, url)
    page.get_by_role("heading", name=title, level=1).wait_for(timeout=BROWSER_TIMEOUT_MS)


def _stop(proc: subprocess.Popen, data_dir: Path) -> None:
    pids = [proc.pid, _pipeline_status(data_dir).get("pid")]
    for pid in filter(None, pids):  # the app and the pipeline each lead a process group
        try:
            os.killpg(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.browser
@pytest.mark.slow
def test_demo_fills_every_page(tmp_path, browser_page):
    data_dir = tmp_path / "data"
    env = {**os.environ, "CLEARMARK_DATA": str(data_dir),
           "CLEARMARK_KEY_FILE": str(tmp_path / "key" / "demo.key"),
           "CLEARMARK_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("CLEARMARK_WAREHOUSE", None)
    env.pop("CLEARMARK_KEY", None)
    subprocess.run([sys.executable, "-m", "core.cli", "key", "create", "--path",
                    env["CLEARMARK_KEY_FILE"]], env=env, cwd=ROOT, check=True)
    port = free_port()
    url = f"http://localhost:{port}"
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "core.cli", "demo", "--customers",
                                 str(CUSTOMERS), "--port", str(port)], env=env, cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    page = browser_page
    page.set_viewport_size({"width": 1400, "height": 2400})
    try:
        wait_for_health(url, proc, log, timeout_s=SERVE_TIMEOUT_S)

        # while the models are built, the sidebar says so
        _open(page, url, "Overview")
        sidebar = page.locator("[data-testid='stSidebar']")
        sidebar.get_by_text("Model pipeline").wait_for(timeout=BROWSER_TIMEOUT_MS)

        status = _wait_for_pipeline(data_dir)
        pipeline_log = (data_dir / "demo_pipeline.log")
        assert status["state"] == "done", (
            f"{[(s['name'], s['state'], s['message']) for s in status['steps']]}\n"
            f"{pipeline_log.read_text()[-3000:] if pipeline_log.exists() else ''}")
        states = {s["name"]: s["state"] for s in status["steps"]}
        assert all(states[n] == "done" for n in ("train", "score", "explain",
                                                  "sentiment-train", "sentiment-score")), states

        _open(page, url, "Overview")
        page.locator("[data-testid='stSidebar']").get_by_text("Models built").wait_for(
            timeout=BROWSER_TIMEOUT_MS)
        _no_exceptions(page, "Overview")

        run_id = next(p.name for p in (data_dir / "models").glob("ce_*"))
        _open(page, f"{url}/models", "Models")
        main = page.locator("[data-testid='stMain']")
        main.get_by_text("Ranking quality next to the baselines").wait_for(
            timeout=BROWSER_TIMEOUT_MS)
        page.wait_for_function(  # the run picker shows the pipeline's run
            "id => document.querySelector(\"[data-testid='stMain']\").innerText.includes(id)",
            arg=run_id, timeout=BROWSER_TIMEOUT_MS)
        _no_exceptions(page, "Models")

        _open(page, f"{url}/profile", "Customer profile")
        main = page.locator("[data-testid='stMain']")
        main.get_by_text("Why these recommendations").wait_for(timeout=BROWSER_TIMEOUT_MS)
        main.get_by_text("Top-10 recommendations").wait_for(timeout=BROWSER_TIMEOUT_MS)
        reasons = main.locator("[data-testid='stMarkdownContainer'] li").filter(
            has_text="#")
        assert reasons.count() == 10, [reasons.nth(i).inner_text()
                                       for i in range(reasons.count())]
        _no_exceptions(page, "Customer profile")

        _open(page, f"{url}/sentiment", "Review sentiment")
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 2",
                               timeout=BROWSER_TIMEOUT_MS)
        _no_exceptions(page, "Review sentiment")

        _open(page, f"{url}/campaigns", "Campaigns")
        page.get_by_label("Name").fill("Demo category campaign")
        page.get_by_role("button", name="Create campaign").click()
        page.get_by_text("Created").first.wait_for(timeout=BROWSER_TIMEOUT_MS)
        page.get_by_role("button", name="Score this campaign now").click()
        page.get_by_text("Customers scored").wait_for(timeout=10 * BROWSER_TIMEOUT_MS)
        _no_exceptions(page, "Campaigns")

        _open(page, f"{url}/privacy", "Privacy")
        page.locator("[data-testid='stMain']").get_by_text("Ledger verified").wait_for(
            timeout=BROWSER_TIMEOUT_MS)
        _no_exceptions(page, "Privacy")
    finally:
        _stop(proc, data_dir)
