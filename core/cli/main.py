"""The `clearmark` command: one entry point, one subcommand per job.

Every subcommand exits 0 on success and 2 on a problem it can explain (the
message names the file, the line or the setting, and the fix).
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path

from core.config import PROJECT_ROOT, Paths, PrivacyConfig, use_cpu_threads

DEFAULT_PORT = 8501
# Modules that add their own subcommands with `register(subparsers)`.
EXTENSIONS = ("core.cli.models", "core.cli.explain", "core.cli.sentiment", "core.cli.campaigns",
              "core.cli.privacy")


# `clearmark generate` as before; the demo asks for denser data (DEMO_*): every review
# chart of the app needs at least 10 reviewers per cell (PrivacyConfig.min_cell_size).
GENERATOR_REVIEW_RATE, GENERATOR_MONTHS = 0.3, 36
DEMO_REVIEW_RATE, DEMO_MONTHS = 1.0, 12


class UsageError(RuntimeError):
    pass


def _print_ingest(results) -> None:
    for r in results:
        if r.skipped_reason:
            print(f"{r.source}: {r.skipped_reason}")
            continue
        print(f"{r.source} -> {r.table} ({r.source_format}): read {r.rows_read:,}, "
              f"accepted {r.rows_accepted:,}, rejected {r.rows_rejected:,}")
        for reason, n in r.rejected.most_common():
            print(f"    rejected {n:,}: {reason}")
        if r.dropped_columns:
            print(f"    not stored: {', '.join(r.dropped_columns)}")
        if r.scrubbed:
            found = ", ".join(f"{k} {v:,}" for k, v in sorted(r.scrubbed.items()))
            print(f"    scrubbed from free text: {found}")
        if r.k_report is not None:
            k = r.k_report
            print(f"    k-anonymity: k reached {k.k_reached} (target {k.k_target}); "
                  f"generalization: {k.generalization}; suppressed {k.suppressed:,}")
        if r.quarantine_file:
            print(f"    bad rows for review: {r.quarantine_file}")


def cmd_key_create(args: argparse.Namespace) -> None:
    from privacy.pseudonym import DEFAULT_KEY_FILE, create_key_file

    path = create_key_file(Path(args.path) if args.path else DEFAULT_KEY_FILE)
    print(f"Created a 256-bit pseudonymization key at {path} (mode 600). Back it up: "
          "pseudonyms made with it can be linked to later ingests only with it.")


def cmd_generate(args: argparse.Namespace) -> None:
    from core.synthetic.generator import GeneratorConfig, generate

    out = Path(args.out) if args.out else Paths().raw_demo_dir
    if args.months < 1:
        raise UsageError(f"--months {args.months}: give at least 1 month of history.")
    end = GeneratorConfig.end
    first = end.year * 12 + end.month - 1 - (args.months - 1)  # months since year 0
    try:
        config = GeneratorConfig(customers=args.customers,
                                 items=args.items or max(200, args.customers // 50),
                                 review_rate=args.review_rate, seed=args.seed,
                                 start=date(first // 12, first % 12 + 1, 1), end=end)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    files = generate(config, out, progress=not args.quiet)
    print(f"Generated raw demo data (with personal data, as a real export has) in {out}:")
    print(f"    {files}")


def cmd_ingest(args: argparse.Namespace) -> None:
    from core.ingest.pipeline import ingest
    from privacy.pseudonym import load_key

    paths = Paths()
    key = load_key(forbidden_dirs=(paths.data_dir, PROJECT_ROOT),
                   path=Path(args.key_file) if args.key_file else None)
    results = ingest([Path(p) for p in args.paths], key=key, paths=paths,
                     privacy=PrivacyConfig(k_anonymity=args.k),
                     mapping=Path(args.mapping) if args.mapping else None,
                     fmt=args.format, progress=not args.quiet)
    _print_ingest(results)
    print(f"Warehouse: {paths.warehouse}")


def _demo_key() -> Path | None:
    """None when the steward's key is configured (it is used); otherwise the demo key
    file, created once outside the warehouse and the repository."""
    from privacy.pseudonym import (
        DEFAULT_KEY_FILE,
        DEMO_KEY_FILE,
        KEY_ENV,
        KEY_FILE_ENV,
        create_key_file,
    )

    if os.environ.get(KEY_ENV) or os.environ.get(KEY_FILE_ENV) or DEFAULT_KEY_FILE.exists():
        return None
    if not DEMO_KEY_FILE.exists():
        create_key_file(DEMO_KEY_FILE)
        print(f"Created a demo pseudonymization key at {DEMO_KEY_FILE} (outside the warehouse "
              "and the repository). For your own data create a real one: clearmark key create")
    else:
        print(f"Using the demo pseudonymization key at {DEMO_KEY_FILE}.")
    return DEMO_KEY_FILE


def run_pipeline(*, log: Path) -> subprocess.Popen:
    """Start `clearmark pipeline` in a background process logging to `log`; it keeps
    `pipeline_status.json` current for the app (`core.cli.pipeline`)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    handle = log.open("w")
    return subprocess.Popen([sys.executable, "-u", "-m", "core.cli", "pipeline",
                             "--log", str(log)], stdout=handle, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=PROJECT_ROOT)


def cmd_pipeline(args: argparse.Namespace) -> None:
    """Run the demo's model steps, sized to the warehouse, in the foreground."""
    from core.cli import pipeline

    paths = Paths()
    status = pipeline.run(pipeline.plan(paths), paths, run_command,
                          log=Path(args.log) if getattr(args, "log", None) else None,
                          echo=lambda line: print(line, flush=True))
    failed = status.failed
    if failed is not None:
        raise UsageError(f"step `clearmark {' '.join(failed.argv)}` failed: {failed.message}")


def cmd_demo(args: argparse.Namespace) -> None:
    key_file = _demo_key()
    paths = Paths()
    out = paths.raw_demo_dir
    if not (out / "events.csv").exists() or args.regenerate:
        cmd_generate(argparse.Namespace(customers=args.customers, items=None, seed=args.seed,
                                        review_rate=DEMO_REVIEW_RATE, months=DEMO_MONTHS,
                                        out=str(out), quiet=False))
    cmd_ingest(argparse.Namespace(paths=[str(out)], mapping=None, format=None, quiet=False,
                                  k=PrivacyConfig().k_anonymity, key_file=key_file))
    if args.no_app:
        if not args.skip_models:
            cmd_pipeline(args)
        return
    if not args.skip_models:
        from core.cli.pipeline import LOG_FILE

        log = paths.data_dir / LOG_FILE
        run_pipeline(log=log)
        print(f"Training the DP recommender and the sentiment model in the background "
              f"(log: {log}); their pages fill in when they finish.")
    cmd_app(argparse.Namespace(port=args.port))


def cmd_app(args: argparse.Namespace) -> None:
    print(f"Serving the app at http://localhost:{args.port} (Ctrl-C stops it)", flush=True)
    # dashboard.serve loads the heavy parts first, then runs Streamlit in its process
    os.execv(sys.executable, [sys.executable, "-m", "dashboard.serve", "--port",
                              str(args.port), "--address", "localhost"])


def cmd_status(args: argparse.Namespace) -> None:
    from core.store.warehouse import query, table_counts

    paths = Paths()
    for table, rows in table_counts(paths).items():
        print(f"{table:12s} {rows:>12,}")
    runs = query("last_ingest_runs", paths, limit=10)
    if not runs.empty:
        print("\nLast ingest runs:")
        print(runs.to_string(index=False))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clearmark",
        description="Explainable, privacy-aware marketing analytics. The warehouse is "
                    f"{Paths().warehouse} (set CLEARMARK_DATA or CLEARMARK_WAREHOUSE to move it).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func)
        return p

    key = add("key", None, "Manage the pseudonymization key (the steward's secret).")
    key_sub = key.add_subparsers(dest="key_command", required=True, metavar="ACTION")
    create = key_sub.add_parser("create", help="Create a new 256-bit key file (never overwrites).")
    create.add_argument("--path", help="where to write it (default ~/.config/clearmark/"
                                       "pseudonym.key); must be outside the warehouse and repo")
    create.set_defaults(func=cmd_key_create)

    gen = add("generate", cmd_generate,
              "Write deterministic raw demo data (customers with names, e-mails and phones; "
              "catalogue; events; reviews) plus mapping files and the planted truth.")
    gen.add_argument("--customers", type=int, default=2000, help="number of customers "
                     "(about 10 events each; 100000 gives about 1M events)")
    gen.add_argument("--items", type=int, help="catalogue size (default customers/50, min 200)")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--review-rate", type=float, default=GENERATOR_REVIEW_RATE,
                     help="share of purchases that get a review (default %(default)s)")
    gen.add_argument("--months", type=int, default=GENERATOR_MONTHS,
                     help="months of history, ending December 2025 (default %(default)s)")
    gen.add_argument("--out", help="output folder (default data/raw/demo)")
    gen.add_argument("--quiet", action="store_true", help="no progress bars")

    ing = add("ingest", cmd_ingest,
              "Pseudonymize, validate and load files into the warehouse in one transaction. "
              "Amazon review data (2018/2023, JSON lines, gzip or plain) is recognised; other "
              "CSV/JSON/Parquet files need a mapping file (<name>.mapping.toml beside them, "
              "or --mapping). Bad rows go to a quarantine file under data/quarantine/.")
    ing.add_argument("paths", nargs="+", help="files or folders to ingest")
    ing.add_argument("--mapping", help="mapping file (TOML) for all given files")
    ing.add_argument("--format", choices=("jsonl", "csv", "parquet"),
                     help="file format, if the name does not say")
    ing.add_argument("--k", type=int, default=PrivacyConfig().k_anonymity,
                     help="k-anonymity target for customer attributes (default 5)")
    ing.add_argument("--key-file", help="pseudonymization key file (default: CLEARMARK_KEY, "
                     "CLEARMARK_KEY_FILE, else ~/.config/clearmark/pseudonym.key)")
    ing.add_argument("--quiet", action="store_true", help="no progress bars")

    demo = add("demo", cmd_demo,
               "Everything at once on generated data: demo key if none, generate, ingest, every "
               "pipeline step, then serve the app.")
    demo.add_argument("--customers", type=int, default=2000)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--regenerate", action="store_true", help="regenerate the raw data")
    demo.add_argument("--no-app", action="store_true",
                      help="run the model steps in the foreground and stop (no app)")
    demo.add_argument("--skip-models", action="store_true",
                      help="only generate and ingest (no training, scoring, sentiment)")
    demo.add_argument("--port", type=int, default=DEFAULT_PORT)

    app = add("app", cmd_app, "Serve the Streamlit app on localhost.")
    app.add_argument("--port", type=int, default=DEFAULT_PORT)

    add("status", cmd_status, "Row counts and the last ingest runs.")
    pipe = add("pipeline", cmd_pipeline, "The demo's model steps on the current warehouse, "
               "sized to its data: DP recommender (train, membership audit, score) and DP "
               "sentiment model (train, score). Progress goes to data/pipeline_status.json, "
               "which the app shows.")
    pipe.add_argument("--log", help=argparse.SUPPRESS)  # where the background run logs
    for module in EXTENSIONS:
        importlib.import_module(module).register(sub)
    return parser


def _user_errors() -> tuple[type[Exception], ...]:
    from core.ingest.pipeline import IngestError
    from core.ingest.readers import SourceError
    from core.store.warehouse import WarehouseError
    from privacy.ledger import LedgerError
    from privacy.pseudonym import PseudonymKeyError

    return (SourceError, IngestError, WarehouseError, PseudonymKeyError, LedgerError,
            UsageError)


def run_command(argv: Sequence[str]) -> str | None:
    """Run one subcommand in this process; returns the message of a problem it can
    explain (also printed), or None on success. Other exceptions propagate."""
    args = build_parser().parse_args(list(argv))
    use_cpu_threads()
    try:
        args.func(args)
    except _user_errors() as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return str(exc)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return 2 if run_command(sys.argv[1:] if argv is None else argv) else 0
    except KeyboardInterrupt:
        print("interrupted; nothing was written by the step that was running.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
