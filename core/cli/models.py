"""`clearmark train | evaluate | score | models`: the data scientist's model commands.

`register(sub)` adds them to the subparsers of `core.cli.main.build_parser`. Problems the
user can fix exit 2 through `core.cli.main.UsageError` with a message that says what to do.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import NoReturn

from core.config import Paths
from core.registry import runs as model_runs

SPLIT_NAMES = {"leave-last-out": "leave_last_out", "time": "time"}


def _fail(exc: Exception | str) -> NoReturn:
    from core.cli.main import UsageError  # core.cli.main imports this module to register commands

    if isinstance(exc, Exception):
        raise UsageError(str(exc)) from exc
    raise UsageError(exc)


def user_errors() -> tuple[type[Exception], ...]:
    from core.dp.plan import TrainingRefused
    from core.registry.store import RegistryError
    from privacy.ledger import LedgerError  # BudgetExceeded is one

    return (ValueError, TrainingRefused, RegistryError, LedgerError)


def _pool_arg(text: str) -> int | str:
    from privacy.membership import AUTO_POOL

    if text == AUTO_POOL:
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of customers or "
                                         f"{AUTO_POOL!r}") from None


def cmd_train(args: argparse.Namespace) -> None:
    from core.dp.plan import with_overrides
    from core.recommender.config import TrainConfig
    from core.recommender.model_config import ModelConfig
    from core.recommender.train import train

    if args.non_private and args.epsilon is not None:
        _fail("--non-private and --epsilon contradict each other: drop one.")
    try:
        # co-visits where allowed: train() keeps them for non-private runs only
        model_config = ModelConfig(trainable_layers=args.trainable_layers, co_visits=True,
                                   **({"max_length": args.max_length} if args.max_length
                                      else {}),
                                   **({"new_item_slots": args.new_item_slots}
                                      if args.new_item_slots is not None else {}))
        config = with_overrides(
            TrainConfig(non_private=args.non_private,
                        epsilon=math.inf if args.non_private else TrainConfig.epsilon),
            epsilon=args.epsilon, delta=args.delta, max_grad_norm=args.max_grad_norm,
            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
            head_lr=args.head_lr, seed=args.seed, secure_mode=args.secure_mode or None,
            max_customers=args.max_customers, eval_baselines=args.baselines or None,
            eval_users=args.eval_users, dataset=args.dataset, max_steps=args.max_steps,
            held_out_items=args.held_out_items, audit_pool=args.audit_pool,
            grad_sample_mode=args.clipping, popularity_cap=args.popularity_cap,
            popularity_share=args.popularity_share)
        run_id = train(Paths(), config, model_config=model_config,
                       split_name=SPLIT_NAMES[args.split], progress=not args.quiet)
    except user_errors() as exc:
        _fail(exc)
    print_run(run_id)


def print_run(run_id: str) -> None:
    from core.recommender.registry import load

    loaded = load(run_id, Paths())
    p = loaded.privacy
    model = loaded.metrics.get("model", {})
    print(f"Trained {run_id} -> {loaded.path}")
    if p.get("private"):
        print(f"    privacy: epsilon {p['epsilon']:.3f} (target {p['target_epsilon']}) at delta "
              f"{p['delta']:.2g}, per {p['privacy_unit']} (at most {p['contribution_cap']} "
              f"examples each), sigma {p['noise_multiplier']:.3f}, q {p['sample_rate']:.4f}, "
              f"{p['steps']} steps, clip {p['max_grad_norm']}, {p['accountant']}")
        release = p.get("popularity_release") or {}
        if release.get("ledger_run_id"):
            print(f"    item popularity: released once (Gaussian, sigma "
                  f"{release['noise_multiplier']:.3f}, at most {release['cap']} items per "
                  f"customer), ledger entry {release['ledger_run_id']}; the epsilon above "
                  f"covers it and training together{model_runs.release_quality(release)}")
    else:
        print("    privacy: NONE (non-private run, recorded in the ledger with epsilon inf)")
        if p.get("co_visits"):
            print(f"    co-visits: exact counts of customers per item pair "
                  f"({p['co_visits']['customers']} customers) shipped with the model")
    final_mix = model_runs.final_mix_note(loaded.metrics)
    if final_mix:
        print(f"    {final_mix}")
    if model:
        print(f"    test: HR@10 {model.get('hr@10', float('nan')):.3f}  NDCG@10 "
              f"{model.get('ndcg@10', float('nan')):.3f}  ({model.get('users')} customers)")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from core.recommender.data import load_training_data, make_split
    from core.recommender.evaluate import evaluate, evaluate_baselines, sample_test_users
    from core.recommender.registry import load, write_metrics
    from core.recommender.retrieval import CrossEncoderRecommender

    paths = Paths()
    try:
        loaded = load(args.run_id, paths)
        split_name = SPLIT_NAMES[args.split] if args.split else (
            "time" if str(loaded.config.get("split", "")).startswith("time")
            else "leave_last_out")
        train_config = loaded.train_config
        interactions, catalogue = load_training_data(
            paths, max_customers=train_config.get("max_customers"),
            seed=int(train_config.get("seed", 0)))
        split = sample_test_users(make_split(interactions, split_name), args.users, seed=0)
        model = evaluate(CrossEncoderRecommender(loaded.model, name=args.run_id)
                         .fit(split.train, catalogue), split, k=args.k)
        baselines = evaluate_baselines(split, catalogue, k=args.k)
    except user_errors() as exc:
        _fail(exc)
    k = args.k
    print(f"{split.name}, {model['users']} test customers, full catalogue, k={k}")
    print(f"{'model':28s} {'HR@' + str(k):>8s} {'NDCG@' + str(k):>8s} {'MRR':>8s}")
    for name, r in [(args.run_id, model), *baselines.items()]:
        print(f"{name:28s} {r[f'hr@{k}']:8.3f} {r[f'ndcg@{k}']:8.3f} {r['mrr']:8.3f}")
    if args.save:
        write_metrics(paths, args.run_id, {**loaded.metrics, "model": model,
                                           "baselines": baselines})
        print(f"Saved to {loaded.path / 'metrics.json'}")


def cmd_score(args: argparse.Namespace) -> None:
    from core.recommender.batch_score import score
    from core.recommender.batch_score_distributed import score_sharded

    try:
        if args.workers != 1:
            result = score_sharded(Paths(), args.run_id, workers=args.workers, k=args.k,
                                   exclude_seen=not args.include_seen)
        else:
            result = score(Paths(), args.run_id, k=args.k, exclude_seen=not args.include_seen,
                           progress=not args.quiet)
    except user_errors() as exc:
        _fail(exc)
    print(f"Scored {result.customers:,} customers with {result.run_id}: {result.rows:,} "
          f"recommendations (top {args.k}) in {result.seconds:.1f}s "
          f"({result.customers_per_second:.1f} customers/s)")


def cmd_models(args: argparse.Namespace) -> None:
    from core.recommender.registry import list_runs

    runs = list_runs(Paths())
    if runs.empty:
        print(f"No trained models in {Paths().models_dir}: train one with `clearmark train`.")
        return
    if args.json:
        print(json.dumps(runs.drop(columns=["path"]).to_dict("records"), default=str,
                         indent=2))
        return
    print(runs.drop(columns=["path"]).to_string(index=False))


def register(sub: argparse._SubParsersAction) -> None:
    """Add `train`, `evaluate`, `score` and `models` to clearmark's subcommands."""
    from core.recommender.config import GRAD_SAMPLE_MODES, TrainConfig

    help_ = ("Train the cross-encoder ranking model with user-level differential privacy "
             "(Opacus DP-SGD); the run is charged to the privacy ledger before it starts.")
    tr = sub.add_parser("train", help=help_, description=help_)
    tr.add_argument("--epsilon", type=float, help="privacy budget of the run (default 3)")
    tr.add_argument("--delta", type=float,
                    help="default min(1e-5, 1/(10 N customers)); must be <= 1/(10 N)")
    tr.add_argument("--max-grad-norm", type=float,
                    help=f"per-customer clipping norm (default {TrainConfig.max_grad_norm})")
    tr.add_argument("--epochs", type=int, help=f"default {TrainConfig.epochs}")
    tr.add_argument("--batch-size", type=int,
                    help=f"expected customers per step, Poisson sampling (default "
                         f"{TrainConfig.batch_size})")
    tr.add_argument("--lr", type=float, help=f"encoder layers (default {TrainConfig.lr})")
    tr.add_argument("--head-lr", type=float,
                    help=f"pooler and head (default {TrainConfig.head_lr})")
    tr.add_argument("--non-private", action="store_true",
                    help="train WITHOUT differential privacy (recorded as epsilon inf; refused "
                         "where the steward set a budget)")
    tr.add_argument("--secure-mode", action="store_true",
                    help="cryptographically secure noise (needs torchcsprng)")
    tr.add_argument("--clipping", choices=GRAD_SAMPLE_MODES,
                    help="how per-customer gradients are clipped (default "
                         f"{TrainConfig.grad_sample_mode}: one backward pass; 'hooks' and "
                         "'ghost' are Opacus' own modes; the same guarantee)")
    tr.add_argument("--split", choices=tuple(SPLIT_NAMES), default="leave-last-out")
    tr.add_argument("--trainable-layers", type=int, default=1,
                    help="top encoder layers that learn (default 1)")
    tr.add_argument("--max-length", type=int, help="tokens per text pair (default 128)")
    tr.add_argument("--new-item-slots", type=int,
                    help="last places of each top 10 kept for items outside the training "
                         "data (default 1; 0: none)")
    tr.add_argument("--dataset", help="ledger dataset to charge (default: the warehouse)")
    tr.add_argument("--seed", type=int)
    tr.add_argument("--max-customers", type=int, help="a random subset of customers (quick)")
    tr.add_argument("--audit-pool", type=_pool_arg,
                    help="customers drawn for `clearmark audit membership`, each left out "
                         "of training with probability 1/2 (default 0: no audit; auto: a "
                         "third of the training customers, at most 200, none under 20)")
    tr.add_argument("--popularity-cap", type=int,
                    help="distinct items each customer counts for in the released item "
                         f"popularity (default {TrainConfig.popularity_cap})")
    tr.add_argument("--popularity-share", type=float,
                    help="share of epsilon the popularity release costs alone (default "
                         f"{TrainConfig.popularity_share}); training gets the rest, composed")
    tr.add_argument("--max-steps", type=int,
                    help="stop after this many steps (default: all the epochs' steps)")
    tr.add_argument("--held-out-items", type=float,
                    help="share of items kept out of training to measure cold-start items "
                         "(default 0)")
    tr.add_argument("--eval-users", type=int, help="test customers evaluated (default all)")
    tr.add_argument("--baselines", action="store_true",
                    help="also evaluate popularity, item-kNN and zero-shot content")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=cmd_train)

    help_ = ("Evaluate a trained model on its split (full catalogue) next to popularity, "
             "item-kNN and zero-shot content.")
    ev = sub.add_parser("evaluate", help=help_, description=help_)
    ev.add_argument("run_id", help="a run id from `clearmark models`")
    ev.add_argument("--k", type=int, default=10)
    ev.add_argument("--split", choices=tuple(SPLIT_NAMES),
                    help="default: the split the model was trained on")
    ev.add_argument("--users", type=int, help="evaluate a sample of test customers")
    ev.add_argument("--save", action="store_true", help="write the results to metrics.json")
    ev.set_defaults(func=cmd_evaluate)

    help_ = "Write the top-K recommendations of a model for every customer to the warehouse."
    sc = sub.add_parser("score", help=help_, description=help_)
    sc.add_argument("run_id", nargs="?", help="default: the latest trained model")
    sc.add_argument("--k", type=int, default=10)
    sc.add_argument("--include-seen", action="store_true",
                    help="allow items the customer already has (data where customers re-buy)")
    sc.add_argument("--workers", type=int, default=1,
                    help="score on this many processes, sharded by customer; the rows are "
                         "written in one transaction (default 1; several machines: "
                         "`torchrun ... -m core.recommender.batch_score_distributed`)")
    sc.add_argument("--quiet", action="store_true", help="no progress bar")
    sc.set_defaults(func=cmd_score)

    help_ = "List the trained models (complete runs), newest first."
    mo = sub.add_parser("models", help=help_, description=help_)
    mo.add_argument("--json", action="store_true", help="machine-readable output")
    mo.set_defaults(func=cmd_models)
