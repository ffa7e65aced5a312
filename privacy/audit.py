"""The budget audit: what the ledger says, checked, with second opinions.

`audit_report` verifies the ledger's chain, cross-checks the budgets file
against the budget records in the ledger, and for every run recomputes the
claimed epsilon with an independent library (Google's dp_accounting: PLD,
and RDP) next to the Gaussian-DP approximation μ. A later membership-
inference audit appends an empirical lower bound on epsilon with
`record_membership_audit`; a run whose lower bound exceeds its claim is
flagged and not releasable.

`to_csv` (runs table, safe to open in a spreadsheet: `privacy.csv_safe`) and
`to_json` (the whole report, with the ledger's head hash) are the exports.

Builds on the other `privacy` modules only; nothing outside `privacy`. Paths come in
as arguments.
"""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from privacy.accounting import (
    compare,
    epsilon_with_fallback,
    gdp_epsilon,
    gdp_mu,
    pld_epsilon,
    rdp_epsilon,
)
from privacy.budget import overview_of, read_budgets
from privacy.csv_safe import safe_row
from privacy.ledger import (
    LedgerError,
    LedgerRecord,
    RunSummary,
    append_with,
    read_verified,
    summarize,
)

AUDIT_KIND = "audit"
AGREEMENT_TOLERANCE = 0.05

RUN_COLUMNS = (
    "run_id", "dataset", "dataset_fingerprint", "artefact_kind", "status", "privacy_unit",
    "contribution_cap", "guarantee", "noise_multiplier", "sample_rate", "steps",
    "max_grad_norm", "delta", "epsilon_claimed", "epsilon_final", "accountant",
    "accountant_version", "epsilon_recomputed", "recomputed_by", "pld_epsilon", "rdp_epsilon",
    "gdp_mu", "gdp_epsilon_approx", "agrees", "agreement", "empirical_epsilon_lower_bound",
    "audit_confidence", "audit_method", "flagged", "releasable", "reasons", "secure_mode",
    "who", "started_at", "updated_at", "code_version", "note", "ledger_head_hash",
)


def record_membership_audit(*, ledger_path: Path, run_id: str, epsilon_lower_bound: float,
                            confidence: float, method: str) -> LedgerRecord:
    """Append the result of an empirical privacy audit (e.g. membership
    inference) of a run: a lower bound on its epsilon at `confidence`."""
    if math.isnan(epsilon_lower_bound) or epsilon_lower_bound < 0:
        raise ValueError(f"epsilon_lower_bound must be >= 0, got {epsilon_lower_bound}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if not method:
        raise ValueError("method must name the audit (e.g. 'membership inference, LiRA')")

    def build(records: list[LedgerRecord]) -> dict[str, Any]:
        mine = [r for r in records if r.run_id == run_id and r.is_spend]
        if not mine:
            raise LedgerError(f"no run {run_id} in the ledger to attach an audit to")
        run = mine[0]
        return dict(
            run_id=run_id, dataset=run.dataset, dataset_fingerprint=run.dataset_fingerprint,
            artefact_kind=AUDIT_KIND, privacy_unit=run.privacy_unit,
            contribution_cap=run.contribution_cap, mechanism=None, noise_multiplier=None,
            sample_rate=None, steps=None, max_grad_norm=None, delta=None, epsilon=None,
            accountant=None, accountant_version=None, sampler=None, secure_mode=None,
            code_version=run.code_version, status="completed",
            note=f"empirical epsilon >= {epsilon_lower_bound:.4g} at confidence "
                 f"{confidence:g} ({method})",
            details={"epsilon_lower_bound": float(epsilon_lower_bound),
                     "confidence": float(confidence), "method": method})

    return append_with(ledger_path=ledger_path, build=build)


def _guarantee(s: RunSummary) -> str:
    if not s.private:
        return "none: not differentially private"
    if s.privacy_unit == "customer":
        return (f"customer-level: each customer contributes at most {s.contribution_cap} "
                "example(s), as recorded by the trainer")
    return ("example-level only: a customer with k examples is protected at roughly k times "
            "epsilon (group privacy), not epsilon")


def _second_opinions(s: RunSummary) -> dict[str, Any]:
    if not s.private:
        return dict(epsilon_recomputed=math.inf, recomputed_by="none", pld_epsilon=math.inf,
                    rdp_epsilon=math.inf, gdp_mu=math.inf, gdp_epsilon_approx=math.inf,
                    agrees=True, agreement="not private: nothing to recompute")
    params = dict(noise_multiplier=s.noise_multiplier, sample_rate=s.sample_rate,
                  steps=s.steps, delta=s.delta)
    pld = pld_epsilon(**params)
    if s.accountant == "pld":
        recomputed, by = pld, "pld"
    else:
        recomputed, by = epsilon_with_fallback(**params, accountant=s.accountant)
    mu = gdp_mu(noise_multiplier=s.noise_multiplier, sample_rate=s.sample_rate, steps=s.steps)
    agrees, reason = compare(claimed_epsilon=s.charged_epsilon, recomputed_epsilon=pld,
                             tolerance=AGREEMENT_TOLERANCE)
    return dict(epsilon_recomputed=recomputed, recomputed_by=by, pld_epsilon=pld,
                rdp_epsilon=rdp_epsilon(**params), gdp_mu=mu,
                gdp_epsilon_approx=gdp_epsilon(mu=mu, delta=s.delta),
                agrees=agrees, agreement=f"vs PLD: {reason}")


def _run_row(s: RunSummary, audit: LedgerRecord | None, ledger_ok: bool) -> dict[str, Any]:
    row: dict[str, Any] = dict(
        run_id=s.run_id, dataset=s.dataset, dataset_fingerprint=s.dataset_fingerprint,
        artefact_kind=s.artefact_kind, status=s.status, privacy_unit=s.privacy_unit,
        contribution_cap=s.contribution_cap, guarantee=_guarantee(s),
        noise_multiplier=s.noise_multiplier, sample_rate=s.sample_rate, steps=s.steps,
        max_grad_norm=s.max_grad_norm, delta=s.delta, epsilon_claimed=s.charged_epsilon,
        epsilon_final=s.epsilon, accountant=s.accountant,
        accountant_version=s.accountant_version)
    row.update(_second_opinions(s))
    lower = audit.details.get("epsilon_lower_bound") if audit else None
    row.update(empirical_epsilon_lower_bound=lower,
               audit_confidence=audit.details.get("confidence") if audit else None,
               audit_method=audit.details.get("method") if audit else None)

    flags, blockers = [], []
    if row["agreement"].startswith("vs PLD: UNSAFE"):
        flags.append("claimed epsilon is below the independent recomputation")
    if s.epsilon > s.charged_epsilon * (1 + 1e-3):
        flags.append(f"final epsilon {s.epsilon:.4g} exceeds the {s.charged_epsilon:.4g} "
                     "charged to the budget")
    if lower is not None and lower > s.epsilon:
        flags.append(f"empirical lower bound {lower:.4g} exceeds the claimed epsilon "
                     f"{s.epsilon:.4g}: the guarantee does not hold")
    if not s.private:
        blockers.append("not differentially private")
    if s.status != "completed":
        blockers.append(f"run {s.status}")
    if not ledger_ok:
        blockers.append("ledger failed verification")
    row.update(flagged=bool(flags), releasable=not flags and not blockers,
               reasons="; ".join(flags + blockers), secure_mode=s.secure_mode, who=s.who,
               started_at=s.started_at, updated_at=s.updated_at, code_version=s.code_version,
               note=s.note)
    return row


def _budget_file_problems(records: list[LedgerRecord], budgets_path: Path) -> list[str]:
    """The file must say what the last budget record in the ledger says, per dataset."""
    try:
        in_file = read_budgets(budgets_path)
    except LedgerError as exc:
        return [str(exc)]
    in_ledger: dict[str, LedgerRecord] = {}
    for r in sorted(records, key=lambda r: r.seq):
        if r.artefact_kind == "budget":
            in_ledger[r.dataset] = r
    problems = []
    for name in sorted(set(in_file) | set(in_ledger)):
        f, r = in_file.get(name), in_ledger.get(name)
        if r is None:
            problems.append(f"budget for {name!r} in {budgets_path} was never recorded in the "
                            "ledger: the file was edited by hand")
        elif f is None:
            problems.append(f"the ledger sets a budget for {name!r} (seq {r.seq}) but "
                            f"{budgets_path} has none: the file was edited or replaced")
        elif (f.epsilon, f.delta, f.ledger_seq) != (r.details.get("budget_epsilon"),
                                                    r.details.get("budget_delta"), r.seq):
            problems.append(f"budget for {name!r}: the file says epsilon {f.epsilon:g}, delta "
                            f"{f.delta:g} (seq {f.ledger_seq}) but the ledger's last setting "
                            f"(seq {r.seq}) says epsilon {r.details.get('budget_epsilon'):g}, "
                            f"delta {r.details.get('budget_delta'):g}")
    return problems


def audit_report(*, ledger_path: Path, budgets_path: Path,
                 expected_head: str | None = None) -> dict[str, Any]:
    """Everything the steward needs to sign off, as plain data (see module doc)."""
    ledger_path, budgets_path = Path(ledger_path), Path(budgets_path)
    check, records = read_verified(ledger_path, expected_head=expected_head)
    try:
        budgets = read_budgets(budgets_path)
    except LedgerError:
        budgets = {}  # reported under budget_file.problems

    audits: dict[str, LedgerRecord] = {}
    for r in sorted(records, key=lambda r: r.seq):
        if r.artefact_kind == AUDIT_KIND:
            audits[r.run_id] = r
    run_rows = [_run_row(s, audits.get(s.run_id), check.ok) for s in summarize(records)]
    for row in run_rows:
        row["ledger_head_hash"] = check.head_hash

    datasets = []
    for d in overview_of(records, budgets=budgets):
        b = d.budget
        datasets.append(dict(
            dataset=d.dataset,
            budget_epsilon=b.epsilon if b else None, budget_delta=b.delta if b else None,
            budget_set_by=b.set_by if b else None, budget_set_at=b.set_at if b else None,
            spent_composed_epsilon=d.spend.composed_epsilon,
            spent_summed_epsilon=d.spend.summed_epsilon, composed_by=d.spend.accountant,
            composed_at_delta=d.spend.delta, runs=len(d.spend.runs),
            privacy_units=list(d.spend.privacy_units),
            remaining_epsilon=d.remaining,
            over_budget=d.remaining is not None and d.remaining < 0))

    return {
        "report": "clearmark privacy budget audit",
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "ledger": {"path": str(ledger_path), "ok": check.ok, "records": check.records,
                   "head_hash": check.head_hash, "problems": check.problems},
        "budget_file": {"path": str(budgets_path),
                        "problems": _budget_file_problems(records, budgets_path)},
        "datasets": datasets,
        "runs": run_rows,
        "notes": [
            "spent_composed_epsilon: every run charged on the dataset (started, completed and "
            "failed) composed by the accountant at the budget's delta; this is the spend.",
            "spent_summed_epsilon: basic composition (sum of the claims), a loose upper bound.",
            "pld_epsilon / rdp_epsilon: recomputed with Google's dp_accounting, independent of "
            "opacus; agrees compares the claim with PLD (5% tolerance, and never lower by more "
            "than 0.1%).",
            "gdp_mu: Gaussian-DP central-limit approximation (Bu et al. 2020), not a bound.",
            "example-level runs protect a customer with k examples at roughly k times epsilon.",
            "keep ledger.head_hash outside this machine; `verify(expected_head=...)` then "
            "also detects removal of the last records.",
        ],
    }


def _finite(value: Any) -> Any:
    """Infinite floats as the string "inf" (JSON has no infinity)."""
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def to_json(report: dict[str, Any]) -> str:
    """The whole report, indented; carries ledger.head_hash."""
    return json.dumps(_finite(report), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def to_csv(report: dict[str, Any]) -> str:
    """The runs table, one row per run, columns RUN_COLUMNS; every cell through
    `privacy.csv_safe.safe_cell` (run ids, datasets and notes are free text)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(RUN_COLUMNS)
    for row in report["runs"]:
        writer.writerow(safe_row(row.get(c) for c in RUN_COLUMNS))
    return out.getvalue()
