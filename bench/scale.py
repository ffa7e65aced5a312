"""End to end at scale: each step of the real `clearmark` CLI, its time and peak memory.

On generated data (`--customers`, default 100,000: about 1M events).

Run from the repository root:

    .venv/bin/python -m bench.scale                  # 100,000 customers (about 1M events)
    .venv/bin/python -m bench.scale --quick --keep --data /tmp/scale_quick

``--quick`` is a smoke check of every step in minutes: 2,000 customers, 5 training steps,
500 customers scored, 20 explained (each can be set by its flag).

Prints a table and writes ``bench/results/scale.json`` (``scale_quick.json`` with
--quick) with the machine description and the load average at the start and the end
(the machine is shared: read every timing next to it). With ``--keep`` the data
directory is left in place, so that ``bench.app_pages --data DIR`` can time the app on it.

Protocol. Every step is its own child process of the real CLI (``python -m core.cli
...``, the module of the ``clearmark`` entry point) with ``CLEARMARK_DATA=DIR`` and a
throwaway key, so that its wall time and peak memory are its own. Peak memory is the
child's own VmHWM (/proc/self/status: the high-water mark of its resident set), read by a
small wrapper (``PEAK_WRAPPER``, which runs the module or code by runpy) as the step
ends. Not ``getrusage(RUSAGE_CHILDREN)``, a maximum over every child so far; and not
``ru_maxrss`` alone, which on Linux starts from the image the child was forked from
(kept beside it as ``rusage_maxrss_mib``, an upper bound that also counts the step's own
children, if any). CPU seconds (user + system, all threads) come from ``os.wait4``.

Steps (one run each, no repeats: a step at 100k customers takes minutes to hours):

a. ``key create`` (a throwaway key file in a temp dir outside the data directory and the
   repository, as ``clearmark demo`` makes its demo key, but never in ~/.config), then
   ``generate --customers N`` and ``ingest``.
b. ``train --epsilon 3 --max-steps S --eval-users 200``: the DP recommender (default
   batch 128, Poisson sampled) stopped after S steps. Its accounting (customers sampled
   in total, the share of an epoch that is) is read back from the run's privacy.json and
   curve.json: a bounded number of steps, a fraction of an epoch, NOT a full training.
c. Recommendations (top 10 of 70 candidates) for every customer
   (``core.recommender.batch_score.score``
   in the child, the function behind `clearmark score`), measured. ``--score-customers N``
   caps it at the first N customers for a shorter run; then the measured rate and a
   PROJECTION of the time for all customers (loop rate x customers + the step's fixed
   cost) are reported, and the projection is not a measurement.
d. One campaign over all customers: ``campaign create --category Outdoor`` and
   ``campaign score`` (``--reasons`` from ``--campaign-reasons``, default 0: the field-SHAP
   reasons are explanations, timed in e). The CLI's own scoring time is reported next
   to the step's wall time (process start and imports included).
e. Explanations of one campaign audience: ``campaign export`` (pseudonyms only), the
   first ``--explain-customers`` pseudonyms of it, then ``explain-export --audience``
   (field SHAP of their top ``--explain-k`` recommendations, computed on the spot for
   customers step c did not score); rows and seconds reported. `campaign export` refuses
   an audience under 100 rows: with the default rule (top 10 %, 10 % of it held out)
   that needs about 1,120 customers or more.
f. ``audit report`` (the privacy ledger's budget audit), a cheap final step.

Also recorded: warehouse and snapshot size, row counts (DuckDB, read-only, after the
ingest). Targets from the issue: every step's peak memory <= 8 GB (decimal, 7,629 MiB);
the campaign scoring of 100k customers <= 2 min (only a 100k run can hit or miss it:
the result says at how many customers it was measured). A step that fails is recorded
(exit code, the last lines of its stderr) and the run stops there with exit status 1.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.machine import write_result

ROOT = Path(__file__).resolve().parent.parent
CLI = (sys.executable, "-m", "core.cli")  # what the `clearmark` entry point runs
CATEGORY = "Outdoor"  # a category of the generator's catalogue (as bench.campaigns)
PEAK_TARGET_MIB = 8e9 / 2 ** 20  # "8 GB" read as decimal gigabytes: the stricter reading
CAMPAIGN_TARGET_S = 120.0  # campaign scoring of 100k customers
CAMPAIGN_TARGET_CUSTOMERS = 100_000
TAIL_LINES = 15
# Defaults of the full run and of --quick (a smoke check of every step, minutes).
FULL = {"customers": 100_000, "max_steps": 20, "score_customers": 0, "explain_customers": 100}
QUICK = {"customers": 2000, "max_steps": 5, "score_customers": 0, "explain_customers": 20}

# Step c in the child: the function behind `clearmark score`, with an optional cap
# (0: every customer). The last stdout line is the result as JSON.
SCORE_CODE = """\
import json, sys
from core.recommender.batch_score import score
r = score(max_customers=int(sys.argv[1]) or None, progress=False)
print(f"Scored {r.customers:,} customers with {r.run_id}: {r.rows:,} rows in {r.seconds:.1f}s")
print(json.dumps({"run_id": r.run_id, "customers": r.customers, "rows": r.rows,
                  "seconds": r.seconds}))
"""


@dataclass
class Step:
    """One child process: what ran, how it ended, its time and memory."""

    name: str
    command: list[str]
    exit_code: int
    seconds: float
    peak_rss_mib: float
    cpu_seconds: float
    peak_source: str = "VmHWM"
    rusage_maxrss_mib: float | None = None
    stdout_tail: list[str] = field(default_factory=list)
    stderr_tail: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def _tail(path: Path, lines: int = TAIL_LINES) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    # progress bars write \r-separated updates: keep the last state of each line
    out = [line.rsplit("\r", 1)[-1].rstrip() for line in text.splitlines()]
    return [line for line in out if line][-lines:]


# Runs a step in this (fresh) process and writes its VmHWM (KiB) to argv[1] when it
# ends, however it ends. argv[2] is "module" (run as `python -m`) or "code" (`python -c`).
PEAK_WRAPPER = """\
import runpy, sys
out, kind, target = sys.argv[1:4]
sys.argv = [target if kind == "module" else "-c", *sys.argv[4:]]
try:
    if kind == "module":
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        exec(compile(target, "<step>", "exec"), {"__name__": "__main__"})
finally:
    with open("/proc/self/status") as status:
        hwm = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(out, "w") as f:
        f.write(hwm)
"""


def wrapped(command: Sequence[str], peak_file: Path) -> list[str]:
    """`python -m M ...` or `python -c CODE ...` run through PEAK_WRAPPER; other commands
    as they are."""
    command = [str(c) for c in command]
    if len(command) >= 3 and command[0] == sys.executable and command[1] in ("-m", "-c"):
        kind = "module" if command[1] == "-m" else "code"
        return [sys.executable, "-c", PEAK_WRAPPER, str(peak_file), kind, *command[2:]]
    return command


def run_step(name: str, command: Sequence[str], *, env: Mapping[str, str] | None = None,
             log_dir: Path, cwd: Path = ROOT) -> Step:
    """Run `command` as a child, stdout and stderr to files in `log_dir`.

    Peak memory: the child's own VmHWM (the high-water mark of the resident set of the
    memory image it exec'd into), written by PEAK_WRAPPER as it ends. `os.wait4`'s
    ru_maxrss is kept beside it: it also counts children the step waited for, but on
    Linux it starts from the image the child was forked from (this process), so it is
    an upper bound. Wall time around the child; CPU time from wait4."""
    log_dir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = log_dir / f"{name}.stdout", log_dir / f"{name}.stderr"
    peak_file = log_dir / f"{name}.vmhwm"
    peak_file.unlink(missing_ok=True)
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(wrapped(command, peak_file), stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL,
                                env=dict(env) if env is not None else None, cwd=cwd,
                                start_new_session=True)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # interrupted: take the step's whole process group down
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            proc.wait()
            raise
        seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped above: Popen must not wait
    rusage_mib = usage.ru_maxrss / 1024  # KiB on Linux
    try:
        peak, source = int(peak_file.read_text()) / 1024, "VmHWM"
    except (OSError, ValueError):
        peak, source = rusage_mib, "wait4 ru_maxrss (upper bound)"
    return Step(name=name, command=[str(c) for c in command], exit_code=proc.returncode,
                seconds=seconds, peak_rss_mib=peak, cpu_seconds=usage.ru_utime + usage.ru_stime,
                peak_source=source, rusage_maxrss_mib=rusage_mib,
                stdout_tail=_tail(out_path, 5),
                stderr_tail=_tail(err_path) if proc.returncode else [])


# --- what the CLI printed ----------------------------------------------------------------


def parse_campaign_id(stdout: str) -> str | None:
    """The id in `clearmark campaign create`'s "Created campaign <id> (...)"."""
    m = re.search(r"Created campaign (\S+) \(", stdout)
    return m.group(1) if m else None


def parse_campaign_score(stdout: str) -> dict[str, float]:
    """`clearmark campaign score`'s "Scored N customers ... in X s (scoring Y s)."."""
    out: dict[str, float] = {}
    m = re.search(r"Scored ([\d,]+) customers .* in ([\d.]+) s \(scoring ([\d.]+) s\)", stdout)
    if m:
        out = {"customers": int(m.group(1).replace(",", "")),
               "cli_seconds": float(m.group(2)), "scoring_seconds": float(m.group(3))}
    r = re.search(r"reasons for the first ([\d,]+) audience members \(([\d.]+) s\)", stdout)
    if r:
        out["reasons_customers"] = int(r.group(1).replace(",", ""))
        out["reasons_seconds"] = float(r.group(2))
    return out


def parse_rows_written(stdout: str) -> int | None:
    """`explain-export`'s "Wrote N rows (run ...) to ..."."""
    m = re.search(r"Wrote ([\d,]+) rows", stdout)
    return int(m.group(1).replace(",", "")) if m else None


def last_json(stdout: str) -> dict[str, object]:
    for line in reversed(stdout.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return {}


def score_projection(*, customers: int, loop_seconds: float, step_seconds: float,
                     all_customers: int) -> dict[str, object]:
    """Rate of the scoring loop and the projected wall time for every customer: the loop
    at the measured rate plus the step's fixed cost (start, imports, model and data)."""
    rate = customers / loop_seconds if loop_seconds > 0 else float("inf")
    fixed = max(step_seconds - loop_seconds, 0.0)
    projected = fixed + (all_customers / rate if rate > 0 else float("inf"))
    return {"customers_scored": customers, "loop_seconds": loop_seconds,
            "customers_per_second": rate, "fixed_seconds": fixed,
            "all_customers": all_customers,
            "PROJECTED_seconds_all_customers (projection, not measured)": projected,
            "PROJECTED_hours_all_customers (projection, not measured)": projected / 3600}


def training_accounting(models_dir: Path) -> dict[str, object]:
    """From the newest run's privacy.json and curve.json: steps, customers sampled in
    total (Poisson batches summed; a customer may be sampled more than once), the share
    of an epoch that is, the epsilon spent."""
    runs = sorted((p for p in models_dir.glob("ce_*") if (p / "privacy.json").exists()),
                  key=lambda p: p.stat().st_mtime)
    if not runs:
        return {}
    run = runs[-1]
    privacy = json.loads((run / "privacy.json").read_text())
    curve = json.loads((run / "curve.json").read_text()) if (run / "curve.json").exists() \
        else []
    sampled = sum(int(s.get("batch_size", 0)) for s in curve)
    customers = int(privacy.get("customers") or 0)
    metrics = json.loads((run / "metrics.json").read_text()) \
        if (run / "metrics.json").exists() else {}
    return {"run_id": run.name, "steps": len(curve),
            "customers_sampled_total": sampled, "training_customers": customers,
            "epoch_fraction (sampled / training customers)":
                sampled / customers if customers else None,
            "note": "a bounded number of DP-SGD steps: a fraction of one epoch, not a "
                    "trained model",
            "step_seconds_median": _median([float(s["seconds"]) for s in curve
                                            if "seconds" in s]),
            "epsilon_spent": privacy.get("epsilon"),
            "target_epsilon": privacy.get("target_epsilon"),
            "delta": privacy.get("delta"), "noise_multiplier": privacy.get("noise_multiplier"),
            "sample_rate": privacy.get("sample_rate"),
            "expected_batch_size": privacy.get("expected_batch_size"),
            "timing": metrics.get("timing"), "metrics_model": metrics.get("model")}


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def warehouse_facts(data_dir: Path) -> dict[str, object]:
    """Sizes of the warehouse files and row counts (DuckDB, read-only)."""
    import duckdb

    from core.store.queries import QUERIES

    warehouse = data_dir / "warehouse.duckdb"
    snapshot = data_dir / "warehouse.read.duckdb"
    out: dict[str, object] = {
        "warehouse_mib": warehouse.stat().st_size / 2 ** 20 if warehouse.exists() else None,
        "snapshot_mib": snapshot.stat().st_size / 2 ** 20 if snapshot.exists() else None}
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        rows = con.execute(QUERIES["table_counts"]).fetchall()
        out["rows"] = {name: int(n) for name, n in rows}
        out["scoring_customers"] = int(con.execute(
            f"SELECT count(*) FROM ({QUERIES['scoring_customers']})").fetchone()[0])
    finally:
        con.close()
    return out


def first_pseudonyms(export_csv: Path, n: int) -> list[str]:
    """The first `n` pseudonyms of a `campaign export` CSV (audience order)."""
    with export_csv.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        column = next((c for c in ("pseudonym", "user_pseudonym") if c in (reader.fieldnames
                                                                          or [])), None)
        if column is None:
            return []
        out = []
        for row in reader:
            if len(out) >= n:
                break
            out.append(row[column])
    return out


def count_csv_rows(path: Path) -> int:
    with path.open(encoding="utf-8", newline="") as f:
        return max(sum(1 for _ in csv.reader(f)) - 1, 0)


# --- the table --------------------------------------------------------------------------


def format_table(steps: Sequence[Step | Mapping[str, object]]) -> str:
    """One line per step: name, exit code, seconds, CPU seconds, peak RSS MiB."""
    header = f"{'step':18s} {'exit':>4s} {'seconds':>9s} {'cpu s':>9s} {'peak RSS MiB':>13s}"
    lines = [header, "-" * len(header)]
    for s in steps:
        d = asdict(s) if isinstance(s, Step) else dict(s)
        lines.append(f"{d['name']:18s} {d['exit_code']:>4d} {d['seconds']:>9.1f} "
                     f"{d['cpu_seconds']:>9.1f} {d['peak_rss_mib']:>13,.0f}")
    return "\n".join(lines)


def targets(steps: Sequence[Step], campaign: Mapping[str, object], completed: bool
            ) -> dict[str, dict[str, object]]:
    """The issue's targets, in the shape bench.suite reads (target, measured, hit)."""
    peak = max((s.peak_rss_mib for s in steps), default=0.0)
    out: dict[str, dict[str, object]] = {
        "whole run completes": {"target": True, "measured": completed, "hit": completed},
        "peak RSS MiB, largest step (<= 8 GB)": {
            "target": round(PEAK_TARGET_MIB), "measured": round(peak),
            "hit": completed and peak <= PEAK_TARGET_MIB}}
    seconds = campaign.get("scoring_seconds")
    customers = campaign.get("customers")
    if seconds is not None and customers is not None:
        at_target = customers >= CAMPAIGN_TARGET_CUSTOMERS
        out[f"campaign scoring s at {customers:,} customers (target: 100k <= 120 s)"] = {
            "target": CAMPAIGN_TARGET_S, "measured": seconds,
            "hit": (seconds <= CAMPAIGN_TARGET_S) if at_target else None}
    return out


# --- the run ----------------------------------------------------------------------------


class StepFailed(RuntimeError):
    pass


class Runner:
    def __init__(self, data_dir: Path, key_file: Path, log_dir: Path):
        self.log_dir = log_dir
        env = {k: v for k, v in os.environ.items()
               if k not in ("CLEARMARK_KEY", "CLEARMARK_KEY_FILE", "CLEARMARK_WAREHOUSE")}
        env.update(CLEARMARK_DATA=str(data_dir), CLEARMARK_KEY_FILE=str(key_file),
                   TQDM_DISABLE="1", PYTHONUNBUFFERED="1")
        self.env = env
        self.steps: list[Step] = []

    def __call__(self, name: str, command: Sequence[str]) -> Step:
        shown = " ".join("<code>" if "\n" in str(c) else str(c) for c in command)
        print(f"[{time.strftime('%H:%M:%S')}] {name}: {shown[:160]}", flush=True)
        step = run_step(name, command, env=self.env, log_dir=self.log_dir)
        self.steps.append(step)
        print(f"    exit {step.exit_code}, {step.seconds:.1f} s, peak {step.peak_rss_mib:,.0f} "
              f"MiB" + ("" if step.ok else "\n    " + "\n    ".join(step.stderr_tail)),
              flush=True)
        if not step.ok:
            raise StepFailed(name)
        return step

    def stdout(self, name: str) -> str:
        return (self.log_dir / f"{name}.stdout").read_text(encoding="utf-8", errors="replace")


def run_all(args: argparse.Namespace, data_dir: Path, work: Path) -> dict[str, object]:
    customers = args.customers
    key_file = work / "key" / "bench.key"  # outside the data dir and the repository
    key_file.parent.mkdir(parents=True, exist_ok=True)
    raw = data_dir / "raw" / "demo"
    run = Runner(data_dir, key_file, work / "logs")
    out: dict[str, object] = {}
    try:
        # a. key, generate, ingest
        run("key", [*CLI, "key", "create", "--path", str(key_file)])
        run("generate", [*CLI, "generate", "--customers", str(customers), "--out", str(raw),
                         "--seed", str(args.seed), "--quiet"])
        run("ingest", [*CLI, "ingest", str(raw), "--quiet"])
        out["warehouse"] = facts = warehouse_facts(data_dir)
        print(f"    warehouse {facts['warehouse_mib']:.1f} MiB; rows {facts['rows']}",
              flush=True)

        # b. train (bounded)
        step = run("train", [*CLI, "train", "--epsilon", "3", "--max-steps",
                             str(args.max_steps), "--batch-size", str(args.batch_size),
                             "--eval-users", str(args.eval_users), "--quiet"])
        out["train"] = trained = training_accounting(data_dir / "models")
        timing = trained.get("timing") or {}
        if "train_seconds" in timing:  # what the step spent outside the steps and the test
            trained["other_seconds (step wall - DP-SGD steps - test evaluation)"] = (
                step.seconds - timing["train_seconds"] - timing.get("eval_seconds", 0.0))

        # c. recommendations for a capped number of customers
        step = run("score", [sys.executable, "-c", SCORE_CODE, str(args.score_customers)])
        scored = last_json(run.stdout("score"))
        customers, everyone = int(scored.get("customers", 0)), int(facts["scoring_customers"])
        out["score"] = {**scored, "all_customers": everyone, "step_seconds": step.seconds,
                        "customers_per_second": customers / max(scored.get("seconds", 0), 1e-9)}
        if customers < everyone:
            out["score"].update(score_projection(
                customers=customers, loop_seconds=float(scored.get("seconds", 0.0)),
                step_seconds=step.seconds, all_customers=everyone))

        # d. one campaign over all customers
        run("campaign_create", [*CLI, "campaign", "create", "--name", "bench.scale",
                                "--category", CATEGORY])
        campaign_id = parse_campaign_id(run.stdout("campaign_create"))
        if campaign_id is None:
            raise StepFailed("campaign_create: no campaign id in its output")
        step = run("campaign_score", [*CLI, "campaign", "score", campaign_id, "--reasons",
                                      str(args.campaign_reasons)])
        out["campaign"] = {"campaign_id": campaign_id, "category": CATEGORY,
                           "reasons": args.campaign_reasons, "step_seconds": step.seconds,
                           **parse_campaign_score(run.stdout("campaign_score"))}

        # e. explanations of (the first customers of) the campaign's audience
        export = work / "audience.csv"
        run("campaign_export", [*CLI, "campaign", "export", campaign_id, "--out", str(export)])
        audience = first_pseudonyms(export, args.explain_customers)
        audience_file = work / "explain_audience.txt"
        audience_file.write_text("".join(p + "\n" for p in audience), encoding="utf-8")
        explained = work / "explanations.csv"
        step = run("explain_export", [*CLI, "explain-export", "--audience", str(audience_file),
                                      "--out", str(explained), "--k", str(args.explain_k)])
        rows = count_csv_rows(explained)
        out["explain"] = {"customers": len(audience), "recommendations_per_customer":
                          args.explain_k, "method": "shap-field", "rows": rows,
                          "rows_reported_by_cli": parse_rows_written(
                              run.stdout("explain_export")),
                          "seconds": step.seconds,
                          "seconds_per_customer": step.seconds / len(audience)
                          if audience else None}

        # f. the privacy audit
        run("audit_report", [*CLI, "audit", "report", "--format", "json", "--out",
                             str(work / "audit.json")])
        out["completed"] = True
    except StepFailed as exc:
        out["completed"] = False
        out["failed_step"] = str(exc)
    except Exception as exc:  # noqa: BLE001 - the bench's own reading failed: recorded
        out["completed"] = False
        out["failed_step"] = f"bench.scale after step {run.steps[-1].name if run.steps else '-'}"\
                             f": {exc!r}"
    out["steps"] = [asdict(s) for s in run.steps]
    if "warehouse" not in out and (data_dir / "warehouse.duckdb").exists():
        out["warehouse"] = warehouse_facts(data_dir)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="2,000 customers, 5 steps, 500 scored, 20 explained")
    parser.add_argument("--customers", type=int, help="generated customers (default 100,000; "
                                                      "2,000 with --quick)")
    parser.add_argument("--data", help="data directory (default: a new temp dir); must not "
                                       "hold a warehouse yet")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int,
                        help=f"DP-SGD steps (default {FULL['max_steps']}; --quick "
                             f"{QUICK['max_steps']})")
    parser.add_argument("--batch-size", type=int, default=128,
                        help="expected customers per step (default 128)")
    parser.add_argument("--eval-users", type=int, default=200)
    parser.add_argument("--score-customers", type=int,
                        help="score only the first N customers and project the rest "
                             "(default 0: every customer)")
    parser.add_argument("--campaign-reasons", type=int, default=0,
                        help="audience members explained by `campaign score` (default 0)")
    parser.add_argument("--explain-customers", type=int,
                        help=f"audience members whose recommendations are explained (default "
                             f"{FULL['explain_customers']}; --quick "
                             f"{QUICK['explain_customers']})")
    parser.add_argument("--explain-k", type=int, default=10,
                        help="recommendations explained per customer (default 10)")
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up on a plain kill

    created = args.data is None or not Path(args.data).exists()
    data_dir = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix="clearmark-scale-"))
    if (data_dir / "warehouse.duckdb").exists():
        parser.error(f"{data_dir} already holds a warehouse: give a new --data directory.")
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir = data_dir.resolve()
    started = time.perf_counter()
    load_start = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="clearmark-scale-work-"))
    try:
        out = run_all(args, data_dir, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the key, logs, export, explanations
        if not args.keep and created:
            shutil.rmtree(data_dir, ignore_errors=True)
    result = {
        "quick": args.quick, "customers": args.customers, "protocol": __doc__,
        "settings": {k: v for k, v in vars(args).items() if k not in ("quick", "data")},
        "data_dir": str(data_dir) if args.keep or not created else "(temp, removed)",
        "load_average_start": load_start, **out,
        "targets": targets([Step(**s) for s in out["steps"]], out.get("campaign", {}),
                           bool(out.get("completed"))),
        "load_average_end": os.getloadavg(), "seconds": time.perf_counter() - started,
    }
    print()
    print(format_table(out["steps"]))
    if "score" in out:
        s = out["score"]
        print(f"score: {s.get('customers', 0):,} of {s['all_customers']:,} customers at "
              f"{s['customers_per_second']:.1f}/s, {s.get('seconds', float('nan')):.0f} s")
        if "PROJECTED_hours_all_customers (projection, not measured)" in s:
            print(f"  PROJECTED for all: "
                  f"{s['PROJECTED_hours_all_customers (projection, not measured)']:.2f} h")
    if "campaign" in out:
        c = out["campaign"]
        print(f"campaign: {c.get('customers', 0):,} customers, scoring "
              f"{c.get('scoring_seconds', float('nan')):.1f} s (CLI), step "
              f"{c['step_seconds']:.1f} s")
    if "explain" in out:
        e = out["explain"]
        print(f"explain: {e['rows']:,} rows for {e['customers']} customers in "
              f"{e['seconds']:.1f} s")
    for name, t in result["targets"].items():
        print(f"target {name}: measured {t['measured']}, target {t['target']}, hit {t['hit']}")
    print(f"load average: start {[round(x, 2) for x in load_start]}, end "
          f"{[round(x, 2) for x in result['load_average_end']]}")
    path = write_result("scale_quick" if args.quick else "scale", result)
    print(f"wrote {path}" + (f"; data kept in {data_dir}" if args.keep else ""))
    if not out.get("completed"):
        print(f"FAILED at step {out.get('failed_step')}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
