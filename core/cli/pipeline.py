"""The demo's model pipeline: train, audit, score, sentiment, sized to the data it finds.

`plan(paths)` reads how many customers and reviewers the warehouse holds and returns the
steps with settings derived from those sizes (a step that the data cannot support is
planned as skipped, with the reason). `run(steps, paths)` runs them in order in this
process and keeps `<data>/pipeline_status.json` up to date (written atomically), which
the app reads to show progress and a failed step's message. A failing step stops the
chain; its message is in the status file and the log.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.config import Paths

STATUS_FILE = "pipeline_status.json"
LOG_FILE = "demo_pipeline.log"

# Demo settings at their largest: a demo, not a benchmark (minutes on 2 cores).
MAX_TRAIN_CUSTOMERS = 600
MAX_EVAL_USERS = 100
MAX_REVIEWERS = 400
EXPLAINED_CUSTOMERS = 3  # profiles whose reasons are ready before anyone opens them
# Below these the step says it is skipped rather than failing or saying nothing.
MIN_TRAIN_CUSTOMERS = 20
MIN_REVIEWERS = 30


@dataclass
class Step:
    """One `clearmark` command of the pipeline and what became of it."""

    name: str
    label: str
    argv: list[str]
    state: str = "pending"  # pending, running, done, skipped, failed
    message: str = ""
    started_at: float | None = None
    ended_at: float | None = None


@dataclass
class Status:
    """What `pipeline_status.json` holds."""

    state: str  # running, done, failed
    steps: list[Step]
    pid: int = field(default_factory=os.getpid)
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    log: str = ""

    @property
    def current(self) -> Step | None:
        return next((s for s in self.steps if s.state == "running"), None)

    @property
    def failed(self) -> Step | None:
        return next((s for s in self.steps if s.state == "failed"), None)

    def alive(self) -> bool:
        """False when the status says running but its process is gone (killed, crashed)."""
        if self.state != "running":
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def status_path(paths: Paths) -> Path:
    return paths.data_dir / STATUS_FILE


def write_status(status: Status, paths: Paths) -> None:
    path = status_path(paths)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(status), indent=2))
    os.replace(tmp, path)  # readers never see half a file


def read_status(paths: Paths) -> Status | None:
    """The last pipeline's status, or None when no pipeline ran in this data folder."""
    try:
        raw = json.loads(status_path(paths).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return Status(state=raw["state"], steps=[Step(**s) for s in raw["steps"]], pid=raw["pid"],
                  started_at=raw["started_at"], ended_at=raw.get("ended_at"),
                  log=raw.get("log", ""))


def data_sizes(paths: Paths) -> dict[str, int]:
    """Customers with events, reviewers and reviews in the warehouse (0 when empty)."""
    from core.store.warehouse import query

    row = query("pipeline_sizes", paths).iloc[0]
    return {k: int(row[k]) for k in ("customers", "reviewers", "reviews")}


def plan(paths: Paths, sizes: dict[str, int] | None = None) -> list[Step]:
    """The demo's steps with settings derived from the data's size."""
    sizes = sizes if sizes is not None else data_sizes(paths)
    customers, reviewers = sizes["customers"], sizes["reviewers"]
    eval_users = max(10, min(MAX_EVAL_USERS, customers // 10))
    train = Step("train", "Train the DP recommender",
                 ["train", "--epsilon", "3", "--epochs", "1",
                  "--max-customers", str(min(MAX_TRAIN_CUSTOMERS, customers)),
                  "--eval-users", str(eval_users), "--audit-pool", "auto", "--quiet"])
    steps = [train,
             Step("audit", "Membership audit of the recommender",
                  ["audit", "membership", "--quiet"]),
             Step("score", "Score every customer (top 10)", ["score", "--quiet"]),
             Step("explain", "Explain the most active customers' recommendations",
                  ["explain-precompute", "--customers", str(EXPLAINED_CUSTOMERS), "--quiet"]),
             Step("sentiment-train", "Train the DP sentiment model",
                  ["sentiment", "train", "--epsilon", "8", "--epochs", "1",
                   "--max-reviewers", str(min(MAX_REVIEWERS, reviewers))]),
             Step("sentiment-score", "Score every review's sentiment", ["sentiment", "score"])]
    if customers < MIN_TRAIN_CUSTOMERS:
        for step in steps[:4]:
            step.state, step.message = "skipped", (
                f"{customers} customers with events: the recommender needs at least "
                f"{MIN_TRAIN_CUSTOMERS}. Ingest more data, then run `clearmark pipeline`.")
    if reviewers < MIN_REVIEWERS:
        for step in steps[4:]:
            step.state, step.message = "skipped", (
                f"{reviewers} reviewers: the sentiment model needs at least {MIN_REVIEWERS}. "
                "Ingest more reviews, then run `clearmark pipeline`.")
    return steps


def _audit_skip_reason(paths: Paths) -> str | None:
    """Why the membership audit cannot run on the latest recommender, or None."""
    from core.recommender.registry import latest_run, load

    run_id = latest_run(paths)
    if run_id is None:
        return "no trained recommender to audit."
    if not load(run_id, paths).config.get("membership_pool"):
        return (f"run {run_id} has no membership audit pool: too few training customers "
                "to leave half of a pool out (see its ledger note).")
    return None


# Checked just before a step starts: a reason to skip it, or None.
PRECONDITIONS: dict[str, Callable[[Paths], str | None]] = {"audit": _audit_skip_reason}


def run(steps: Sequence[Step], paths: Paths, execute: Callable[[list[str]], str | None], *,
        log: Path | None = None, echo: Callable[[str], None] = print) -> Status:
    """Run `steps` in order with `execute(argv)` (returns an error message or None),
    keeping the status file current. Stops at the first failed step."""
    status = Status(state="running", steps=list(steps), log=str(log or ""))
    write_status(status, paths)
    for step in status.steps:
        if step.state == "skipped":
            echo(f"skipped: {step.label}: {step.message}")
            continue
        reason = PRECONDITIONS.get(step.name, lambda _: None)(paths)
        if reason:
            step.state, step.message = "skipped", reason
            echo(f"skipped: {step.label}: {reason}")
            write_status(status, paths)
            continue
        step.state, step.started_at = "running", time.time()
        write_status(status, paths)
        echo(f"clearmark {' '.join(step.argv)}")
        try:
            error = execute(step.argv)
        except Exception as exc:  # a crash: keep its message for the app, the trace in the log
            traceback.print_exc()
            error = f"{type(exc).__name__}: {exc}"
        step.ended_at = time.time()
        if error:
            step.state, step.message = "failed", error
            status.state, status.ended_at = "failed", time.time()
            write_status(status, paths)
            return status
        step.state = "done"
        write_status(status, paths)
    status.state, status.ended_at = "done", time.time()
    write_status(status, paths)
    return status
