"""`clearmark budget ...` and `clearmark audit ...`: the data steward's commands
for privacy budgets and the budget audit.

`register(sub)` adds them to the subparsers of `core.cli.main.build_parser`. The
ledger is `Paths().ledger`; the budgets file is `privacy_budgets.json` in
the data directory. Problems exit 2 (as `core.cli.main.UsageError`) with a message
that says what is wrong.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import NoReturn

from core.config import PROJECT_ROOT, Paths


def _fail(exc: Exception | str) -> NoReturn:
    # imported here: core.cli.main imports this module to register the commands
    from core.cli.main import UsageError

    if isinstance(exc, Exception):
        raise UsageError(str(exc)) from exc
    raise UsageError(exc)


def _eps(x: float | None) -> str:
    if x is None:
        return "-"
    return "inf" if math.isinf(x) else f"{x:.4f}"


def _print_overview(rows) -> None:
    if not rows:
        print("No budgets set and no runs charged yet.")
        return
    print(f"{'dataset':24s} {'budget eps':>10s} {'delta':>8s} {'spent eps':>10s} "
          f"{'(summed)':>10s} {'remaining':>10s} {'runs':>5s}  composed by")
    for d in rows:
        b = d.budget
        print(f"{d.dataset:24s} {_eps(b.epsilon if b else None):>10s} "
              f"{(f'{b.delta:.0e}' if b else '-'):>8s} {_eps(d.spend.composed_epsilon):>10s} "
              f"{_eps(d.spend.summed_epsilon):>10s} {_eps(d.remaining):>10s} "
              f"{len(d.spend.runs):>5d}  {d.spend.accountant if d.spend.runs else '-'}")
        if d.remaining is not None and d.remaining < 0:
            print(f"    over budget by {-d.remaining:.4f}: every further run on "
                  f"{d.dataset!r} is refused")
        if "example" in d.spend.privacy_units:
            print("    includes example-level runs: a customer with k examples is protected "
                  "at roughly k times epsilon")


def cmd_budget_set(args: argparse.Namespace) -> None:
    from privacy.budget import overview, set_budget
    from privacy.ledger import LedgerError

    paths = Paths()
    try:
        b = set_budget(budgets_path=paths.budgets, ledger_path=paths.ledger,
                       dataset=args.dataset, epsilon=args.epsilon, delta=args.delta,
                       repo_dir=PROJECT_ROOT, note=args.note or "")
        rows = overview(ledger_path=paths.ledger, budgets_path=paths.budgets,
                        dataset=args.dataset)
    except (ValueError, LedgerError) as exc:
        _fail(exc)
    print(f"Budget for {b.dataset!r}: epsilon {b.epsilon:g} at delta {b.delta:g}, set by "
          f"{b.set_by} (ledger record seq {b.ledger_seq}).")
    _print_overview(rows)


def cmd_budget_show(args: argparse.Namespace) -> None:
    from privacy.budget import overview
    from privacy.ledger import LedgerError, verify

    paths = Paths()
    try:
        rows = overview(ledger_path=paths.ledger, budgets_path=paths.budgets,
                        dataset=args.dataset)
    except (ValueError, LedgerError) as exc:
        _fail(exc)
    _print_overview(rows)
    check = verify(paths.ledger)
    if not check.ok:
        print(f"WARNING: the ledger failed verification ({len(check.problems)} problem(s)); "
              "these figures may be wrong and no run can be charged. See "
              "`clearmark audit verify`.")


def cmd_audit_verify(args: argparse.Namespace) -> None:
    from privacy.ledger import verify

    paths = Paths()
    result = verify(paths.ledger, expected_head=args.expected_head)
    if not result.ok:
        _fail(f"the privacy ledger {paths.ledger} failed verification "
              f"({len(result.problems)} problem(s)):\n  " + "\n  ".join(result.problems))
    if result.records == 0:
        print(f"The privacy ledger {paths.ledger} is empty (nothing charged yet).")
        return
    print(f"Ledger OK: {paths.ledger}, {result.records} records, chain intact.")
    print(f"Head hash: {result.head_hash}")
    print("Keep the head hash elsewhere; `clearmark audit verify --expected-head HASH` "
          "later also detects removal of the last records.")


def cmd_audit_report(args: argparse.Namespace) -> None:
    from privacy.audit import audit_report, to_csv, to_json
    from privacy.ledger import LedgerError

    paths = Paths()
    try:
        report = audit_report(ledger_path=paths.ledger, budgets_path=paths.budgets,
                              expected_head=args.expected_head)
    except (ValueError, LedgerError) as exc:
        _fail(exc)
    text = to_csv(report) if args.format == "csv" else to_json(report)
    if args.out:
        out = Path(args.out)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text, encoding="utf-8")
        except OSError as exc:
            _fail(f"cannot write the report to {out}: {exc}")
        ledger = report["ledger"]
        print(f"Wrote the privacy audit ({len(report['runs'])} runs, ledger "
              f"{'OK' if ledger['ok'] else 'FAILED verification'}, head "
              f"{ledger['head_hash'][:16]}...) to {out}")
    else:
        print(text, end="")


def cmd_audit_membership(args: argparse.Namespace) -> None:
    from core.dp.plan import TrainingRefused
    from core.recommender.membership_audit import audit_membership
    from core.recommender.registry import latest_run
    from core.registry.store import RegistryError
    from privacy.ledger import LedgerError

    paths = Paths()
    run_id = args.run or latest_run(paths)
    if run_id is None:
        _fail("no trained model to audit: train one with `clearmark train --audit-pool 200`.")
    args.run = run_id
    try:
        result = audit_membership(run_id, paths, confidence=args.confidence,
                                  progress=not args.quiet)
    except (TrainingRefused, RegistryError, LedgerError, ValueError) as exc:
        _fail(exc)
    print(f"Membership audit of {args.run}: pool {result['pool']} customers "
          f"({result['included']} trained on), {result['correct']} of {result['guesses']} "
          f"guesses right.")
    print(f"Empirical epsilon >= {result['epsilon_lower_bound']:.3f} at "
          f"{result['confidence']:.0%} confidence; claimed epsilon "
          f"{_eps(result['claimed_epsilon'])}.")
    if result["flagged"]:
        _fail(f"the empirical lower bound exceeds the claimed epsilon: run {args.run} is "
              "flagged and cannot be released (recorded in the ledger).")
    print("Recorded in the privacy ledger; a bound below the claim is expected and does not "
          "prove the claim (the attack may be weak).")


def register(sub: argparse._SubParsersAction) -> None:
    """Add `budget` and `audit` to clearmark's subcommands."""
    help_ = "The data steward's privacy budgets (epsilon, delta) per dataset."
    budget = sub.add_parser("budget", help=help_, description=help_)
    budget_sub = budget.add_subparsers(dest="budget_command", required=True, metavar="ACTION")
    set_ = budget_sub.add_parser(
        "set", help="Set or change a dataset's budget (recorded in the ledger).",
        description="Set or change a dataset's budget. The change is appended to the privacy "
                    "ledger. Runs that would take the dataset over it are refused.")
    set_.add_argument("--dataset", required=True, help="dataset name, as the trainers record it")
    set_.add_argument("--epsilon", type=float, required=True, help="total epsilon allowed")
    set_.add_argument("--delta", type=float, required=True,
                      help="delta at which spends are composed (e.g. 1e-5; below 1/records)")
    set_.add_argument("--note", help="why (kept in the ledger)")
    set_.set_defaults(func=cmd_budget_set)
    show = budget_sub.add_parser("show", help="Budgets, composed spend and what remains.")
    show.add_argument("--dataset", help="one dataset only")
    show.set_defaults(func=cmd_budget_show)

    help_ = "Check the privacy ledger and export the budget audit."
    audit = sub.add_parser("audit", help=help_, description=help_)
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    ver = audit_sub.add_parser(
        "verify", help="Verify the ledger's hash chain (exit 2 and the problems if broken).")
    ver.add_argument("--expected-head", help="a head hash kept from an earlier verify")
    ver.set_defaults(func=cmd_audit_verify)
    rep = audit_sub.add_parser(
        "report", help="Budget audit: verification, spend per dataset, second opinions per run.")
    rep.add_argument("--format", choices=("csv", "json"), default="json",
                     help="json: the whole report; csv: the runs table (spreadsheet-safe)")
    rep.add_argument("--out", help="write to this file instead of printing")
    rep.add_argument("--expected-head", help="a head hash kept from an earlier verify")
    rep.set_defaults(func=cmd_audit_report)
    mem = audit_sub.add_parser(
        "membership", help="Empirical membership-inference audit of a ranking model run.",
        description="One-run membership audit (Steinke, Nasr, Jagielski 2023) of a run "
                    "trained with --audit-pool: an empirical lower bound on epsilon, "
                    "recorded in the ledger next to the claimed epsilon. Exit 2 if the "
                    "bound exceeds the claim (the run is flagged, not releasable).")
    mem.add_argument("run", nargs="?", help="run id (default: the latest trained model; see "
                     "`clearmark models`)")
    mem.add_argument("--confidence", type=float, default=0.95,
                     help="confidence of the bound (default 0.95)")
    mem.add_argument("--quiet", action="store_true", help="no progress bar")
    mem.set_defaults(func=cmd_audit_membership)
