"""The data steward's privacy budgets, one (epsilon, delta) per dataset.

Budgets live in a small JSON file (e.g. data/privacy_budgets.json). Setting
one is also appended to the ledger (artefact_kind "budget", no spend), so
budget changes are audited like spends; the audit report cross-checks the
file against the ledger.

What a dataset has spent is the composition, by the accountant (PRV, RDP
fallback) at the budget's delta, of every run charged on it: started,
completed AND failed (a failed run touched the data). The sum of the runs'
epsilons (basic composition) is shown next to it as a loose upper bound.
A run that is not private (`privacy.guarantee.is_private`) is refused on a
dataset with a budget.

`charge` is the one way a run enters the ledger: it checks the budget and appends
the "started" record under the ledger's lock (`complete` and `fail` in
`privacy.ledger` record how it ended).

Builds on `privacy.ledger`, `privacy.accounting` and `privacy.guarantee`, none of
which imports this module; nothing outside `privacy`. Paths come in as arguments.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from privacy.accounting import compose_with_fallback, epsilon_with_fallback, sum_epsilon
from privacy.guarantee import NO_UNIT, is_private
from privacy.ledger import (
    MECHANISM_DP_SGD,
    MECHANISM_NONE,
    NON_SPEND_KINDS,
    BudgetExceeded,
    LedgerError,
    LedgerRecord,
    append_with,
    code_version,
    read_records,
    summarize,
)

__all__ = ["Budget", "BudgetExceeded", "BudgetFileError", "DatasetBudget", "Spend", "charge",
           "check_charge", "get_budget", "overview", "overview_of", "read_budgets", "remaining",
           "set_budget", "spend_of", "spent"]

BUDGET_KIND = "budget"
FILE_VERSION = 1
PRIVACY_UNITS = ("customer", "example", NO_UNIT)  # what `charge` records a run as protecting
ACCOUNTANTS = ("prv", "rdp", "pld")  # the accountants a charged run may name
SAMPLER = "poisson"


class BudgetFileError(LedgerError):
    """The budgets file cannot be read; nothing is charged until it is fixed."""


@dataclass(frozen=True)
class Budget:
    dataset: str
    epsilon: float
    delta: float
    set_by: str
    set_at: str  # UTC, ISO 8601
    ledger_seq: int  # the ledger record that audited this setting


@dataclass(frozen=True)
class Spend:
    """What a dataset has spent. `composed_epsilon` (at `delta`) is the spend;
    `summed_epsilon` is basic composition of the claimed epsilons, for comparison."""

    composed_epsilon: float
    summed_epsilon: float
    runs: tuple[str, ...]  # run_ids charged (started, completed and failed)
    delta: float | None  # None when there is nothing to compose
    accountant: str = "prv"  # which one composed ("rdp" when PRV fell back)
    privacy_units: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatasetBudget:
    dataset: str
    budget: Budget | None
    spend: Spend
    remaining: float | None  # budget epsilon minus composed spend; None without a budget


# --- the budgets file --------------------------------------------------------------


def read_budgets(budgets_path: Path) -> dict[str, Budget]:
    """All budgets in the file ({} when it does not exist)."""
    path = Path(budgets_path)
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return {name: Budget(dataset=name, **entry) for name, entry in doc["budgets"].items()}
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise BudgetFileError(
            f"The budgets file {path} cannot be read ({exc}). Restore it from a backup, or move "
            "it aside and set the budgets again (`clearmark budget set`): the ledger holds "
            "every budget ever set (`clearmark audit report`). Nothing is charged meanwhile."
        ) from exc


def _write_budgets(budgets_path: Path, budgets: dict[str, Budget]) -> None:
    """Atomic replace, so a reader never sees half a file."""
    path = Path(budgets_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"version": FILE_VERSION,
           "budgets": {name: {k: v for k, v in asdict(b).items() if k != "dataset"}
                       for name, b in sorted(budgets.items())}}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def get_budget(*, budgets_path: Path, dataset: str) -> Budget | None:
    return read_budgets(budgets_path).get(dataset)


def set_budget(*, budgets_path: Path, ledger_path: Path, dataset: str, epsilon: float,
               delta: float, repo_dir: Path | None = None, note: str = "") -> Budget:
    """Set (or change) a dataset's budget. The change is appended to the ledger
    first, then the file is rewritten, both under the ledger's lock, so a
    concurrent charge sees either the old budget or the new one. A budget
    below what is already spent is allowed: every further run is refused."""
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f"budget epsilon must be a positive number, got {epsilon}")
    if not 0 < delta < 1:
        raise ValueError(f"budget delta must be in (0, 1), got {delta}")
    if not dataset:
        raise ValueError("dataset must be non-empty")
    version = code_version(repo_dir)

    def build(records: list[LedgerRecord]) -> dict[str, Any]:
        previous = read_budgets(budgets_path).get(dataset)
        return dict(
            run_id=f"budget:{dataset}", dataset=dataset, dataset_fingerprint="",
            artefact_kind=BUDGET_KIND, privacy_unit=None, contribution_cap=None,
            mechanism=None, noise_multiplier=None, sample_rate=None, steps=None,
            max_grad_norm=None, delta=None, epsilon=None, accountant=None,
            accountant_version=None, sampler=None, secure_mode=None, code_version=version,
            status="completed", note=note,
            details={"budget_epsilon": float(epsilon), "budget_delta": float(delta),
                     "previous": None if previous is None
                     else {"epsilon": previous.epsilon, "delta": previous.delta}})

    result: list[Budget] = []

    def write_file(record: LedgerRecord) -> None:
        budgets = read_budgets(budgets_path)
        budgets[dataset] = Budget(dataset=dataset, epsilon=float(epsilon), delta=float(delta),
                                  set_by=record.who, set_at=record.when, ledger_seq=record.seq)
        _write_budgets(budgets_path, budgets)
        result.append(budgets[dataset])

    append_with(ledger_path=ledger_path, build=build, after=write_file)
    return result[0]


# --- spend -------------------------------------------------------------------------


def spend_of(records: list[LedgerRecord], *, dataset: str, delta: float | None) -> Spend:
    """Spend of `dataset` from ledger records (pure). `delta` None: the largest
    delta among its runs (composition is reported at one delta)."""
    mine = [s for s in summarize(records) if s.dataset == dataset]
    if not mine:
        return Spend(0.0, 0.0, (), delta)
    if delta is None:
        deltas = [s.delta for s in mine if s.private]
        delta = max(deltas) if deltas else None
    if delta is None:  # only runs that are not private
        composed, accountant = math.inf, "none"
    else:
        composed, accountant = compose_with_fallback([s.mechanism for s in mine], delta=delta)
    # a run whose final claim went up is counted at the larger claim
    summed = sum_epsilon([max(s.charged_epsilon, s.epsilon) for s in mine])
    return Spend(composed_epsilon=composed, summed_epsilon=summed,
                 runs=tuple(s.run_id for s in mine), delta=delta, accountant=accountant,
                 privacy_units=tuple(sorted({s.privacy_unit for s in mine})))


def spent(*, ledger_path: Path, dataset: str, delta: float | None = None,
          budgets_path: Path | None = None) -> Spend:
    """Spend of `dataset`, composed at `delta`, else at its budget's delta (when
    `budgets_path` has one), else at the largest delta among its private runs."""
    if delta is None and budgets_path is not None:
        budget = get_budget(budgets_path=budgets_path, dataset=dataset)
        delta = budget.delta if budget else None
    return spend_of(read_records(ledger_path), dataset=dataset, delta=delta)


def remaining(*, ledger_path: Path, budgets_path: Path, dataset: str) -> float | None:
    """Budget epsilon minus the composed spend (negative when over, after a budget
    was lowered); None when the dataset has no budget. Composition is not
    additive: a run of epsilon r alone may not fit in r remaining."""
    budget = get_budget(budgets_path=budgets_path, dataset=dataset)
    if budget is None:
        return None
    used = spend_of(read_records(ledger_path), dataset=dataset, delta=budget.delta)
    return budget.epsilon - used.composed_epsilon


def check_charge(*, records: list[LedgerRecord], budgets_path: Path, run_id: str,
                 dataset: str, mechanism: tuple[float, float, int],
                 to_follow: Sequence[tuple[float, float, int]] = ()) -> None:
    """Raise BudgetExceeded when charging `mechanism` (noise 0: not private)
    would take `dataset` over its budget. Called by `charge` under the
    ledger's lock, before anything is appended. `to_follow`: mechanisms of the same
    run that will be charged right after this one (a run's item counts are charged
    before its training): the check composes them too, so a run that cannot fit as a
    whole is refused before any part of it is charged."""
    budget = get_budget(budgets_path=budgets_path, dataset=dataset)
    if budget is None:
        return
    before = spend_of(records, dataset=dataset, delta=budget.delta)
    history = [s.mechanism for s in summarize(records) if s.dataset == dataset]
    after, accountant = compose_with_fallback([*history, mechanism, *to_follow],
                                              delta=budget.delta)
    if after <= budget.epsilon:
        return
    sigma, q, steps = mechanism
    requested, _ = epsilon_with_fallback(noise_multiplier=sigma, sample_rate=q, steps=steps,
                                         delta=budget.delta)
    left = budget.epsilon - before.composed_epsilon
    what = ("it is not private (epsilon infinite); a dataset with a budget takes private "
            "runs only" if math.isinf(requested) else "it would exceed the budget")
    raise BudgetExceeded(
        f"Run {run_id} refused on dataset {dataset!r}: {what}. "
        f"Budget: epsilon {budget.epsilon:.4g} at delta {budget.delta:.3g}. "
        f"Spent: epsilon {before.composed_epsilon:.4f} over {len(before.runs)} run(s) "
        f"(composed, {before.accountant}). "
        f"Requested: epsilon {requested:.4f} for this run alone, {after:.4f} composed with "
        f"the runs before ({accountant}). "
        f"Remaining: epsilon {left:.4f}. "
        "Raise the noise multiplier or train fewer steps / a smaller sample rate "
        "(privacy.accounting.noise_for gives the noise for a target epsilon), or ask the "
        "data steward to raise the budget (`clearmark budget set`).",
        dataset=dataset, budget_epsilon=budget.epsilon,
        spent_epsilon=before.composed_epsilon, requested_epsilon=requested,
        composed_epsilon=after, remaining_epsilon=left)


def overview(*, ledger_path: Path, budgets_path: Path,
             dataset: str | None = None) -> list[DatasetBudget]:
    """Every dataset with a budget or a charged run (or just `dataset`), sorted."""
    return overview_of(read_records(ledger_path), budgets=read_budgets(budgets_path),
                       dataset=dataset)


def overview_of(records: list[LedgerRecord], *, budgets: dict[str, Budget],
                dataset: str | None = None) -> list[DatasetBudget]:
    """`overview` from records and budgets already read (pure)."""
    names = set(budgets) | {s.dataset for s in summarize(records)}
    if dataset is not None:
        names = {dataset}
    out = []
    for name in sorted(names):
        budget = budgets.get(name)
        spend = spend_of(records, dataset=name, delta=budget.delta if budget else None)
        left = budget.epsilon - spend.composed_epsilon if budget else None
        out.append(DatasetBudget(dataset=name, budget=budget, spend=spend, remaining=left))
    return out


# --- charging a run ------------------------------------------------------------------


def opacus_version() -> str:
    try:
        return metadata.version("opacus")
    except metadata.PackageNotFoundError:
        return "unknown"


def _validate_spend(*, run_id: str, dataset: str, privacy_unit: str, contribution_cap: int,
                    noise_multiplier: float, sample_rate: float, steps: int,
                    max_grad_norm: float, delta: float, epsilon: float,
                    accountant: str) -> None:
    if not run_id or not dataset:
        raise ValueError("run_id and dataset must be non-empty")
    if privacy_unit not in PRIVACY_UNITS:
        raise ValueError(f"privacy_unit must be one of {PRIVACY_UNITS}, got {privacy_unit!r}")
    if math.isnan(epsilon) or epsilon < 0:
        raise ValueError(f"epsilon must be >= 0 (math.inf when not private), got {epsilon}")
    if not (0 < delta < 1 or (delta == 0 and math.isinf(epsilon))):
        raise ValueError(f"delta must be in (0, 1) (0 allowed when not private), got {delta}")
    if not 0 <= sample_rate <= 1:
        raise ValueError(f"sample_rate must be in [0, 1], got {sample_rate}")
    if steps < 0 or noise_multiplier < 0:
        raise ValueError(f"steps ({steps}) and noise_multiplier ({noise_multiplier}) "
                         "must be >= 0")
    if math.isfinite(epsilon):
        if privacy_unit == NO_UNIT:
            raise ValueError("privacy_unit 'none' is for runs that are not private "
                             "(epsilon=math.inf); say 'customer' or 'example'")
        if noise_multiplier <= 0 or max_grad_norm <= 0:
            raise ValueError(f"a private run needs noise_multiplier > 0 and max_grad_norm > 0, "
                             f"got {noise_multiplier} and {max_grad_norm}")
        if contribution_cap < 1:
            raise ValueError(f"contribution_cap must be >= 1, got {contribution_cap}")
        if accountant not in ACCOUNTANTS:
            raise ValueError(f"accountant must be one of {ACCOUNTANTS}, got {accountant!r}")


def charge(*, ledger_path: Path, budgets_path: Path, run_id: str, dataset: str,
           dataset_fingerprint: str, artefact_kind: str, privacy_unit: str,
           contribution_cap: int, noise_multiplier: float, sample_rate: float, steps: int,
           max_grad_norm: float, delta: float, epsilon: float, accountant: str,
           secure_mode: bool, repo_dir: Path | None = None, note: str = "",
           mechanism: str = MECHANISM_DP_SGD,
           to_follow: Sequence[tuple[float, float, int]] = ()) -> LedgerRecord:
    """Charge a run to its dataset's budget before it starts: append status "started".

    `mechanism` names what adds the noise (DP-SGD, or MECHANISM_GAUSSIAN_COUNTS for a
    one-off count release); either way (noise_multiplier, sample_rate, steps) is what
    the accountant composes. `to_follow`: the mechanisms of the same run charged next
    (see `check_charge`).

    Refuses with BudgetExceeded, before anything is appended, when the dataset
    has a budget and the run composed (PRV, RDP fallback) with every run
    already charged on it would exceed the budget's epsilon at the budget's
    delta, and always for a run that is not private (epsilon=math.inf). A run
    that is not private is recorded with privacy_unit "none" and epsilon "inf".
    """
    if artefact_kind in NON_SPEND_KINDS:
        raise ValueError(f"artefact_kind {artefact_kind!r} is reserved for ledger bookkeeping")
    private = is_private(epsilon, privacy_unit)
    if not private:
        privacy_unit = NO_UNIT
    _validate_spend(run_id=run_id, dataset=dataset, privacy_unit=privacy_unit,
                    contribution_cap=contribution_cap, noise_multiplier=noise_multiplier,
                    sample_rate=sample_rate, steps=steps, max_grad_norm=max_grad_norm,
                    delta=delta, epsilon=epsilon, accountant=accountant)
    version = code_version(repo_dir)

    def build(records: list[LedgerRecord]) -> dict[str, Any]:
        if any(r.run_id == run_id for r in records):
            raise LedgerError(f"run {run_id} is already in the ledger; a status change goes "
                              "through complete() or fail(), a new run needs a new run_id")
        check_charge(records=records, budgets_path=Path(budgets_path), run_id=run_id,
                     dataset=dataset, to_follow=to_follow,
                     mechanism=(noise_multiplier if private else 0.0, sample_rate, steps))
        return dict(
            run_id=run_id, dataset=dataset, dataset_fingerprint=dataset_fingerprint,
            artefact_kind=artefact_kind, privacy_unit=privacy_unit,
            contribution_cap=int(contribution_cap),
            mechanism=mechanism if private else MECHANISM_NONE,
            noise_multiplier=float(noise_multiplier),
            sample_rate=float(sample_rate), steps=int(steps),
            max_grad_norm=float(max_grad_norm), delta=float(delta), epsilon=float(epsilon),
            accountant=accountant, accountant_version=opacus_version(), sampler=SAMPLER,
            secure_mode=bool(secure_mode), code_version=version, status="started", note=note)

    return append_with(ledger_path=ledger_path, build=build)
