"""Serve the app with its heavy parts loaded first: `python -m dashboard.serve --port N`.

A page's first view pays for whatever its process has not done yet: importing torch and
transformers, loading the latest model for explanations, compiling shap's kernels,
recomputing every ledger record's epsilon. `warm()` does all of that, then Streamlit
starts in this same process, so the first view of every page finds it done.
`warm_when_models_land()` repeats it when the model pipeline lands new models while the
server runs.
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

    import core.recommender.registry  # noqa: F401  (torch, transformers)
    import core.registry.runs  # noqa: F401
    import dashboard.components.explanations  # noqa: F401
    import privacy.audit  # noqa: F401


def warm(paths=None) -> dict[str, float]:
    """Load and compute what the first views need; returns seconds per part."""
    from core.config import Paths, use_cpu_threads
    from core.store import warehouse
    from privacy.audit import audit_report

    paths = paths or Paths()
    use_cpu_threads()
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


WATCH_S = 5


def warm_when_models_land(paths=None) -> threading.Thread:
    """A daemon thread that runs `warm` again each time the model pipeline
    (`core.cli.pipeline`) ends, so the new model is loaded before its pages are opened."""
    from core.cli import pipeline
    from core.config import Paths

    paths = paths or Paths()

    def watch() -> None:
        seen = getattr(pipeline.read_status(paths), "ended_at", None)
        while True:
            time.sleep(WATCH_S)
            ended = getattr(pipeline.read_status(paths), "ended_at", None)
            if ended != seen:
                seen = ended
                warm(paths)

    thread = threading.Thread(target=watch, name="warm-on-new-models", daemon=True)
    thread.start()
    return thread


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8501)
    parser.add_argument("--address", default="localhost")
    args = parser.parse_args(argv)
    took = warm()
    print("Warmed up: " + ", ".join(f"{k} {v:.1f} s" for k, v in took.items()), flush=True)
    warm_when_models_land()
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(APP), "--server.address", args.address,
                "--server.port", str(args.port), "--server.headless", "true",
                "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"]
    cli.main()


if __name__ == "__main__":
    main()
