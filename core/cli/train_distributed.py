"""`torchrun --nproc_per_node N -m core.cli.train_distributed ...`: one rank of a DP
training run across processes (`core.recommender.train_distributed`), with the flags of
`clearmark train` plus what only a distributed run needs. Exits 2 on a refusal."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

import torch.distributed as dist

from core.config import Paths
from core.dp.plan import with_overrides
from core.recommender.config import TrainConfig
from core.recommender.model_config import ModelConfig
from core.recommender.train_distributed import BACKEND, train_distributed


def build_parser() -> argparse.ArgumentParser:
    """`clearmark train`'s parser (the same flags, defined once in core.cli.models),
    plus what only a distributed run needs."""
    from core.cli import models as cli_models

    commands = argparse.ArgumentParser().add_subparsers()
    cli_models.register(commands)
    train_parser = commands.choices["train"]
    train_parser.prog = "torchrun --nproc_per_node N -m core.cli.train_distributed"
    train_parser.add_argument("--run-id", help="default: a new ce_... id")
    train_parser.add_argument("--model-config-json", type=Path,
                              help="ModelConfig fields as JSON (replaces --trainable-layers "
                                   "and --max-length)")
    # Tests only: a randomly initialised BERT of this BertConfig (JSON) instead of the
    # bundled MiniLM weights, as `core.recommender.train.train(bert_config=...)`.
    train_parser.add_argument("--random-bert-json", type=Path, help=argparse.SUPPRESS)
    return train_parser


def main(argv: list[str] | None = None) -> int:
    from core.cli.models import SPLIT_NAMES, print_run, user_errors

    args = build_parser().parse_args(argv)
    # torchrun stops the other workers with SIGTERM when one fails: raising turns that
    # into an exception, so that rank 0's train() marks the ledger entry failed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    if args.model_config_json:
        model_config = ModelConfig.from_dict(json.loads(args.model_config_json.read_text()))
    else:
        model_config = ModelConfig(trainable_layers=args.trainable_layers,
                                   **({"max_length": args.max_length} if args.max_length
                                      else {}))
    bert_config = None
    if args.random_bert_json:
        from transformers import BertConfig

        bert_config = BertConfig.from_json_file(str(args.random_bert_json))
    config = with_overrides(
        TrainConfig(), epsilon=args.epsilon, delta=args.delta,
        max_grad_norm=args.max_grad_norm, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, head_lr=args.head_lr, seed=args.seed,
        secure_mode=args.secure_mode or None, max_customers=args.max_customers,
        eval_baselines=args.baselines or None, eval_users=args.eval_users,
        dataset=args.dataset, max_steps=args.max_steps, held_out_items=args.held_out_items,
        audit_pool=args.audit_pool, non_private=args.non_private or None,
        grad_sample_mode=args.clipping)
    dist.init_process_group(BACKEND)
    try:
        run_id = train_distributed(Paths(), config, model_config=model_config,
                                   split_name=SPLIT_NAMES[args.split],
                                   progress=not args.quiet, bert_config=bert_config,
                                   run_id=args.run_id)
    except user_errors() as exc:  # refusals, budget exceeded: nothing was trained
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        dist.destroy_process_group()
    if run_id is not None:
        print_run(run_id)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
