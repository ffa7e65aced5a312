import argparse
import csv
import io
import json
import math
import multiprocessing
from pathlib import Path

import pytest

from privacy.audit import (
    RUN_COLUMNS,
    audit_report,
    record_membership_audit,
    to_csv,
    to_json,
)
from privacy.budget import charge, set_budget
from privacy.ledger import (
    GENESIS,
    LedgerError,
    canonical_json,
    complete,
    fail,
    read_records,
    record_hash,
    runs,
    verify,
)

SPEND = dict(dataset_fingerprint="sha256:abc", artefact_kind="recommender",
             privacy_unit="customer", contribution_cap=5, noise_multiplier=1.0,
             sample_rate=0.01, steps=1000, max_grad_norm=1.0, delta=1e-5, epsilon=1.8384,
             accountant="prv", secure_mode=False)


def _charge(tmp: Path, run_id: str, dataset: str = "shop", **overrides):
    return charge(ledger_path=tmp / "ledger.jsonl", budgets_path=tmp / "budgets.json",
                  run_id=run_id, dataset=dataset, **{**SPEND, **overrides})


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    """Five records: r1 started/completed, r2 started/failed, r3 started."""
    _charge(tmp_path, "r1")
    complete(ledger_path=tmp_path / "ledger.jsonl", run_id="r1")
    _charge(tmp_path, "r2", artefact_kind="sentiment")
    fail(ledger_path=tmp_path / "ledger.jsonl", run_id="r2", note="out of memory")
    _charge(tmp_path, "r3")
    return tmp_path / "ledger.jsonl"


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(lines))


# --- the chain -------------------------------------------------------------------


def test_untouched_ledger_verifies(ledger):
    result = verify(ledger)
    assert result.ok and result.problems == []
    assert result.records == 5
    last = json.loads(_lines(ledger)[-1])
    assert result.head_hash == last["hash"]
    assert verify(ledger, expected_head=result.head_hash).ok


def test_missing_ledger_is_empty_and_fine(tmp_path):
    result = verify(tmp_path / "nothing.jsonl")
    assert result.ok and result.records == 0 and result.head_hash == GENESIS


def test_records_are_chained_and_hashed_over_canonical_json(ledger):
    records = [json.loads(line) for line in _lines(ledger)]
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert records[0]["prev_hash"] == GENESIS
    for before, after in zip(records, records[1:], strict=False):
        assert after["prev_hash"] == before["hash"]
    body = {k: v for k, v in records[0].items() if k != "hash"}
    import hashlib

    assert records[0]["hash"] == hashlib.sha256(canonical_json(body).encode()).hexdigest()
    assert record_hash(records[0]) == records[0]["hash"]


def test_record_carries_what_an_auditor_needs(ledger):
    first = read_records(ledger)[0]
    assert first.mechanism == "DP-SGD (Gaussian, Poisson sampling)"
    assert first.sampler == "poisson"
    assert first.accountant_version == "1.6.0"
    assert first.privacy_unit == "customer" and first.contribution_cap == 5
    assert first.who and first.when.endswith("+00:00")
    assert first.code_version == "unknown"  # no repo_dir given
    assert first.status == "started" and first.epsilon == pytest.approx(1.8384)


def test_edited_field_names_the_record(ledger):
    lines = _lines(ledger)
    record = json.loads(lines[2])
    record["epsilon"] = 0.5  # someone makes run r2 look cheaper
    lines[2] = json.dumps(record) + "\n"
    _write(ledger, lines)
    result = verify(ledger)
    assert not result.ok
    assert result.problems == ["record seq 3 (run r2) at line 3 was edited: its hash does not "
                               "match its content"]


def test_edit_with_a_recomputed_hash_breaks_the_next_link(ledger):
    lines = _lines(ledger)
    record = json.loads(lines[1])
    record["note"] = "nothing to see"
    record["hash"] = record_hash(record)
    lines[1] = json.dumps(record) + "\n"
    _write(ledger, lines)
    problems = verify(ledger).problems
    assert problems == ["record seq 2 (run r1) was replaced or rewritten: seq 3 no longer "
                        "links to it (prev_hash mismatch)"]


def test_deleted_line_is_named(ledger):
    lines = _lines(ledger)
    del lines[2]  # seq 3
    _write(ledger, lines)
    result = verify(ledger)
    assert not result.ok
    assert result.problems == ["record after seq 2 is missing (seq 3)"]


def test_deleted_first_line_is_named(ledger):
    _write(ledger, _lines(ledger)[1:])
    assert verify(ledger).problems == ["the first record (seq 1) is missing"]


def test_swapped_lines_are_named(ledger):
    lines = _lines(ledger)
    lines[1], lines[2] = lines[2], lines[1]
    _write(ledger, lines)
    result = verify(ledger)
    assert not result.ok
    assert result.problems == ["records are out of order: seq 3 (line 2) comes before seq 2 "
                               "(line 3)"]


def test_truncated_line_is_named(ledger):
    lines = _lines(ledger)
    lines[2] = lines[2][:40] + "\n"
    _write(ledger, lines)
    result = verify(ledger)
    assert not result.ok
    assert result.problems == ["line 3 (after seq 2) is truncated or garbled: not a ledger "
                               "record"]


def test_forged_partial_record_is_garbled_not_trusted(ledger):
    lines = _lines(ledger)
    lines[2] = '{"seq": 3, "run_id": "r2"}\n'
    _write(ledger, lines)
    assert verify(ledger).problems == ["line 3 (after seq 2) is truncated or garbled: not a "
                                       "ledger record"]
    assert [r.seq for r in read_records(ledger)] == [1, 2, 4, 5]


def test_truncated_file_is_named(ledger):
    text = ledger.read_text()
    ledger.write_text(text[:-30])  # the last append was cut short
    assert verify(ledger).problems == ["line 5 (after seq 4) is truncated or garbled: not a "
                                       "ledger record"]


def test_removed_last_record_needs_the_anchor(ledger):
    head = verify(ledger).head_hash
    _write(ledger, _lines(ledger)[:-1])
    assert verify(ledger).ok  # the chain alone cannot see a clean cut at the end
    result = verify(ledger, expected_head=head)
    assert not result.ok and "not in the ledger" in result.problems[0]


def test_damaged_ledger_refuses_every_append(ledger):
    lines = _lines(ledger)
    del lines[1]
    _write(ledger, lines)
    before = ledger.read_bytes()
    with pytest.raises(LedgerError, match="record after seq 1 is missing"):
        _charge(ledger.parent, "r4")
    with pytest.raises(LedgerError, match="failed verification"):
        complete(ledger_path=ledger, run_id="r3")
    assert ledger.read_bytes() == before


# --- runs and status changes ----------------------------------------------------


def test_status_change_is_a_new_record_never_an_edit(ledger):
    first_lines = _lines(ledger)
    complete(ledger_path=ledger, run_id="r3", epsilon=1.80, note="early stop")
    lines = _lines(ledger)
    assert lines[:5] == first_lines  # nothing rewritten
    assert len(lines) == 6
    by_run = {r.run_id: r for r in runs(ledger)}
    assert [r.run_id for r in runs(ledger)] == ["r1", "r2", "r3"]
    assert by_run["r1"].status == "completed"
    assert by_run["r2"].status == "failed" and by_run["r2"].note == "out of memory"
    assert by_run["r3"].status == "completed"
    assert by_run["r3"].epsilon == pytest.approx(1.80)
    assert by_run["r3"].charged_epsilon == pytest.approx(1.8384)
    assert by_run["r3"].mechanism == (1.0, 0.01, 1000)


def test_status_changes_that_make_no_sense_are_refused(ledger):
    with pytest.raises(LedgerError, match="already completed"):
        complete(ledger_path=ledger, run_id="r1")
    with pytest.raises(LedgerError, match="already failed"):
        fail(ledger_path=ledger, run_id="r2")
    with pytest.raises(LedgerError, match="no run nope"):
        fail(ledger_path=ledger, run_id="nope")
    with pytest.raises(LedgerError, match="already in the ledger"):
        _charge(ledger.parent, "r1")
    assert verify(ledger).records == 5


def test_non_private_run_is_recorded_with_infinite_epsilon(tmp_path):
    rec = _charge(tmp_path, "plain", privacy_unit="example", epsilon=math.inf,
                  noise_multiplier=0.0)
    assert math.isinf(rec.epsilon) and rec.privacy_unit == "none"
    raw = json.loads(_lines(tmp_path / "ledger.jsonl")[0])
    assert raw["epsilon"] == "inf" and raw["privacy_unit"] == "none"
    assert raw["mechanism"] == "none (not private)"
    assert math.isinf(runs(tmp_path / "ledger.jsonl")[0].epsilon)
    assert verify(tmp_path / "ledger.jsonl").ok


def test_bad_spend_parameters_are_refused_before_appending(tmp_path):
    with pytest.raises(ValueError, match="privacy_unit"):
        _charge(tmp_path, "x", privacy_unit="user")
    with pytest.raises(ValueError, match="privacy_unit 'none'"):
        _charge(tmp_path, "x", privacy_unit="none")
    with pytest.raises(ValueError, match="contribution_cap"):
        _charge(tmp_path, "x", contribution_cap=0)
    with pytest.raises(ValueError, match="reserved"):
        _charge(tmp_path, "x", artefact_kind="budget")
    assert not (tmp_path / "ledger.jsonl").exists()


def _append_many(args: tuple[str, int]) -> None:
    folder, worker = args
    for i in range(10):
        _charge(Path(folder), f"w{worker}-{i}")


def test_concurrent_appenders_keep_the_chain(tmp_path):
    with multiprocessing.get_context("fork").Pool(4) as pool:
        pool.map(_append_many, [(str(tmp_path), w) for w in range(4)])
    result = verify(tmp_path / "ledger.jsonl")
    assert result.ok, result.problems
    assert result.records == 40
    assert sorted(r.seq for r in read_records(tmp_path / "ledger.jsonl")) == list(range(1, 41))


# --- the audit report -----------------------------------------------------------


def test_audit_report_second_opinions_and_membership_audit(tmp_path):
    _charge(tmp_path, "r1")
    complete(ledger_path=tmp_path / "ledger.jsonl", run_id="r1")
    report = audit_report(ledger_path=tmp_path / "ledger.jsonl",
                          budgets_path=tmp_path / "budgets.json")
    assert report["ledger"]["ok"]
    (row,) = report["runs"]
    assert row["privacy_unit"] == "customer" and row["contribution_cap"] == 5
    assert row["pld_epsilon"] == pytest.approx(1.828, abs=5e-4)
    assert row["rdp_epsilon"] == pytest.approx(2.101, abs=5e-4)
    assert row["gdp_mu"] == pytest.approx(0.415, abs=5e-4)
    assert row["epsilon_recomputed"] == pytest.approx(1.838, abs=5e-4)
    assert row["agrees"] and not row["flagged"] and row["releasable"]
    assert row["empirical_epsilon_lower_bound"] is None
    (ds,) = report["datasets"]
    assert ds["dataset"] == "shop" and ds["budget_epsilon"] is None and ds["runs"] == 1

    record_membership_audit(ledger_path=tmp_path / "ledger.jsonl", run_id="r1",
                            epsilon_lower_bound=0.4, confidence=0.95, method="LiRA")
    row = audit_report(ledger_path=tmp_path / "ledger.jsonl",
                       budgets_path=tmp_path / "budgets.json")["runs"][0]
    assert row["empirical_epsilon_lower_bound"] == 0.4 and not row["flagged"]

    record_membership_audit(ledger_path=tmp_path / "ledger.jsonl", run_id="r1",
                            epsilon_lower_bound=2.5, confidence=0.95, method="LiRA")
    report = audit_report(ledger_path=tmp_path / "ledger.jsonl",
                          budgets_path=tmp_path / "budgets.json")
    (row,) = report["runs"]  # audit records are not runs
    assert row["empirical_epsilon_lower_bound"] == 2.5  # the latest audit
    assert row["flagged"] is True and row["releasable"] is False
    assert "lower bound" in row["reasons"]
    assert report["datasets"][0]["runs"] == 1  # audits spend nothing
    with pytest.raises(LedgerError, match="no run ghost"):
        record_membership_audit(ledger_path=tmp_path / "ledger.jsonl", run_id="ghost",
                                epsilon_lower_bound=1.0, confidence=0.95, method="LiRA")


def test_understated_claim_is_flagged(tmp_path):
    _charge(tmp_path, "liar", epsilon=1.0)  # the parameters give about 1.83
    complete(ledger_path=tmp_path / "ledger.jsonl", run_id="liar")
    (row,) = audit_report(ledger_path=tmp_path / "ledger.jsonl",
                          budgets_path=tmp_path / "budgets.json")["runs"]
    assert not row["agrees"] and row["flagged"] and not row["releasable"]
    assert "UNSAFE" in row["agreement"]


def test_report_marks_runs_unreleasable_when_the_ledger_is_damaged(ledger):
    lines = _lines(ledger)
    del lines[3]
    _write(ledger, lines)
    report = audit_report(ledger_path=ledger, budgets_path=ledger.parent / "budgets.json")
    assert not report["ledger"]["ok"]
    assert report["ledger"]["problems"] == ["record after seq 3 is missing (seq 4)"]
    assert not any(row["releasable"] for row in report["runs"])


def test_budget_file_edited_by_hand_is_reported(tmp_path):
    budgets = tmp_path / "budgets.json"
    set_budget(budgets_path=budgets, ledger_path=tmp_path / "ledger.jsonl", dataset="shop",
               epsilon=4.0, delta=1e-5)
    doc = json.loads(budgets.read_text())
    doc["budgets"]["shop"]["epsilon"] = 40.0
    budgets.write_text(json.dumps(doc))
    report = audit_report(ledger_path=tmp_path / "ledger.jsonl", budgets_path=budgets)
    assert report["ledger"]["ok"]
    assert len(report["budget_file"]["problems"]) == 1
    assert "file says epsilon 40" in report["budget_file"]["problems"][0]


def test_csv_export_neutralizes_attacker_controlled_cells(tmp_path):
    _charge(tmp_path, "=cmd|' /C calc'!A0", dataset="@shop", note="-0.5",
            dataset_fingerprint="+fp")
    complete(ledger_path=tmp_path / "ledger.jsonl", run_id="=cmd|' /C calc'!A0",
             note="=HYPERLINK(\"http://evil\")")
    report = audit_report(ledger_path=tmp_path / "ledger.jsonl",
                          budgets_path=tmp_path / "budgets.json")
    rows = list(csv.DictReader(io.StringIO(to_csv(report))))
    assert list(rows[0]) == list(RUN_COLUMNS)
    (row,) = rows
    assert row["run_id"] == "'=cmd|' /C calc'!A0"
    assert row["dataset"] == "'@shop"
    assert row["dataset_fingerprint"] == "'+fp"
    assert row["note"] == "'=HYPERLINK(\"http://evil\")"
    assert row["delta"] == "1e-05" and float(row["epsilon_claimed"]) == pytest.approx(1.8384)
    assert row["ledger_head_hash"] == report["ledger"]["head_hash"]
    for value in row.values():
        assert not value.startswith(("=", "@", "\t", "\r")), value
        if value.startswith(("-", "+")):
            float(value)  # only plain numbers may start with a sign


def test_json_export_carries_the_head_hash_and_infinity(tmp_path):
    _charge(tmp_path, "plain", epsilon=math.inf, noise_multiplier=0.0)
    report = audit_report(ledger_path=tmp_path / "ledger.jsonl",
                          budgets_path=tmp_path / "budgets.json")
    doc = json.loads(to_json(report))
    assert doc["ledger"]["head_hash"] == verify(tmp_path / "ledger.jsonl").head_hash
    (row,) = doc["runs"]
    assert row["epsilon_claimed"] == "inf" and row["pld_epsilon"] == "inf"
    assert row["releasable"] is False and "not differentially private" in row["reasons"]
    assert doc["datasets"][0]["spent_composed_epsilon"] == "inf"


# --- the CLI --------------------------------------------------------------------


def _cli(argv: list[str]) -> None:
    from core.cli.privacy import register

    parser = argparse.ArgumentParser(prog="clearmark")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.func(args)


def test_cli_audit_verify_and_report(warehouse_paths, capsys, tmp_path):
    from core.cli.main import UsageError

    charge(ledger_path=warehouse_paths.ledger,
           budgets_path=warehouse_paths.data_dir / "privacy_budgets.json", run_id="r1",
           dataset="shop", **SPEND)
    _cli(["audit", "verify"])
    out = capsys.readouterr().out
    assert "Ledger OK" in out and verify(warehouse_paths.ledger).head_hash in out

    _cli(["audit", "report", "--format", "json"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["runs"][0]["run_id"] == "r1" and doc["ledger"]["ok"]

    _cli(["audit", "report", "--format", "csv", "--out", str(tmp_path / "audit.csv")])
    assert "Wrote the privacy audit" in capsys.readouterr().out
    assert (tmp_path / "audit.csv").read_text().startswith("run_id,dataset,")

    lines = _lines(warehouse_paths.ledger)
    _write(warehouse_paths.ledger, [lines[0].replace('"shop"', '"other"')])
    with pytest.raises(UsageError, match="record seq 1 \\(run r1\\) at line 1 was edited"):
        _cli(["audit", "verify"])


def test_the_ledger_does_not_import_the_budget():
    import ast

    import privacy.ledger as module

    tree = ast.parse(Path(module.__file__).read_text())
    imported = {node.module for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
    assert {m for m in imported if m.split(".")[0] in ("privacy", "core", "explain",
                                                        "dashboard")} == {"privacy.guarantee"}
