"""A training run's privacy spend: its ledger entries and the privacy record of its model.

A run charges each mechanism it releases as its own ledger entry, in this order and
before any training work: the item popularity counts (`<run>-counts`), the DP fit of
the final weights (`<run>-fit`) and training (`<run>`: DP-SGD, or epsilon inf for a
non-private run). Each entry holds its own mechanism's epsilon and names the mechanisms
still to follow, so the budget check composes the whole run before any part of it is
recorded. Once the run is saved every entry is completed; on a failure, failed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from core.config import PROJECT_ROOT, Paths
from core.dp.plan import PrivacyPlan
from core.recommender.config import TrainConfig
from core.recommender.planning import FinalFitNoise, RunPlan
from core.recommender.popularity_release import (
    LOG_FORM_MIN_RELIABILITY,
    CountsNoise,
    PopularityRelease,
)
from core.store.interactions import USER
from privacy import ledger
from privacy.accounting import Mechanism, epsilon_for
from privacy.budget import charge as charge_entry

ARTEFACT_KIND = "ranking_model"
COUNTS_KIND = "item_popularity"  # the ledger kind of a run's released item counts
COUNTS_SUFFIX = "-counts"  # its ledger run id: the run's id with this suffix
FIT_KIND = "final_weights"  # the ledger kind of a DP run's fit of its final weights
FIT_SUFFIX = "-fit"


@dataclass(frozen=True)
class Entry:
    """One mechanism of a run, as its ledger entry records it.

    sensitivity: the L2 bound on one customer's contribution (the ledger's max_grad_norm);
    epsilon: this mechanism's alone (inf: not private); done: the note on completion."""

    run_id: str
    kind: str
    noise_multiplier: float
    sample_rate: float
    steps: int
    sensitivity: float
    contribution_cap: int
    epsilon: float
    accountant: str
    note: str
    done: str
    mechanism: str = ledger.MECHANISM_DP_SGD

    @property
    def private(self) -> bool:
        return math.isfinite(self.epsilon)

    @property
    def composed(self) -> Mechanism:
        """(noise multiplier, sample rate, steps): what the accountant composes."""
        return (self.noise_multiplier, self.sample_rate, self.steps)


def counts_entry(run_id: str, noise: CountsNoise, cap: int) -> Entry:
    """The item popularity counts: one Gaussian release, each customer counting at most
    `cap` distinct items (L2 sensitivity sqrt(cap))."""
    return Entry(run_id + COUNTS_SUFFIX, COUNTS_KIND, noise.noise_multiplier, 1.0, 1,
                 sensitivity=math.sqrt(cap), contribution_cap=cap,
                 epsilon=noise.epsilon_alone, accountant=noise.accountant,
                 mechanism=ledger.MECHANISM_GAUSSIAN_COUNTS,
                 note=f"customers per item, at most {cap} distinct items per customer (L2 "
                      f"sensitivity sqrt(cap)), Gaussian noise, released once for run "
                      f"{run_id}",
                 done=f"released with run {run_id}")


def fit_entry(run_id: str, noise: FinalFitNoise, steps: int) -> Entry:
    """The DP fit of the final weights: `steps` noisy steps on a Poisson sample, one
    clipped gradient per customer, composed into one Gaussian mechanism."""
    return Entry(run_id + FIT_SUFFIX, FIT_KIND, noise.noise_multiplier, noise.sample_rate, 1,
                 sensitivity=1.0, contribution_cap=1, epsilon=noise.epsilon_alone,
                 accountant=noise.accountant, mechanism=ledger.MECHANISM_GAUSSIAN_FIT,
                 note=f"final weights of run {run_id} fitted on the validation targets of a "
                      f"Poisson sample of customers (rate {noise.sample_rate:.4g}), one "
                      f"clipped gradient per customer per step, {steps} noisy steps "
                      f"composed into this one Gaussian mechanism",
                 done=f"folded into run {run_id}")


def training_entry(run_id: str, config: TrainConfig, plan: PrivacyPlan, split_name: str,
                   saved_to: Path) -> Entry:
    """Training: DP-SGD at the plan's noise, sample rate and steps (epsilon inf for a
    non-private run), its model saved to `saved_to`."""
    epsilon = math.inf if config.non_private else epsilon_for(
        noise_multiplier=plan.noise_multiplier, sample_rate=plan.sample_rate,
        steps=plan.steps, delta=plan.delta, accountant=plan.accountant)
    return Entry(run_id, ARTEFACT_KIND, plan.noise_multiplier, plan.sample_rate, plan.steps,
                 sensitivity=config.max_grad_norm,
                 contribution_cap=config.max_examples_per_customer, epsilon=epsilon,
                 accountant=plan.accountant,
                 note=ledger_note(config, plan, split_name, run_id),
                 done=f"saved to {saved_to}")


def run_entries(run_id: str, run: RunPlan, *, split_name: str, saved_to: Path
                ) -> list[Entry]:
    """Every ledger entry of a run, in the order they are charged."""
    config = run.config
    entries = []
    if run.noise is not None:
        entries.append(counts_entry(run_id, run.noise, config.popularity_cap))
    if run.fit_noise is not None:
        entries.append(fit_entry(run_id, run.fit_noise, config.final_fit_steps))
    entries.append(training_entry(run_id, config, run.plan, split_name, saved_to))
    return entries


def charge(paths: Paths, entries: Sequence[Entry], *, dataset: str, fingerprint: str,
           delta: float, secure_mode: bool) -> None:
    """Charge `entries` to `dataset`'s budget in order (`privacy.budget.charge`), each
    told the mechanisms still to follow. Raises the ledger's refusal (BudgetExceeded)
    or error; the entries charged before it are then marked failed."""
    charged: list[Entry] = []
    try:
        for i, entry in enumerate(entries):
            charge_entry(
                ledger_path=paths.ledger, budgets_path=paths.budgets, run_id=entry.run_id,
                dataset=dataset, dataset_fingerprint=fingerprint, artefact_kind=entry.kind,
                privacy_unit="customer" if entry.private else "none",
                contribution_cap=entry.contribution_cap,
                noise_multiplier=entry.noise_multiplier, sample_rate=entry.sample_rate,
                steps=entry.steps, max_grad_norm=entry.sensitivity, delta=delta,
                epsilon=entry.epsilon, accountant=entry.accountant, secure_mode=secure_mode,
                repo_dir=PROJECT_ROOT, note=entry.note, mechanism=entry.mechanism,
                to_follow=[later.composed for later in entries[i + 1:]])
            charged.append(entry)
    except BaseException as exc:
        fail(paths, charged, exc)
        raise


def complete(paths: Paths, entries: Sequence[Entry]) -> None:
    """Mark every entry completed, restating its epsilon (none for a non-private one)."""
    for entry in entries:
        ledger.complete(ledger_path=paths.ledger, run_id=entry.run_id,
                        epsilon=entry.epsilon if entry.private else None, note=entry.done)


def fail(paths: Paths, entries: Sequence[Entry], exc: BaseException) -> None:
    """Mark every entry failed, with `exc` as the note."""
    for entry in entries:
        ledger.fail(ledger_path=paths.ledger, run_id=entry.run_id,
                    note=f"{type(exc).__name__}: {exc}"[:500])


def ledger_note(config: TrainConfig, plan: PrivacyPlan, split_name: str, run_id: str) -> str:
    """The training entry's note: the guarantee, and what it does not cover."""
    parts = [f"split {split_name}"]
    if config.non_private:
        parts.append("NON-PRIVATE run (explicit): no DP guarantee, epsilon recorded as inf")
    else:
        parts.append(f"user-level DP-SGD: one example group per sampled customer per step, "
                     f"at most {config.max_examples_per_customer} example groups per "
                     f"customer; Poisson sampling q={plan.sample_rate:.4g}; accountant "
                     f"{plan.accountant}" + (f" (fallback from {config.accountant})"
                                             if plan.accountant != config.accountant else ""))
    if config.val_users > 0 and not config.non_private:
        parts.append("not covered: the validation HR@10 shown on the progress bar (no "
                     "noise; shown, never used to choose the model)")
    if plan.alongside:
        parts.append(f"released with the item popularity counts charged as {run_id}"
                     f"{COUNTS_SUFFIX}; epsilon {config.epsilon} covers both, composed")
    if config.audit_pool:
        parts.append(f"membership audit pool of {config.audit_pool} customers, each left out "
                     "of training with probability 1/2")
    return "; ".join(parts)


# --- the privacy record saved with the model -------------------------------------------


def privacy_record(run_id: str, run: RunPlan, *, spent: float, model,
                   release: PopularityRelease | None, asked_log: bool,
                   co_visited: pd.DataFrame | None) -> dict[str, object]:
    """The privacy record saved with a run's `model` (a CrossEncoder): the guarantee
    claimed (`spent`: the accountant's epsilon, inf when not private), each mechanism
    released with the model and what is not covered. `asked_log`: the run asked for the
    popularity's log form; `co_visited`: the interactions the co-visits count."""
    config, plan = run.config, run.plan
    record: dict[str, object] = {
        "private": not config.non_private, "epsilon": spent,
        "target_epsilon": math.inf if config.non_private else config.epsilon,
        "delta": plan.delta, "noise_multiplier": plan.noise_multiplier,
        "sample_rate": plan.sample_rate, "steps": plan.steps,
        "expected_batch_size": plan.batch_size, "customers": plan.people,
        "max_grad_norm": config.max_grad_norm, "accountant": plan.accountant,
        "privacy_unit": "none" if config.non_private else "customer",
        "contribution_cap": config.max_examples_per_customer,
        "contribution": "one example group per sampled customer per step",
        "secure_mode": config.secure_mode,
    }
    if release is not None:
        record["popularity_release"] = _popularity_record(
            run_id, release, private=run.noise is not None,
            log_form="read" if model.config.popularity_log else (
                f"not read: reliability {release.reliability:.2f} below "
                f"{LOG_FORM_MIN_RELIABILITY}" if asked_log else "off"))
    else:
        record["not_covered"] = "popularity order of the training split used for candidates"
    if run.fit_noise is not None:
        record["final_fit"] = _final_fit_record(run_id, run.fit_noise, config.final_fit_steps)
    if model.co_visits is not None:
        record["co_visits"] = {
            "what": "customers who interacted with both items, per item pair, exact (not "
                    "private); the model reads each candidate's item-kNN score against "
                    "the history shown, the candidate retrieval its top items",
            "customers": int(co_visited[USER].nunique()),
            "pairs": int(model.co_visits.counts.nnz // 2)}
    return record


def _popularity_record(run_id: str, release: PopularityRelease, *, private: bool,
                       log_form: str) -> dict[str, object]:
    return {
        "what": "customers per item (each counting at most `cap` distinct items), "
                "Gaussian noise, released once; the model reads each item's "
                "percentile, the candidate retrieval its order",
        "noise_multiplier": release.noise_multiplier, "cap": release.cap,
        "l2_sensitivity": math.sqrt(release.cap), "customers": release.customers,
        "epsilon_alone": release.epsilon_alone, "accountant": release.accountant,
        "reliability": release.reliability, "log_form": log_form,
        "ledger_run_id": run_id + COUNTS_SUFFIX if private else None,
        "composed": "epsilon above covers training and this release (the accountant "
                    "composes both)" if private else "exact counts (not private)"}


def _final_fit_record(run_id: str, noise: FinalFitNoise, steps: int) -> dict[str, object]:
    return {
        "what": "the final logit's weights (head scale, mix) fitted on the validation "
                "targets of a Poisson sample of customers, one clipped gradient per "
                "customer per step, Gaussian noise",
        "noise_multiplier": noise.noise_multiplier, "sample_rate": noise.sample_rate,
        "steps": steps, "epsilon_alone": noise.epsilon_alone,
        "accountant": noise.accountant, "ledger_run_id": run_id + FIT_SUFFIX,
        "composed": "epsilon above covers training, the counts and this fit"}
