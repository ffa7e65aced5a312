"""`clearmark audit membership <run>`: the empirical privacy audit of a trained ranking model.

A run trained with `--audit-pool N` drew N customers before training and left each out
with probability 1/2 (`core.recommender.train`, recorded in the run's config). The attack scores
each pool customer by how much training improved the fit of that customer's own example
groups: the mean listwise loss of the untrained starting model (the bundled MiniLM with
its zero-shot prior, the reference) minus that of the trained model. A model that
memorised a customer fits them better than it fits people it never saw; subtracting the
reference removes how hard each customer is to begin with (a calibrated loss attack,
as in Watson et al. 2022). `
`privacy.membership.one_run_bound` turns the guesses into a lower bound on epsilon at
95% confidence. The bound is appended to the privacy ledger next to the run's claimed
epsilon (`privacy.audit.record_membership_audit`); a bound above the claim flags the
run as not releasable. The result is also written to the run's folder
(`membership_audit.json`) for the Models and Privacy pages.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from core.config import Paths
from core.dp.plan import TrainingRefused
from core.recommender import registry
from core.recommender.co_visits import own_items
from core.recommender.config import TrainConfig
from core.recommender.data import training_data
from core.recommender.examples import group_text_pairs, item_records, listwise_loss
from core.recommender.model import CrossEncoder
from privacy.audit import record_membership_audit
from privacy.membership import DEFAULT_CONFIDENCE, AuditBound, one_run_bound

RESULT_FILE = "membership_audit.json"


@torch.no_grad()
def customer_losses(model: CrossEncoder, groups_by_customer: dict[str, list],
                    items: dict[str, dict], *, progress: bool = False,
                    own: dict[str, frozenset[str]] | None = None) -> dict[str, float]:
    """Mean listwise loss of the model over each customer's example groups. A model
    with co-visits reads them as training did: `own` holds the items of the customers
    that are in its counts (left out of their own examples' scores)."""
    model.eval()
    omit = frozenset(model.config.omit_fields)
    out = {}
    for customer, groups in tqdm(groups_by_customer.items(), desc="audit", unit="customer",
                                 disable=not progress):
        losses = []
        for group in groups:
            text_a, text_b = group_text_pairs(
                group, items, omit=omit, co_visits=model.co_visits,
                own=(own or {}).get(customer, frozenset()),
                with_share=model.config.category_share)
            hidden, mask = model.pair_states(text_a, text_b)
            prior = torch.from_numpy(np.asarray(model.prior_similarity(text_a, text_b),
                                                dtype=np.float32))
            logits = model(hidden[None], mask[None], prior[None])
            losses.append(float(listwise_loss(logits)[0]))
        out[customer] = float(np.mean(losses))
    return out


def audit_membership(run_id: str, paths: Paths | None = None, *,
                     confidence: float = DEFAULT_CONFIDENCE, progress: bool = True,
                     record: bool = True, reference: CrossEncoder | None = None
                     ) -> dict[str, object]:
    """Run the audit on `run_id`; returns (and stores) the bound next to the claim.
    `reference`: the model training started from (default: the bundled MiniLM with a
    fresh head, which is how every product run starts)."""
    paths = paths or Paths()
    loaded = registry.load(run_id, paths)
    pool = {str(k): bool(v) for k, v in (loaded.config.get("membership_pool") or {}).items()}
    if not pool:
        raise TrainingRefused(f"run {run_id} was trained without a membership audit pool: "
                              "retrain it with `clearmark train --audit-pool 200` (or more) "
                              "to audit it.")
    known = {f for f in TrainConfig.__dataclass_fields__}
    config = TrainConfig(**{k: v for k, v in loaded.train_config.items() if k in known})
    before = loaded.config.get("data_before")
    data = training_data(paths, config, loaded.model_config,
                         split_name=str(loaded.config.get("split_kind", "leave_last_out")),
                         before=None if before is None else pd.Timestamp(before))
    by_customer: dict[str, list] = {}
    for group in data.groups:
        if group.user in pool:
            by_customer.setdefault(group.user, []).append(group)
    missing = sorted(set(pool) - set(by_customer))
    if missing:
        raise TrainingRefused(f"{len(missing)} of the {len(pool)} pool customers have no "
                              "examples in the warehouse any more (data changed since the "
                              f"run): the audit of {run_id} cannot be rebuilt.")
    items = item_records(loaded.model.with_popularity(data.train_catalogue))
    # members are in the co-visit counts (as in training), left-out customers are not
    own = {u: items_of for u, items_of in own_items(data.split.train).items()
           if pool.get(u, True)}
    losses = customer_losses(loaded.model, by_customer, items, progress=progress, own=own)
    start = reference if reference is not None else CrossEncoder.from_pretrained(
        loaded.model_config)
    before_training = customer_losses(start, by_customer, items, progress=progress)
    members = sorted(pool)
    bound: AuditBound = one_run_bound([before_training[m] - losses[m] for m in members],
                                      [pool[m] for m in members], confidence=confidence)
    claimed = float(loaded.privacy.get("epsilon", math.inf))
    result = {"run_id": run_id, "claimed_epsilon": claimed,
              "flagged": bound.epsilon_lower_bound > claimed, **bound.to_dict(),
              "mean_loss_in": float(np.mean([losses[m] for m in members if pool[m]])),
              "mean_loss_out": float(np.mean([losses[m] for m in members if not pool[m]]))}
    (loaded.path / RESULT_FILE).write_text(json.dumps(result, indent=2, default=str))
    if record:
        record_membership_audit(ledger_path=paths.ledger, run_id=run_id,
                                epsilon_lower_bound=bound.epsilon_lower_bound,
                                confidence=confidence, method=bound.method)
    return result
