"""The whole benchmark suite in one command: run every benchmark, print one table.

Run from the repository root:

    .venv/bin/python -m bench.suite --quick     # smoke check of every benchmark (about 10 minutes)
    .venv/bin/python -m bench.suite             # the full suite (hours on 2 cores)
    .venv/bin/python -m bench.suite --only dp_step explain

Each benchmark runs as its own process (`python -m bench.<name>`, so its peak memory
and failures are its own) and writes its JSON under bench/results/ as usual; the suite
then reads those files and writes ``bench/results/suite.json`` and ``suite.md``
(``suite_quick.*`` with --quick): the machine description, each benchmark's exit
status and wall time, and its headline figures next to the issue targets. A benchmark
that needs data this machine does not have (the Amazon files under ../shared) exits
non-zero and is listed as such; the others still run. Timings inside the benchmarks
are medians over repeats; ratios are taken within one benchmark's run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.machine import QUICK_ENV, RESULTS, describe
from core.config import Paths

Row = tuple[str, object, object, bool | None]  # (figure, measured, target, hit)


@dataclass(frozen=True)
class Bench:
    name: str  # module under bench/
    result: str  # result file stem (full run; a quick run writes <result>_quick)
    full_args: tuple[str, ...] = ()
    quick_args: tuple[str, ...] = ("--quick",)
    rows: Callable[[dict], list[Row]] = field(default=lambda d: target_rows(d))


def target_rows(result: dict) -> list[Row]:
    """Headline rows from a result's "targets", in either shape the benchmarks write:
    {name: {target, measured, hit}} or {name: {what, model, reference, holds}}."""
    rows: list[Row] = []
    for name, t in (result.get("targets") or {}).items():
        if isinstance(t, dict) and "measured" in t:
            rows.append((name, t["measured"], t["target"], t["hit"]))
        elif isinstance(t, dict) and "holds" in t:
            rows.append((t.get("what", name), t["model"], f">= {t['reference']:.4g}",
                         t["holds"]))
    return rows


def _ingest_rows(d: dict) -> list[Row]:
    return [("ingest rows/s", d["rows_per_second"], None, None),
            ("ingest peak RSS MB", d["peak_rss_mb"], None, None)]


def _scrub_rows(d: dict) -> list[Row]:
    recall = d["recall"]  # per PII type
    return [("PII scrub recall, lowest type", min(recall.values()), None, None),
            ("PII scrub false-positive rate", d["false_positive_rate"], None, None)]


def _membership_rows(d: dict) -> list[Row]:
    return [(f"membership audit {name}: epsilon lower bound (claimed "
             f"{run['claimed_epsilon']})", run["epsilon_lower_bound"],
             f"<= {run['claimed_epsilon']}",
             run["epsilon_lower_bound"] <= run["claimed_epsilon"])
            for name, run in d.get("runs", {}).items()]


def _campaign_rows(d: dict) -> list[Row]:
    rows: list[Row] = [(name, None, None, hit) for name, hit in d.get("hits", {}).items()]
    seconds = (d.get("timing") or {}).get("score_s")
    if seconds is not None:
        rows.append(("campaign scoring of 100k customers, s", seconds, 120.0, seconds <= 120))
    return rows


def _sentiment_rows(d: dict) -> list[Row]:
    rows: list[Row] = []
    targets = d.get("targets", {})
    for dataset, r in d.get("datasets", {}).items():
        vader = r.get("vader", {}).get("macro_f1")
        runs = r.get("runs", {})
        npv = runs.get("non-private", {}).get("binary_accuracy_balanced")
        dp8 = runs.get("dp-eps8", {})
        if npv is not None:
            rows.append((f"{dataset}: binary accuracy, non-private", npv,
                         targets.get("binary_non_private"),
                         npv >= targets.get("binary_non_private", 0)))
        if dp8:
            rows.append((f"{dataset}: binary accuracy, DP eps=8",
                         dp8.get("binary_accuracy_balanced"), targets.get("binary_dp8"),
                         dp8.get("binary_accuracy_balanced", 0) >= targets.get("binary_dp8", 1)))
            if vader is not None:
                gain = dp8.get("macro_f1", 0) - vader
                rows.append((f"{dataset}: macro-F1 DP eps=8 minus VADER", gain,
                             targets.get("macro_f1_dp8_over_vader"),
                             gain >= targets.get("macro_f1_dp8_over_vader", 1)))
    return rows


def _inference_rows(d: dict) -> list[Row]:
    return [("scoring speed, default / whole last layer", d["speedup_float32"], None, None),
            ("NDCG@10 change, default", d["ndcg_change_float32"], None, None),
            ("scoring speed, int8 / whole last layer", d["speedup_int8_dynamic"], None, None),
            ("NDCG@10 change, int8", d["ndcg_change_int8_dynamic"], None, None)]


SUITE = (
    Bench("ingest_throughput", "ingest_throughput",
          quick_args=("--customers", "10000"), rows=_ingest_rows),
    Bench("scrub_recall", "scrub_recall", quick_args=(), rows=_scrub_rows),
    Bench("dp_step", "dp_step"),
    Bench("recommender", "recommender_gift_cards",
          full_args=("--data", "gift-cards", "--other-epsilon-seeds", "1",
                     "--eval-users", "250"),
          quick_args=("--data", "gift-cards", "--quick")),
    Bench("membership_audit", "membership_audit",
          rows=_membership_rows),
    Bench("explain", "explain"),
    Bench("sentiment", "sentiment", rows=_sentiment_rows),
    Bench("campaigns", "campaigns", rows=_campaign_rows),
    Bench("inference", "inference", full_args=("--data", "{demo}"),
          quick_args=("--data", "{demo}", "--users", "30"), rows=_inference_rows),
    # the scale run keeps its warehouse for the app benchmark that follows it
    Bench("scale", "scale", full_args=("--keep", "--data", "{scale}"),
          quick_args=("--quick", "--keep", "--data", "{scale}")),
    Bench("app_pages", "app_pages", full_args=("--data", "{scale}"),
          quick_args=("--data", "{scale}", "--repeats", "2")),
)


def run_one(bench: Bench, quick: bool, places: dict[str, str]) -> dict[str, object]:
    """Run one benchmark in its own process; its headline rows from its result file.
    `places` fills the {name} fields of its arguments (data folders)."""
    args = [a.format(**places) for a in (bench.quick_args if quick else bench.full_args)]
    command = [sys.executable, "-m", f"bench.{bench.name}", *args]
    path = RESULTS / f"{bench.result}{'_quick' if quick else ''}.json"
    before = path.stat().st_mtime if path.exists() else None
    print(f"== {' '.join(command[1:])}", flush=True)
    started = time.perf_counter()
    env = {**os.environ, QUICK_ENV: "1"} if quick else None
    done = subprocess.run(command, check=False, env=env)
    seconds = time.perf_counter() - started
    fresh = path.exists() and path.stat().st_mtime != before
    out: dict[str, object] = {"command": " ".join(command[1:]), "exit": done.returncode,
                              "seconds": seconds, "result": str(path.relative_to(
                                  RESULTS.parent.parent)) if fresh else None}
    if done.returncode == 0 and fresh:
        out["rows"] = [list(r) for r in bench.rows(json.loads(path.read_text()))]
    return out


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def markdown(summary: dict[str, object]) -> str:
    machine = summary["machine"]
    lines = [f"# Benchmark suite{' (quick)' if summary['quick'] else ''}", "",
             f"{machine['cpu']}, {machine['cores']} cores, {machine['memory']}, GPU: "
             f"{machine['gpu']}; Python {machine['python']}; code {machine['code_version']}; "
             f"{machine['when']}; load average at start {summary['load_average_start']}.",
             "", "| benchmark | figure | measured | target | met |", "|---|---|---|---|---|"]
    for name, r in summary["benchmarks"].items():
        if r["exit"] != 0 or not r.get("rows"):
            status = (f"exit {r['exit']}" if r["exit"] else "no result file")
            lines.append(f"| {name} | ({status}, {r['seconds']:.0f} s) | | | |")
            continue
        for figure, measured, target, hit in r["rows"]:
            met = "" if hit is None else ("yes" if hit else "**no**")
            lines.append(f"| {name} | {figure} | {_cell(measured)} | {_cell(target)} | {met} |")
    lines += ["", "Per-benchmark wall time: " + ", ".join(
        f"{n} {r['seconds']:.0f} s" for n, r in summary["benchmarks"].items()), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run of every benchmark")
    parser.add_argument("--only", nargs="+", choices=[b.name for b in SUITE],
                        help="run these benchmarks only")
    args = parser.parse_args(argv)
    chosen = [b for b in SUITE if not args.only or b.name in args.only]
    summary: dict[str, object] = {"machine": describe(), "quick": args.quick,
                                  "load_average_start": [round(x, 2) for x in os.getloadavg()],
                                  "benchmarks": {}}
    with tempfile.TemporaryDirectory() as tmp:
        # {demo}: the demo's data folder (`make run`), where bench.inference finds a
        # trained run; {scale}: the scale run's warehouse, kept for bench.app_pages.
        places = {"demo": str(Paths().data_dir), "scale": str(Path(tmp) / "scale")}
        for bench in chosen:
            summary["benchmarks"][bench.name] = run_one(bench, args.quick, places)
    summary["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    stem = "suite_quick" if args.quick else "suite"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    text = markdown(summary)
    (RESULTS / f"{stem}.md").write_text(text)
    print(text)
    failed = [n for n, r in summary["benchmarks"].items() if r["exit"] != 0]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
