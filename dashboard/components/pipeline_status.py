"""The sidebar box that says what the model pipeline is doing (`core.cli.pipeline`).

While the pipeline runs, the box refreshes itself every few seconds and reruns the whole
app once when the pipeline ends, so the model pages fill in without a reload. A failed
step shows its message and the log's path; a skipped step says why.
"""

from __future__ import annotations

import time

import streamlit as st

from core.cli import pipeline
from core.config import Paths

REFRESH_S = 5
_ICONS = {"done": ":material/check_circle:", "skipped": ":material/do_not_disturb_on:",
          "failed": ":material/error:", "running": ":material/progress_activity:",
          "pending": ":material/schedule:"}


def _minutes(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def _steps_markdown(status: pipeline.Status) -> str:
    lines = []
    for step in status.steps:
        took = ""
        if step.started_at and step.state in ("done", "failed"):
            took = f" ({_minutes((step.ended_at or time.time()) - step.started_at)})"
        elif step.started_at and step.state == "running":
            took = f" (running {_minutes(time.time() - step.started_at)})"
        lines.append(f"- {_ICONS[step.state]} {step.label}{took}")
        if step.state == "skipped" and step.message:
            lines.append(f"  \n  :gray[skipped: {step.message}]")
    return "\n".join(lines)


def _render(paths: Paths, was_running: bool) -> None:
    status = pipeline.read_status(paths)
    if status is None:
        return
    running = status.state == "running" and status.alive()
    if was_running and not running:
        st.rerun(scope="app")  # the models just landed: redraw the page with them
    done = sum(s.state in ("done", "skipped") for s in status.steps)
    if running:
        current = status.current
        st.progress(done / len(status.steps),
                    text=f"Building the models: step {done + 1} of {len(status.steps)}"
                         + (f": {current.label}" if current else ""))
        st.caption("The model pages fill in when their step is done; this box updates "
                   "itself.")
    elif status.state == "running":
        st.error(f"The model pipeline stopped unexpectedly (process {status.pid} is gone). "
                 f"Log: `{status.log}`. Run `clearmark pipeline` to build the models.",
                 icon=":material/error:")
    elif status.failed is not None:
        failed = status.failed
        st.error(f"**{failed.label}** failed: {failed.message}\n\nLog: `{status.log}`. Fix it, "
                 "then run `clearmark pipeline`.", icon=":material/error:")
    else:
        st.success(f"Models built in {_minutes((status.ended_at or 0) - status.started_at)}.",
                   icon=":material/check_circle:")
    with st.expander("Model pipeline", expanded=running or status.failed is not None):
        st.markdown(_steps_markdown(status))


def render_sidebar(paths: Paths | None = None) -> None:
    """The pipeline box in the sidebar (nothing when no pipeline ran here)."""
    paths = paths or Paths()
    status = pipeline.read_status(paths)
    if status is None:
        return
    running = status.state == "running" and status.alive()
    # A fragment reruns alone: only this box refreshes while the pipeline runs.
    box = st.fragment(run_every=REFRESH_S if running else None)(_render)
    with st.sidebar:
        box(paths, running)
