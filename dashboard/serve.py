"""Serve the app with its heavy parts loaded first: `python -m dashboard.serve --port N`.

A page's first view pays for whatever its process has not done yet: importing torch and
transformers (about 4 s here), loading the latest model for explanations, compiling
shap's kernels, recomputing every ledger record's epsilon. `warm()` does all of that,
then Streamlit starts in this same process, so the first view of every page finds it
done. `warm_in_background()` repeats it when the model pipeline lands new models while
the server runs.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "dashboard" / "app.py"


def preload() -> None:
    """Import what the pages import (module imports happen once per process)."""
    import plotly.express  # noqa: F401
    import plotly.graph_objects  # noqa: F401
    import scipy.stats  # noqa: F401  (the Privacy page's Gaussian-DP approximation)

    import core.registry.runs  # noqa: F401
    import core.registry.store  # noqa: F401  (torch, transformers)
    import explain.panel  # noqa: F401
    import privacy.audit  # noqa: F401


def warm(paths=None) -> dict[str, float]:
    """Load and compute what the first views need; returns seconds per part."""
    from core.config import Paths
    from core.store import warehouse
    from privacy.audit import audit_report

    paths = paths or Paths()
    took: dict[str, float] = {}
    started = time.perf_counter()
    preload()
    took["imports"] = time.perf_counter() - started
    if paths.ledger.exists():
        started = time.perf_counter()
        audit_report(ledger_path=paths.ledger, budgets_path=paths.budgets)  # memoized ε
        took["ledger epsilons"] = time.perf_counter() - started
    try:
        scored = (warehouse.query("latest_scored_run", paths)
                  if warehouse.query("table_exists", paths, table_name="recommendations")
                  ["present"].iloc[0] else None)
    except warehouse.WarehouseMissing:  # nothing ingested yet
        scored = None
    if scored is not None and not scored.empty:
        from explain.service import get_service
        from explain.warmup import warm_up

        started = time.perf_counter()
        service = get_service(str(scored["run_id"].iloc[0]), paths)
        service.trained_items  # noqa: B018  (loads the interactions and item records)
        warm_up()
        took["explanation model"] = time.perf_counter() - started
    return took


_WARMING = threading.Lock()


def warm_in_background(paths=None) -> None:
    """`warm` in a daemon thread, unless one is already running."""
    def job() -> None:
        with _WARMING:
            warm(paths)

    if not _WARMING.locked():
        threading.Thread(target=job, name="warm", daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8501)
    parser.add_argument("--address", default="localhost")
    args = parser.parse_args(argv)
    took = warm()
    print("Warmed up: " + ", ".join(f"{k} {v:.1f} s" for k, v in took.items()), flush=True)
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(APP), "--server.address", args.address,
                "--server.port", str(args.port), "--server.headless", "true",
                "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"]
    cli.main()


if __name__ == "__main__":
    main()
