import argparse
import json
import math
from pathlib import Path

import pytest

from privacy.accounting import compose_epsilon, epsilon_for
from privacy.budget import (
    BudgetExceeded,
    BudgetFileError,
    charge,
    get_budget,
    overview,
    read_budgets,
    remaining,
    set_budget,
    spent,
)
from privacy.ledger import fail, read_records, runs, verify

DELTA = 1e-5
SPEND = dict(dataset_fingerprint="sha256:abc", artefact_kind="recommender",
             privacy_unit="customer", contribution_cap=5, noise_multiplier=1.0,
             sample_rate=0.01, steps=1000, max_grad_norm=1.0, delta=DELTA, epsilon=1.8384,
             accountant="prv", secure_mode=False)
ONE_RUN = 1.838  # PRV epsilon of SPEND alone (see test_accounting)
TWO_RUNS = 2.594  # PRV epsilon of SPEND twice, composed


def _charge(tmp: Path, run_id: str, dataset: str = "shop", **overrides):
    return charge(ledger_path=tmp / "ledger.jsonl", budgets_path=tmp / "budgets.json",
                  run_id=run_id, dataset=dataset, **{**SPEND, **overrides})


def _set(tmp: Path, epsilon: float, dataset: str = "shop", delta: float = DELTA):
    return set_budget(budgets_path=tmp / "budgets.json", ledger_path=tmp / "ledger.jsonl",
                      dataset=dataset, epsilon=epsilon, delta=delta)


def test_set_budget_writes_the_file_and_audits_the_change(tmp_path):
    b = _set(tmp_path, 3.0)
    assert (b.dataset, b.epsilon, b.delta, b.ledger_seq) == ("shop", 3.0, DELTA, 1)
    assert get_budget(budgets_path=tmp_path / "budgets.json", dataset="shop") == b
    assert get_budget(budgets_path=tmp_path / "budgets.json", dataset="other") is None
    _set(tmp_path, 5.0)
    records = read_records(tmp_path / "ledger.jsonl")
    assert [r.artefact_kind for r in records] == ["budget", "budget"]
    assert records[1].details == {"budget_epsilon": 5.0, "budget_delta": DELTA,
                                  "previous": {"epsilon": 3.0, "delta": DELTA}}
    assert records[1].epsilon is None  # a budget record spends nothing
    assert read_budgets(tmp_path / "budgets.json")["shop"].epsilon == 5.0
    assert verify(tmp_path / "ledger.jsonl").ok


def test_budget_records_are_not_spends(tmp_path):
    _set(tmp_path, 3.0)
    assert runs(tmp_path / "ledger.jsonl") == []
    used = spent(ledger_path=tmp_path / "ledger.jsonl", dataset="shop", delta=DELTA)
    assert used.composed_epsilon == 0.0 and used.runs == ()


def test_refused_at_the_cap_before_anything_is_appended(tmp_path):
    _set(tmp_path, 2.0)
    _charge(tmp_path, "r1")  # 1.838 of 2.0
    before = (tmp_path / "ledger.jsonl").read_bytes()
    with pytest.raises(BudgetExceeded) as info:
        _charge(tmp_path, "r2")  # composed 2.594 > 2.0
    assert (tmp_path / "ledger.jsonl").read_bytes() == before
    message = str(info.value)
    assert "Spent: epsilon 1.838" in message
    assert "Requested: epsilon 1.838" in message and "2.5940 composed" in message
    assert "Remaining: epsilon 0.16" in message
    assert "clearmark budget set" in message
    exc = info.value
    assert exc.spent_epsilon == pytest.approx(ONE_RUN, abs=5e-4)
    assert exc.requested_epsilon == pytest.approx(ONE_RUN, abs=5e-4)
    assert exc.composed_epsilon == pytest.approx(TWO_RUNS, abs=5e-4)
    assert exc.remaining_epsilon == pytest.approx(2.0 - ONE_RUN, abs=5e-4)
    # a smaller run that fits is still accepted
    _charge(tmp_path, "r3", noise_multiplier=4.0, steps=100)
    assert [r.run_id for r in runs(tmp_path / "ledger.jsonl")] == ["r1", "r3"]


def test_budget_is_per_dataset(tmp_path):
    _set(tmp_path, 2.0, dataset="shop")
    _charge(tmp_path, "r1", dataset="shop")
    _charge(tmp_path, "r2", dataset="reviews")  # no budget there
    assert spent(ledger_path=tmp_path / "ledger.jsonl", dataset="shop", delta=DELTA).runs == \
        ("r1",)


def test_composed_spend_between_largest_run_and_sum(tmp_path):
    _charge(tmp_path, "a")
    _charge(tmp_path, "b", noise_multiplier=2.0, steps=500, epsilon=0.443)
    _charge(tmp_path, "c", noise_multiplier=0.9, sample_rate=0.005, steps=2000, epsilon=1.535)
    used = spent(ledger_path=tmp_path / "ledger.jsonl", dataset="shop", delta=DELTA)
    singles = [epsilon_for(noise_multiplier=s, sample_rate=q, steps=t, delta=DELTA)
               for s, q, t in [(1.0, 0.01, 1000), (2.0, 0.01, 500), (0.9, 0.005, 2000)]]
    assert used.runs == ("a", "b", "c") and used.accountant == "prv"
    assert max(singles) <= used.composed_epsilon <= used.summed_epsilon
    assert used.summed_epsilon == pytest.approx(1.8384 + 0.443 + 1.535)
    assert used.composed_epsilon == pytest.approx(
        compose_epsilon([(1.0, 0.01, 1000), (2.0, 0.01, 500), (0.9, 0.005, 2000)],
                        delta=DELTA))


def test_failed_runs_stay_charged(tmp_path):
    _set(tmp_path, 2.0)
    _charge(tmp_path, "r1")
    fail(ledger_path=tmp_path / "ledger.jsonl", run_id="r1", note="crashed at step 10")
    used = spent(ledger_path=tmp_path / "ledger.jsonl", dataset="shop",
                 budgets_path=tmp_path / "budgets.json")
    assert used.runs == ("r1",) and used.delta == DELTA
    assert used.composed_epsilon == pytest.approx(ONE_RUN, abs=5e-4)
    left = remaining(ledger_path=tmp_path / "ledger.jsonl",
                     budgets_path=tmp_path / "budgets.json", dataset="shop")
    assert left == pytest.approx(2.0 - ONE_RUN, abs=5e-4)
    with pytest.raises(BudgetExceeded):
        _charge(tmp_path, "r2")  # the failed run still counts


def test_non_private_run_refused_under_a_budget(tmp_path):
    _set(tmp_path, 100.0)
    before = (tmp_path / "ledger.jsonl").read_bytes()
    with pytest.raises(BudgetExceeded, match="not private") as info:
        _charge(tmp_path, "plain", epsilon=math.inf, noise_multiplier=0.0)
    assert math.isinf(info.value.requested_epsilon)
    assert (tmp_path / "ledger.jsonl").read_bytes() == before
    # without a budget it is recorded, and the dataset's spend is infinite
    _charge(tmp_path, "plain", dataset="scratch", epsilon=math.inf, noise_multiplier=0.0)
    assert math.isinf(spent(ledger_path=tmp_path / "ledger.jsonl",
                            dataset="scratch").composed_epsilon)


def test_lowered_budget_goes_negative_and_refuses_everything(tmp_path):
    _charge(tmp_path, "r1")
    _set(tmp_path, 1.0)  # below what is already spent: allowed, it is the steward's call
    left = remaining(ledger_path=tmp_path / "ledger.jsonl",
                     budgets_path=tmp_path / "budgets.json", dataset="shop")
    assert left == pytest.approx(1.0 - ONE_RUN, abs=5e-4)
    with pytest.raises(BudgetExceeded):
        _charge(tmp_path, "r2", noise_multiplier=50.0, steps=1)
    (row,) = overview(ledger_path=tmp_path / "ledger.jsonl",
                      budgets_path=tmp_path / "budgets.json")
    assert row.remaining < 0 and row.spend.runs == ("r1",)


def test_bad_budgets_are_refused(tmp_path):
    for eps, delta in [(0.0, DELTA), (-1.0, DELTA), (math.inf, DELTA), (1.0, 0.0), (1.0, 1.0)]:
        with pytest.raises(ValueError):
            _set(tmp_path, eps, delta=delta)
    assert not (tmp_path / "ledger.jsonl").exists()


def test_garbled_budgets_file_fails_closed(tmp_path):
    _set(tmp_path, 5.0)
    (tmp_path / "budgets.json").write_text("{not json")
    with pytest.raises(BudgetFileError, match="cannot be read"):
        _charge(tmp_path, "r1")
    assert runs(tmp_path / "ledger.jsonl") == []


# --- the CLI --------------------------------------------------------------------


def _cli(argv: list[str]) -> None:
    from core.cli.privacy import register

    parser = argparse.ArgumentParser(prog="clearmark")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.func(args)


def test_cli_budget_set_and_show(warehouse_paths, capsys):
    from core.cli.main import UsageError

    _cli(["budget", "set", "--dataset", "shop", "--epsilon", "3", "--delta", "1e-5"])
    out = capsys.readouterr().out
    assert "Budget for 'shop': epsilon 3 at delta 1e-05" in out
    budgets = warehouse_paths.data_dir / "privacy_budgets.json"
    assert json.loads(budgets.read_text())["budgets"]["shop"]["epsilon"] == 3.0
    assert read_records(warehouse_paths.ledger)[0].artefact_kind == "budget"

    charge(ledger_path=warehouse_paths.ledger, budgets_path=budgets, run_id="r1",
           dataset="shop", **SPEND)
    _cli(["budget", "show"])
    out = capsys.readouterr().out
    assert "shop" in out and "1.8384" in out and "1.1616" in out  # spent and remaining

    with pytest.raises(UsageError, match="delta"):
        _cli(["budget", "set", "--dataset", "shop", "--epsilon", "3", "--delta", "2"])
