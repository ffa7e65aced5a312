"""`clearmark campaign ...` (marketer / data scientist) and `clearmark activate` (data
steward only).

`register(sub)` adds them to the subparsers of `core.cli.main.build_parser`. Problems exit 2
(as `core.cli.main.UsageError`) with a message that says what is wrong.

This module is where the campaign code meets the explanation package: `core.campaigns`
never imports `explain` (core sits below explain); the commands here pass in the
field-SHAP reasons (`explain.field_shap`, `explain.reasons`), imported lazily inside
the commands, and the CSV cell neutralizer (`privacy.csv_safe`).

`activate` is the one place where pseudonyms are mapped back to customer ids: it needs
the steward's key (`privacy.pseudonym.load_key`) and a raw customers file, writes a file
outside the data directory and the repository, and logs its use in `activation_log`.
The app never does this.
"""

from __future__ import annotations

import argparse
import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from core.config import PROJECT_ROOT, Paths
from privacy.csv_safe import safe_cell


def _fail(exc: Exception | str) -> NoReturn:
    from core.cli.main import UsageError  # core.cli.main imports this module to register commands

    if isinstance(exc, Exception):
        raise UsageError(str(exc)) from exc
    raise UsageError(exc)


def _guard(func: Callable[[argparse.Namespace], None]) -> Callable[[argparse.Namespace], None]:
    """Turn the campaign, registry and training refusals into exit-2 messages."""

    @functools.wraps(func)
    def run(args: argparse.Namespace) -> None:
        from core.campaigns import CampaignError
        from core.dp.plan import TrainingRefused
        from core.registry.store import RegistryError

        try:
            func(args)
        except (CampaignError, RegistryError, TrainingRefused, ValueError) as exc:
            _fail(exc)

    return run


# --- commands --------------------------------------------------------------------------------


def _fmt(x: object, spec: str = ".3f") -> str:
    try:
        value = float(x)
    except (TypeError, ValueError):
        return "-"
    return "-" if math.isnan(value) else format(value, spec)


@_guard
def cmd_create(args: argparse.Namespace) -> None:
    from core import campaigns as C

    if args.item:
        kind, target = "item", [args.item]
    elif args.items:
        kind, target = "items", args.items
    else:
        kind, target = "category", [args.category]
    campaign = C.new_campaign(name=args.name, target_kind=kind, target=target,
                              promotion=args.promotion, season=args.season or C.season_of(),
                              rule=args.rule, rule_value=args.value,
                              holdout_share=args.holdout_share, seed=args.seed,
                              run_id=args.run_id)
    paths = Paths()
    C.target_items(campaign, C.load_catalogue(paths))  # refuse a target nobody can match
    C.save_campaign(paths, campaign)
    print(f"Created campaign {campaign.campaign_id} ({campaign.name!r}): {kind} "
          f"{', '.join(target)}, season {campaign.season}, promotion "
          f"{'on' if campaign.promotion else 'off'}, {campaign.rule} {campaign.rule_value:g}, "
          f"holdout {campaign.holdout_share:.0%} (seed {campaign.seed}).")
    print(f"Score it with: clearmark campaign score {campaign.campaign_id}")


@_guard
def cmd_list(args: argparse.Namespace) -> None:
    from core import campaigns as C

    rows = C.list_campaigns(Paths())
    if rows.empty:
        print("No campaigns yet: clearmark campaign create --help")
        return
    for r in rows.itertuples(index=False):
        print(f"{r.campaign_id}  {r.name!r:30s} {r.target_kind:8s} {r.rule} {r.rule_value:g}  "
              f"created {r.created_at:%Y-%m-%d %H:%M} by {r.created_by}")


def _print_scoring(scored) -> None:
    from core import campaigns as C

    result, scores = scored.result, scored.scores
    audience = scores["in_audience"]
    holdout = scores["in_holdout"]
    overall = result.calibration["overall"]
    v = result.validation
    print(f"Scored {len(scores):,} customers for {scored.campaign.label} with model "
          f"{scored.run_id or 'none (content only)'} in {scored.seconds:.1f} s "
          f"(scoring {result.timing['total_s']:.1f} s).")
    print("    tiers: " + ", ".join(f"{t} {n:,}" for t, n in result.tiers.items()))
    size = at = None
    if audience.any():
        size = int(audience.sum())
        at = C.at_size(scores["probability"], size)
    print(f"    audience {int(audience.sum()):,} ({scored.campaign.rule} "
          f"{scored.campaign.rule_value:g}), holdout {int(holdout.sum()):,} (never exported)")
    if at:
        print(f"    expected conversions {at['expected_conversions']:.1f}, false positives "
              f"{at['expected_false_positives']:.1f}, precision {at['precision']:.3f}, "
              f"lift {at['lift']:.2f} (audience of {size:,})")
    print(f"    calibration ECE (10 bins, out-of-fold): before {_fmt(overall['ece_before'])},"
          f" after {_fmt(overall['ece_after'])}; "
          + "; ".join(f"{t}: {r['method']}" for t, r in result.calibration["tiers"].items()))
    print(f"    validation: {v['customers']:,} customers, {v['positives']:,} positives, AUC "
          f"{_fmt(v['auc'])}, top-decile lift {_fmt(v['top_decile_lift'], '.2f')}")
    if scored.reasons is not None:
        print(f"    reasons for the first {len(scored.reasons):,} audience members "
              f"({result.timing.get('reasons_s', 0.0):.1f} s)")
    for warning in result.warnings:
        print(f"    WARNING: {warning}")


@_guard
def cmd_score(args: argparse.Namespace) -> None:
    from core import campaigns as C
    from explain.reasons import campaign_explainer

    config = C.ScoringConfig(ce_customers=args.ce_customers, ce_items=args.ce_items,
                             reasons=args.reasons, seed=args.seed)
    scored = C.score_campaign(Paths(), args.campaign_id, config=config,
                              explainer_factory=campaign_explainer if args.reasons else None,
                              use_model=not args.no_model)
    _print_scoring(scored)


@_guard
def cmd_audience(args: argparse.Namespace) -> None:
    from core import campaigns as C

    campaign = C.reassign_audience(Paths(), args.campaign_id, rule=args.rule, value=args.value)
    print(f"{campaign.label}: audience rule now {campaign.rule} {campaign.rule_value:g}; "
          "audience and holdout re-derived from the stored probabilities.")


@_guard
def cmd_backtest(args: argparse.Namespace) -> None:
    import pandas as pd

    from core import campaigns as C
    from core.dp.plan import with_overrides
    from core.recommender.config import TrainConfig

    paths = Paths()
    campaign = C.load_campaign(paths, args.campaign_id)
    try:
        cutoff = pd.Timestamp(args.cutoff)
    except ValueError as exc:
        _fail(f"--cutoff {args.cutoff!r} is not a date: use YYYY-MM-DD ({exc}).")
    train_config = with_overrides(TrainConfig(), epsilon=args.epsilon, epochs=args.epochs,
                                  max_customers=args.max_customers)
    report = C.backtest(paths, campaign, cutoff=cutoff, horizon_days=args.horizon_days,
                        train_config=train_config, run_id=args.run_id,
                        config=C.ScoringConfig(ce_customers=args.ce_customers, reasons=0),
                        progress=not args.quiet)
    C.save_backtest(paths, report)
    model, pop = report["rankings"]["model"], report["rankings"]["popularity"]
    print(f"Backtest of {campaign.label} at {cutoff.date()} (+{args.horizon_days} days), "
          f"model {report['run_id']} trained on data before the cutoff only:")
    print(f"    {report['customers']:,} customers, {report['buyers']:,} bought the target "
          f"(base rate {_fmt(report['base_rate'], '.4f')})")
    print(f"    top-decile lift: model {_fmt(model['top_decile_lift'], '.2f')}, popularity "
          f"targeting {_fmt(pop['top_decile_lift'], '.2f')}, random 1.00")
    at = report["at_rule"]
    print(f"    at the rule ({at['audience']:,} customers): precision "
          f"{_fmt(at['precision'])}, recall {_fmt(at['recall'])}")
    for warning in report["warnings"]:
        print(f"    WARNING: {warning}")
    print("Stored; the Campaigns page shows it.")


@_guard
def cmd_export(args: argparse.Namespace) -> None:
    from core import campaigns as C

    out = Path(args.out)
    rows = C.write_export(Paths(), args.campaign_id, out, cell=safe_cell)
    print(f"Wrote {rows:,} audience members (pseudonyms, scores, probabilities, deciles, "
          f"reasons; holdout excluded) to {out}. The export is logged.")


@_guard
def cmd_activate(args: argparse.Namespace) -> None:
    from core import campaigns as C
    from privacy.pseudonym import load_key

    paths = Paths()
    key = load_key(forbidden_dirs=(paths.data_dir, PROJECT_ROOT))
    columns = [c.strip() for c in (args.columns or "").split(",") if c.strip()]
    counts = C.activate(Path(args.export), Path(args.customers), Path(args.out), key=key,
                        paths=paths, cell=safe_cell, id_column=args.id_column,
                        columns=columns)
    print(f"Matched {counts['rows_matched']:,} of {counts['rows_in']:,} exported pseudonyms "
          f"to customer ids; wrote {args.out} (personal data: keep it out of the warehouse "
          "and the repository, delete it after activation). Logged in activation_log.")


def register(sub: argparse._SubParsersAction) -> None:
    """Add `campaign` and `activate` to clearmark's subcommands."""
    from core.campaigns import MIN_EXPORT, RULES, SEASON_CHOICES, ScoringConfig

    defaults = ScoringConfig()
    help_ = "Campaign audiences: create, score, backtest, export (pseudonyms only)."
    campaign = sub.add_parser("campaign", help=help_, description=help_)
    csub = campaign.add_subparsers(dest="campaign_command", required=True, metavar="ACTION")

    create = csub.add_parser("create", help="Define a campaign (stored in the warehouse).",
                             description="Define a campaign: a target (one item, a list of "
                                         "items or a category), a context and an audience "
                                         "rule.")
    create.add_argument("--name", required=True)
    target = create.add_mutually_exclusive_group(required=True)
    target.add_argument("--item", help="one target item id")
    target.add_argument("--items", nargs="+", help="several target item ids")
    target.add_argument("--category", help="a target category")
    create.add_argument("--promotion", action=argparse.BooleanOptionalAction, default=False,
                        help="the campaign runs as a promotion (default off)")
    create.add_argument("--season", choices=SEASON_CHOICES,
                        help="season context (default: the current season)")
    create.add_argument("--rule", choices=RULES, default="top_pct")
    create.add_argument("--value", type=float, default=10.0,
                        help="customers (top_n), percent (top_pct) or probability (min_prob)")
    create.add_argument("--holdout-share", type=float, default=0.10)
    create.add_argument("--seed", type=int, default=0, help="the holdout's seed")
    create.add_argument("--run-id", help="model run (default: the latest at scoring time)")
    create.set_defaults(func=cmd_create)

    list_ = csub.add_parser("list", help="Saved campaigns, newest first.",
                            description="Saved campaigns, newest first.")
    list_.set_defaults(func=cmd_list)

    score = csub.add_parser(
        "score", help="Score every customer, pick the audience and holdout, explain, store.",
        description="Calibrated propensity of every customer (content similarity for all, "
                    "the cross-encoder for the top ones), the audience by the campaign's "
                    "rule, a seeded holdout, and reasons for the first audience members.")
    score.add_argument("campaign_id")
    score.add_argument("--ce-customers", type=int, default=defaults.ce_customers,
                       help="customers re-scored by the cross-encoder (the top by content)")
    score.add_argument("--ce-items", type=int, default=defaults.ce_items,
                       help="target items per customer the cross-encoder scores")
    score.add_argument("--reasons", type=int, default=defaults.reasons,
                       help="audience members explained, first by rank (0: none)")
    score.add_argument("--seed", type=int, default=defaults.seed)
    score.add_argument("--no-model", action="store_true",
                       help="content similarity only (no cross-encoder, no reasons)")
    score.set_defaults(func=cmd_score)

    aud = csub.add_parser("audience", help="Change the audience rule (no re-scoring).",
                          description="Change the rule and re-derive audience and holdout "
                                      "from the stored probabilities.")
    aud.add_argument("campaign_id")
    aud.add_argument("--rule", choices=RULES, required=True)
    aud.add_argument("--value", type=float, required=True)
    aud.set_defaults(func=cmd_audience)

    back = csub.add_parser(
        "backtest", help="Train on data before a cutoff, target, and measure who bought.",
        description="Backtest: a DP model trained on events before the cutoff only (charged "
                    "to the privacy ledger like every run), the audience built as of the "
                    "cutoff, and who actually bought the target in [cutoff, cutoff + "
                    "horizon), against random and popularity targeting. Stored for the "
                    "Campaigns page.")
    back.add_argument("campaign_id")
    back.add_argument("--cutoff", required=True, help="YYYY-MM-DD")
    back.add_argument("--horizon-days", type=int, default=90)
    back.add_argument("--run-id", help="use this model (trained before the cutoff) instead "
                                       "of training one")
    back.add_argument("--epsilon", type=float, help="privacy budget of the training run")
    back.add_argument("--epochs", type=int)
    back.add_argument("--max-customers", type=int, help="train on a sample of customers")
    back.add_argument("--ce-customers", type=int, default=defaults.ce_customers)
    back.add_argument("--quiet", action="store_true", help="no progress bar")
    back.set_defaults(func=cmd_backtest)

    exp = csub.add_parser(
        "export", help="CSV of the audience (holdout excluded), logged.",
        description="Write the audience without the holdout: pseudonym, score, calibrated "
                    "probability, decile, top reasons; every cell spreadsheet-safe. Refused "
                    f"below {MIN_EXPORT} rows. Each export is logged.")
    exp.add_argument("campaign_id")
    exp.add_argument("--out", required=True, help="the CSV file to write")
    exp.set_defaults(func=cmd_export)

    help_ = ("Data steward only: map an audience export's pseudonyms back to customer ids "
             "with the pseudonymization key, for activation. Logged.")
    act = sub.add_parser("activate", help=help_, description=help_ + " The output holds "
                         "personal data and must lie outside the data directory and the "
                         "repository.")
    act.add_argument("export", help="a CSV written by `clearmark campaign export`")
    act.add_argument("--customers", required=True,
                     help="the raw customers file (CSV, JSON lines or Parquet)")
    act.add_argument("--out", required=True, help="where to write the activation file")
    act.add_argument("--id-column", default="customer_id",
                     help="the customer id column of the raw file")
    act.add_argument("--columns", help="raw columns to carry over, comma-separated "
                                       "(e.g. email)")
    act.set_defaults(func=cmd_activate)
