"""`clearmark explain ...`: why a customer got their recommendations, from the command
line, and CSV exports of explanations.

    clearmark explain <pseudonym> [--item ITEM] [--method METHOD] [--field FIELD]
                      [--run RUN] [--k 10] [--out file.csv]
    clearmark explain-export (--audience FILE_OF_PSEUDONYMS | --all) --out file.csv
                      [--run RUN] [--method METHOD ...] [--k 10]
    clearmark explain-faithfulness [--run RUN] [--recommendations 200]
    clearmark explain-precompute [--customers 3] [--quiet]

`register(sub)` adds them to the subparsers of `core.cli.main.build_parser`. The model is
the run given (default: the latest registered run). Recommendations are the run's
stored ones (`clearmark score`), computed on the spot for customers it did not score.
Problems exit 2 (as `core.cli.main.UsageError`) with a message that says what to do.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from core.config import Paths

METHODS = ("shap-field", "shap-token", "attention-rollout", "attention-cls", "leave-one-out")
ROW_METHODS = ("shap-field", "attention-rollout", "attention-cls", "leave-one-out")


def _fail(message: str, exc: Exception | None = None) -> NoReturn:
    from core.cli.main import UsageError  # core.cli.main imports this module to register commands

    if exc is not None:
        raise UsageError(message) from exc
    raise UsageError(message)


def _service(run: str | None):
    from core.registry.store import RegistryError
    from explain.service import get_service

    try:
        return get_service(run, Paths())
    except RegistryError as exc:
        _fail(str(exc), exc)


def _print_explanation(e, title: str) -> None:
    from explain.reasons import REASON_METHODS, reason

    print(f"\n#{e.rank} {title} ({e.item_id})")
    if e.method in REASON_METHODS:
        print(f"  {reason(e)}")
    base = "n/a" if e.base_value != e.base_value else f"{e.base_value:.4f}"
    error = "n/a" if e.additivity_error != e.additivity_error else f"{e.additivity_error:.1e}"
    print(f"  {e.method}: score {e.prediction:.4f}, base {base}, additivity error {error}, "
          f"{e.evaluations} model rows, {e.latency_s:.2f} s")
    if e.method.startswith("attention"):
        print("  (attention: where the model looked, not a cause)")
    for i in e.order():
        value = e.values[i] if len(e.values[i]) <= 60 else e.values[i][:59] + "…"
        print(f"    {e.attributions[i]:+.5f}  {e.features[i]:<18s} {value}")


def cmd_explain(args: argparse.Namespace) -> None:
    import pandas as pd

    from explain.export import explanation_rows, write_rows
    from explain.service import ExplainError, moment

    if args.method == "shap-token" and not args.field:
        _fail("--method shap-token explains the words of one field: add --field (e.g. "
              "--field item_title or --field h1).")
    if args.method == "shap-token" and not args.item:
        _fail("--method shap-token needs --item (one recommendation at a time).")
    from explain.service import stored_recommendations

    service = _service(args.run)
    stored = stored_recommendations(service.paths, service.run_id, [args.pseudonym])
    known = set(service.interactions["user_pseudonym"].astype(str))
    if args.pseudonym not in known and stored.empty:
        _fail(f"no customer {args.pseudonym!r} with purchases, reviews or add-to-cart events "
              f"or stored recommendations in {service.paths.warehouse}: pseudonyms look like "
              "u_3fa9… (see the Customer profile page).")
    recs = service.recommendations_for([args.pseudonym], k=args.k)
    if args.item:
        chosen = recs[recs["item_id"].astype(str) == args.item]
        if chosen.empty:  # an item that is not among the recommendations: rank 0
            chosen = pd.DataFrame([{"item_id": args.item, "rank": 0,
                                    "title": service.title(args.item)}])
        recs = chosen
    print(f"Run {service.run_id}; customer {args.pseudonym}; {len(recs)} recommendation(s).")
    explanations = []
    for row in recs.to_dict("records"):
        ts, promotion = moment(row)
        try:
            e = service.explain(args.pseudonym, str(row["item_id"]), method=args.method,
                                rank=int(row.get("rank", 0)), field_name=args.field,
                                ts=ts, promotion=promotion)
        except (ExplainError, ValueError) as exc:
            _fail(str(exc), exc)
        title = str(row.get("title") or service.title(str(row["item_id"])))
        _print_explanation(e, title)
        explanations.append((e, title))
    if args.out:
        out = Path(args.out)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            with out.open("w", encoding="utf-8", newline="") as f:
                n = write_rows((r for e, title in explanations
                                for r in explanation_rows(e, item_title=title)), f)
        except OSError as exc:
            _fail(f"cannot write {out}: {exc}", exc)
        print(f"\nWrote {n} rows to {out}")


def cmd_explain_export(args: argparse.Namespace) -> None:
    from explain.export import export_csv, read_audience

    if not args.all and not args.audience:
        _fail("say whose explanations to export: --audience FILE (one pseudonym per line) "
              "or --all.")
    if args.audience and not Path(args.audience).is_file():
        _fail(f"no audience file {args.audience}: give a file with one pseudonym per line.")
    service = _service(args.run)
    pseudonyms = None if args.all else read_audience(args.audience)
    out = Path(args.out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", encoding="utf-8", newline="") as f:
            n = export_csv(service, f, pseudonyms=pseudonyms, methods=args.method or
                           ("shap-field",), k=args.k)
    except OSError as exc:
        _fail(f"cannot write {out}: {exc}", exc)
    print(f"Wrote {n} rows (run {service.run_id}) to {out}", file=sys.stdout)


def cmd_explain_faithfulness(args: argparse.Namespace) -> None:
    from explain.faithfulness import evaluate_run, summary_path

    try:
        summary = evaluate_run(args.run, Paths(), recommendations=args.recommendations,
                               progress=None)
    except Exception as exc:  # noqa: BLE001 - reported with its message, exit 2
        _fail(f"the faithfulness check failed: {exc}", exc)
    methods = summary["methods"]
    print(f"Run {summary['run_id']}: {summary['recommendations']} held-out recommendations")
    print(f"{'method':20s} {'comprehensiveness':>18s} {'sufficiency':>12s}")
    for name, m in methods.items():
        print(f"{name:20s} {m['comprehensiveness_aopc']['mean']:>18.4f} "
              f"{m['sufficiency_aopc']['mean']:>12.4f}")
    print(f"field SHAP above random: {summary['shap_above_random_share']:.1%}; Kendall tau "
          f"SHAP vs leave-one-out: {summary['kendall_shap_vs_leave_one_out']['mean']:.3f}; "
          f"preferred: {summary['preferred_method']}")
    print(f"Wrote {summary_path(Paths(), summary['run_id'])}")


def cmd_explain_precompute(args: argparse.Namespace) -> None:
    from tqdm.auto import tqdm

    from core.store.warehouse import query
    from explain.stored import precompute

    paths = Paths()
    scored = query("latest_scored_run", paths) if query(
        "table_exists", paths, table_name="recommendations")["present"].iloc[0] else None
    if scored is None or scored.empty:
        _fail("no recommendations to explain: run `clearmark score` first.")
    service = _service(str(scored["run_id"].iloc[0]))
    customers = query("top_active_customers", paths, limit=args.customers)[
        "user_pseudonym"].astype(str).tolist()
    with tqdm(total=len(customers), desc="explain", unit="customer",
              disable=args.quiet) as bar:
        rows = precompute(service, customers, paths, on_customer=bar.update)
    print(f"Stored {rows:,} explanations of {len(customers)} customers' recommendations "
          f"(run {service.run_id}); their profiles show the reasons at once.")


def register(sub: argparse._SubParsersAction) -> None:
    """Add `explain`, `explain-export` and `explain-faithfulness`."""
    help_ = "Why a customer got their recommendations: field attributions and a reason."
    p = sub.add_parser("explain", help=help_, description=help_)
    p.add_argument("pseudonym", help="the customer's pseudonym (u_…)")
    p.add_argument("--item", help="one recommended (or any) item id; default: all of them")
    p.add_argument("--method", choices=METHODS, default="shap-field",
                   help="shap-field (default), shap-token (needs --field and --item), "
                        "attention-rollout, attention-cls, leave-one-out")
    p.add_argument("--field", help="for shap-token: the field whose words to explain")
    p.add_argument("--run", help="model run id (default: the latest)")
    p.add_argument("--k", type=int, default=10, help="recommendations to explain (default 10)")
    p.add_argument("--out", help="also write the explanations as CSV to this file")
    p.set_defaults(func=cmd_explain)

    help_ = ("Export explanations as CSV (one row per recommendation x field), streamed: "
             "a campaign audience or every customer.")
    e = sub.add_parser("explain-export", help=help_, description=help_)
    who = e.add_mutually_exclusive_group()
    who.add_argument("--audience", help="file of pseudonyms, one per line (or a CSV with a "
                                        "user_pseudonym column)")
    who.add_argument("--all", action="store_true", help="every customer")
    e.add_argument("--out", required=True, help="CSV file to write")
    e.add_argument("--run", help="model run id (default: the latest)")
    e.add_argument("--method", action="append", choices=ROW_METHODS,
                   help="method(s) to export (repeatable; default shap-field)")
    e.add_argument("--k", type=int, default=10, help="recommendations per customer")
    e.set_defaults(func=cmd_explain_export)

    help_ = ("Measure how faithful the explanations of a run are (ERASER comprehensiveness "
             "and sufficiency on held-out recommendations); stored beside the run, the page "
             "shows the method that measured more faithful.")
    f = sub.add_parser("explain-faithfulness", help=help_, description=help_)
    f.add_argument("--run", help="model run id (default: the latest)")
    f.add_argument("--recommendations", type=int, default=200,
                   help="held-out recommendations to measure (default 200)")
    f.set_defaults(func=cmd_explain_faithfulness)

    help_ = ("Explain, after scoring, the recommendations of the customers the profile page "
             "offers first (the most active) and keep them in the warehouse, so their "
             "profiles show the reasons without waiting (field SHAP: ~2 s a recommendation).")
    pre = sub.add_parser("explain-precompute", help=help_, description=help_)
    pre.add_argument("--customers", type=int, default=3,
                     help="most active customers to explain (default 3)")
    pre.add_argument("--quiet", action="store_true", help="no progress bar")
    pre.set_defaults(func=cmd_explain_precompute)
