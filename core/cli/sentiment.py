"""`clearmark sentiment ...`: train, score and evaluate the review sentiment model.

`register(sub)` adds `sentiment train`, `sentiment score [run_id]` and
`sentiment evaluate [run_id]` to the subparsers of `core.cli.main.build_parser`. Problems
the user can fix exit 2 (as `core.cli.main.UsageError`) with a message that says what to do.
"""

from __future__ import annotations

import argparse
import math
from typing import NoReturn

from core.config import Paths, PrivacyConfig


def _fail(exc: Exception | str) -> NoReturn:
    # imported here: core.cli.main imports this module to register the commands
    from core.cli.main import UsageError

    if isinstance(exc, Exception):
        raise UsageError(str(exc)) from exc
    raise UsageError(exc)


def _pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def _print_metrics(metrics: dict) -> None:
    rows = [("model", metrics.get("model", {}))]
    rows += [(name, m) for name, m in (metrics.get("baselines") or {}).items()]
    print(f"{'':8s} {'accuracy':>9s} {'macro-F1':>9s} {'binary (balanced)':>18s}")
    for name, m in rows:
        if not m:
            continue
        f1 = m.get("macro_f1")
        print(f"{name:8s} {_pct(m.get('accuracy')):>9s} "
              f"{('-' if f1 is None else f'{f1:.3f}'):>9s} "
              f"{_pct(m.get('binary_accuracy_balanced')):>12s} "
              f"(n={m.get('binary_reviews', 0)})")
    data = metrics.get("data") or {}
    shares = data.get("class_shares") or {}
    for side, s in shares.items():
        print(f"class shares {side}: " + ", ".join(f"{k} {_pct(v)}" for k, v in s.items()))


def cmd_train(args: argparse.Namespace) -> None:
    from core.dp.plan import TrainingRefused
    from core.registry.store import RegistryError
    from core.sentiment.config import SentimentTrainConfig
    from core.sentiment.model import SentimentModelConfig
    from core.sentiment.train import train
    from core.store.warehouse import WarehouseMissing
    from privacy.ledger import BudgetExceeded, LedgerError

    if args.non_private and args.epsilon is not None:
        _fail("--non-private trains without any privacy guarantee: leave out --epsilon "
              "(or leave out --non-private to train with DP).")
    try:
        config = SentimentTrainConfig(
            epsilon=math.inf if args.non_private else (
                8.0 if args.epsilon is None else args.epsilon),
            delta=args.delta, non_private=args.non_private, max_grad_norm=args.max_grad_norm,
            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
            accountant=args.accountant, secure_mode=args.secure_mode,
            max_reviews_per_reviewer=args.max_reviews_per_reviewer,
            max_reviewers=args.max_reviewers, test_share=args.test_share,
            class_weighting=args.class_weighting, max_test_reviews=args.max_test_reviews)
        model_config = SentimentModelConfig(trainable_layers=args.trainable_layers,
                                            pooling=args.pooling)
    except ValueError as exc:
        _fail(exc)
    paths = Paths()
    try:
        run_id = train(paths, config, model_config=model_config, progress=not args.quiet)
    except BudgetExceeded as exc:
        _fail(f"refused by the privacy budget: {exc} (see `clearmark budget show`)")
    except (TrainingRefused, LedgerError, RegistryError, WarehouseMissing) as exc:
        _fail(exc)
    from core.sentiment import registry

    loaded = registry.load(run_id, paths)
    privacy = loaded.privacy
    eps = privacy.get("epsilon")
    print(f"Trained sentiment model {run_id} -> {loaded.path}")
    if privacy.get("private"):
        print(f"privacy: reviewer-level (epsilon {float(eps):.3f}, delta {privacy['delta']:.1e}), "
              f"noise {privacy['noise_multiplier']:.3f}, {privacy['steps']} steps, "
              f"q={privacy['sample_rate']:.4g}, <= {privacy['contribution_cap']} reviews per "
              "reviewer")
    else:
        print("privacy: NONE (--non-private comparison run; recorded with epsilon = inf)")
    _print_metrics(loaded.metrics)
    if args.score:
        cmd_score(argparse.Namespace(run_id=run_id, batch_size=64, min_reviewers=None,
                                     quiet=args.quiet))
    else:
        print(f"Next: clearmark sentiment score {run_id}  (replaces the scores of any "
              "earlier model)")


def cmd_score(args: argparse.Namespace) -> None:
    from core.registry.store import RegistryError
    from core.sentiment.score import ScoreConfig, score
    from core.store.warehouse import WarehouseMissing

    try:
        config = ScoreConfig(batch_size=args.batch_size, min_reviewers=args.min_reviewers)
        result = score(Paths(), args.run_id, config, progress=not args.quiet)
    except (RegistryError, WarehouseMissing) as exc:
        _fail(exc)
    labels = ", ".join(f"{k} {v:,}" for k, v in result.labels.items())
    print(f"Scored {result.reviews:,} reviews with {result.run_id} in {result.seconds:.1f} s "
          f"({result.reviews_per_second:.1f} reviews/s): {labels}")
    print(f"Aspects kept (>= {config.min_reviewers or PrivacyConfig().min_cell_size} distinct "
          f"reviewers each): {result.aspects:,}; example reviews explained: {result.examples}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from core.dp.plan import TrainingRefused
    from core.registry.store import RegistryError
    from core.sentiment.evaluate import evaluate_run
    from core.store.warehouse import WarehouseMissing

    try:
        metrics = evaluate_run(Paths(), args.run_id, progress=not args.quiet)
    except (RegistryError, TrainingRefused, WarehouseMissing) as exc:
        _fail(exc)
    _print_metrics(metrics)
    if not metrics.get("fingerprint_match", True):
        print("note: the warehouse changed since training: the training pool differs, so the "
              "test split may overlap what the model saw.")


def register(sub: argparse._SubParsersAction) -> None:
    """Add `sentiment train|score|evaluate` to clearmark's subcommands."""
    help_ = "Review sentiment: a MiniLM classifier trained with reviewer-level DP."
    sentiment = sub.add_parser("sentiment", help=help_, description=help_)
    actions = sentiment.add_subparsers(dest="sentiment_command", required=True,
                                       metavar="ACTION")

    tr = actions.add_parser(
        "train", help="Train a sentiment model (DP by default) and register it.",
        description="Train the sentiment model on the older reviews (labels from stars: 1-2 "
                    "negative, 3 neutral, 4-5 positive) with DP-SGD where the reviewer is the "
                    "privacy unit, evaluate it next to VADER on the newer reviews, and save "
                    "it under data/models/sentiment/<run_id>/. The run is charged to the "
                    "privacy ledger before training starts.")
    tr.add_argument("--epsilon", type=float, help="reviewer-level budget (default 8)")
    tr.add_argument("--delta", type=float,
                    help="default min(1e-5, 1/(10 N)) for N reviewers")
    tr.add_argument("--non-private", action="store_true",
                    help="comparison run WITHOUT privacy (recorded with epsilon = inf; "
                         "refused where the steward set a budget)")
    tr.add_argument("--epochs", type=int, default=3)
    tr.add_argument("--batch-size", type=int, default=64,
                    help="expected reviewers per step (Poisson sampling)")
    tr.add_argument("--lr", type=float, default=1e-3)
    tr.add_argument("--max-grad-norm", type=float, default=1.0, help="per-reviewer clip norm")
    tr.add_argument("--max-reviews-per-reviewer", type=int, default=8,
                    help="contribution cap: a reviewer's one review per step comes from at "
                         "most this many")
    tr.add_argument("--max-reviewers", type=int, help="train on a random subset (quick runs)")
    tr.add_argument("--max-test-reviews", type=int, help="evaluate on a random test sample")
    tr.add_argument("--test-share", type=float, default=0.2,
                    help="newest share of reviews held out for the test")
    tr.add_argument("--class-weighting", choices=("balanced", "sqrt", "none"),
                    default="balanced", help="class weights of the loss")
    tr.add_argument("--trainable-layers", type=int, default=1,
                    help="top encoder layers that learn (0: only the head)")
    tr.add_argument("--pooling", choices=("mean", "cls"), default="mean")
    tr.add_argument("--accountant", choices=("prv", "rdp"), default="prv")
    tr.add_argument("--secure-mode", action="store_true",
                    help="cryptographically secure noise (needs torchcsprng)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--score", action="store_true",
                    help="score every review with the new model right after training")
    tr.add_argument("--quiet", action="store_true", help="no progress bars")
    tr.set_defaults(func=cmd_train)

    sc = actions.add_parser(
        "score", help="Score every review with a model; aspects and examples for the app.",
        description="Give every review in the warehouse a label and class probabilities "
                    "(table review_sentiment), aggregate the words that drove the "
                    "predictions into aspects per item, category and overall, each backed by "
                    "at least the floor of distinct reviewers (review_aspects), and store the "
                    "word attributions of example reviews (review_token_weights). Replaces "
                    "the rows of any earlier model in one transaction.")
    sc.add_argument("run_id", nargs="?", help="model run (default: the newest)")
    sc.add_argument("--batch-size", type=int, default=64)
    sc.add_argument("--min-reviewers", type=int,
                    help=f"aspect floor (default {PrivacyConfig().min_cell_size})")
    sc.add_argument("--quiet", action="store_true", help="no progress bars")
    sc.set_defaults(func=cmd_score)

    ev = actions.add_parser(
        "evaluate", help="Evaluate a model again on the current time split, next to VADER.",
        description="Accuracy, macro-F1 and the binary accuracy on a balanced "
                    "negative/positive subset of the newer reviews, for the model and "
                    "VADER; rewrites the run's metrics.json.")
    ev.add_argument("run_id", nargs="?", help="model run (default: the newest)")
    ev.add_argument("--quiet", action="store_true", help="no progress bars")
    ev.set_defaults(func=cmd_evaluate)
