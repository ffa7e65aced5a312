"""Empirical privacy audit of the recommender: a deliberately overfit non-private run next
to a DP run with the same settings, both audited by `clearmark audit membership`.

Run from the repository root: ``.venv/bin/python -m bench.membership_audit [--quick]``.
Writes ``bench/results/membership_audit.json`` with the machine description.

Data: Amazon Gift Cards (``../shared/data/amazon-2018``) when present, else the built-in
generator (1,000 customers). Both runs draw the same audit pool (`--pool` customers, each
left out of training with probability 1/2) and train the bundled MiniLM's top layer and
head hard (many epochs, a high learning rate) so that a non-private model memorises its
customers; the DP run adds user-level DP-SGD at `--epsilon`. The audit's lower bound on
epsilon (95% confidence) should be clearly above 0 for the first and at most the claim
for the second.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench.machine import RESULTS, write_result
from bench.recommender import AMAZON_DIR, GIFT_CARDS, MODEL, _ingest
from core.recommender.config import TrainConfig
from core.recommender.membership_audit import audit_membership
from core.recommender.train import train

OVERFIT = TrainConfig(non_private=True, epochs=20, batch_size=16, lr=2e-3, head_lr=2e-3,
                      val_users=0, eval_users=50)


def run(*, pool: int, epsilon: float, quick: bool) -> dict[str, object]:
    data = "gift-cards" if all((AMAZON_DIR / n).exists() for n in GIFT_CARDS) else "generator"
    limits = {"epochs": 2, "max_customers": 120} if quick else {}
    out: dict[str, object] = {"data": data, "pool": pool, "quick": quick, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="clearmark-audit-") as tmp:
        paths, label = _ingest(Path(tmp), data, 1000)
        out["dataset"] = label
        configs = {"non_private_overfit": replace(OVERFIT, audit_pool=pool, **limits),
                   f"dp_eps{epsilon:g}": replace(OVERFIT, non_private=False, epsilon=epsilon,
                                                 audit_pool=pool, **limits)}
        for name, config in configs.items():
            print(f"--- {name}", flush=True)
            started = time.perf_counter()
            run_id = train(paths, config, model_config=MODEL, progress=True)
            trained = time.perf_counter()
            result = audit_membership(run_id, paths, progress=True)
            out["runs"][name] = {**result, "train_config": config.to_dict(),
                                 "train_seconds": trained - started,
                                 "audit_seconds": time.perf_counter() - trained}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=200)
    parser.add_argument("--epsilon", type=float, default=3.0)
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    args = parser.parse_args(argv)
    result = run(pool=60 if args.quick else args.pool, epsilon=args.epsilon, quick=args.quick)
    print(f"\n{result['dataset']}: audit pool {result['pool']}")
    for name, r in result["runs"].items():
        print(f"{name:22s} claimed eps {r['claimed_epsilon']:>7.3f}  empirical eps >= "
              f"{r['epsilon_lower_bound']:.3f} ({r['correct']}/{r['guesses']} right; mean "
              f"loss in {r['mean_loss_in']:.3f} / out {r['mean_loss_out']:.3f})"
              + ("  FLAGGED" if r["flagged"] else ""))
    path = write_result("membership_audit_quick" if args.quick else "membership_audit", result)
    print(f"Wrote {path}")
    return 0


if __name__ == "__main__":
    RESULTS.mkdir(parents=True, exist_ok=True)
    sys.exit(main())
