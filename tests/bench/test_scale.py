"""The scale and app-page benchmarks' helpers: a child's own peak memory, what the CLI
printed, the projection, percentiles and the tables. No long runs here."""

from __future__ import annotations

import json
import math
import sys

from bench.app_pages import PAGES, TARGET_P95_S, percentile, summarize
from bench.app_pages import format_table as pages_table
from bench.scale import (
    Step,
    first_pseudonyms,
    format_table,
    last_json,
    parse_campaign_id,
    parse_campaign_score,
    parse_rows_written,
    run_step,
    score_projection,
    targets,
    training_accounting,
)

ALLOCATE = "import sys; block = b'x' * (int(sys.argv[1]) * 2 ** 20); print(len(block))"


def test_peak_memory_is_the_childs_own(tmp_path):
    big = run_step("big", [sys.executable, "-c", ALLOCATE, "300"], log_dir=tmp_path)
    small = run_step("small", [sys.executable, "-c", ALLOCATE, "1"], log_dir=tmp_path)
    assert big.ok and small.ok
    assert big.stdout_tail == [str(300 * 2 ** 20)]
    # the small child ran after the big one: a max over all children would report 300+
    assert small.peak_rss_mib < 100
    assert 300 <= big.peak_rss_mib < small.peak_rss_mib + 300 + 50
    assert big.seconds > 0 and big.cpu_seconds >= 0


def test_a_module_step_keeps_its_exit_code_and_reports_its_peak(tmp_path):
    step = run_step("module", [sys.executable, "-m", "json.tool", str(tmp_path / "missing")],
                    log_dir=tmp_path)
    assert step.exit_code == 2 and step.peak_source == "VmHWM"
    assert 0 < step.peak_rss_mib < 100 and step.stderr_tail
    assert step.command[:3] == [sys.executable, "-m", "json.tool"]  # as asked, unwrapped


def test_a_failing_step_keeps_its_exit_code_and_stderr_tail(tmp_path):
    code = "import sys; [print(f'line {i}', file=sys.stderr) for i in range(40)]; sys.exit(3)"
    step = run_step("fail", [sys.executable, "-c", code], log_dir=tmp_path)
    assert step.exit_code == 3 and not step.ok
    assert step.stderr_tail[-1] == "line 39" and len(step.stderr_tail) == 15


def test_what_the_cli_printed():
    assert parse_campaign_id("Created campaign cmp_20260101_ab12 ('x'): category Outdoor, "
                             "season winter") == "cmp_20260101_ab12"
    assert parse_campaign_id("nothing") is None
    out = ("Scored 100,000 customers for Outdoor (category) with model ce_1 in 95.3 s "
           "(scoring 88.1 s).\n    tiers: ...\n"
           "    reasons for the first 50 audience members (210.4 s)\n")
    assert parse_campaign_score(out) == {"customers": 100_000, "cli_seconds": 95.3,
                                         "scoring_seconds": 88.1, "reasons_customers": 50,
                                         "reasons_seconds": 210.4}
    assert parse_rows_written("Wrote 11,000 rows (run ce_1) to x.csv") == 11_000
    assert last_json('progress\n{"customers": 5, "seconds": 2.5}\nbye\n') == {
        "customers": 5, "seconds": 2.5}


def test_score_projection_adds_the_fixed_cost():
    p = score_projection(customers=2000, loop_seconds=400.0, step_seconds=430.0,
                         all_customers=100_000)
    assert p["customers_per_second"] == 5.0 and p["fixed_seconds"] == 30.0
    assert p["PROJECTED_seconds_all_customers (projection, not measured)"] == 30.0 + 20_000


def test_training_accounting_sums_the_sampled_batches(tmp_path):
    run = tmp_path / "models" / "ce_20260101T000000_x"
    run.mkdir(parents=True)
    (run / "privacy.json").write_text(json.dumps({"customers": 1000, "epsilon": 1.2,
                                                  "sample_rate": 0.128}))
    (run / "curve.json").write_text(json.dumps([{"batch_size": 120, "seconds": 3.0},
                                                {"batch_size": 130, "seconds": 5.0}]))
    out = training_accounting(tmp_path / "models")
    assert out["steps"] == 2 and out["customers_sampled_total"] == 250
    assert out["epoch_fraction (sampled / training customers)"] == 0.25
    assert out["step_seconds_median"] == 4.0 and out["epsilon_spent"] == 1.2


def test_first_pseudonyms_of_an_export(tmp_path):
    path = tmp_path / "audience.csv"
    path.write_text("pseudonym,score\r\nu_a,0.9\r\nu_b,0.8\r\nu_c,0.7\r\n")
    assert first_pseudonyms(path, 2) == ["u_a", "u_b"]


def _step(name, peak, code=0):
    return Step(name=name, command=["x"], exit_code=code, seconds=12.345, peak_rss_mib=peak,
                cpu_seconds=20.0)


def test_table_and_targets():
    steps = [_step("ingest", 1234.4), _step("train", 5000.0, code=2)]
    table = format_table(steps).splitlines()
    assert table[0].split() == ["step", "exit", "seconds", "cpu", "s", "peak", "RSS", "MiB"]
    assert table[2].split() == ["ingest", "0", "12.3", "20.0", "1,234"]
    assert table[3].split()[:2] == ["train", "2"]
    t = targets(steps, {"customers": 2000, "scoring_seconds": 30.0}, completed=False)
    assert t["whole run completes"]["hit"] is False
    assert t["peak RSS MiB, largest step (<= 8 GB)"]["measured"] == 5000
    campaign = next(v for k, v in t.items() if k.startswith("campaign"))
    assert campaign["measured"] == 30.0 and campaign["hit"] is None  # not at 100k
    t = targets(steps[:1], {"customers": 100_000, "scoring_seconds": 130.0}, completed=True)
    assert t["peak RSS MiB, largest step (<= 8 GB)"]["hit"] is True
    assert next(v for k, v in t.items() if k.startswith("campaign"))["hit"] is False


def test_percentile_interpolates_like_numpy():
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert math.isclose(percentile([1.0, 2.0, 3.0, 4.0, 5.0], 95), 4.8)
    assert percentile([2.0], 95) == 2.0
    assert math.isnan(percentile([], 50))


def test_page_summary_and_table():
    cold = {name: 3.0 for name, _, _ in PAGES}
    warm = {name: [0.5, 0.7, 0.6] for name, _, _ in PAGES}
    warm["campaigns"] = [1.0, 1.5, 2.6]
    summary = summarize(cold, warm)
    assert list(summary) == [name for name, _, _ in PAGES]
    assert summary["overview"]["warm_p50_s"] == 0.6
    assert summary["overview"]["p95_within_target"] is True
    assert summary["campaigns"]["warm_p95_s"] > TARGET_P95_S
    assert summary["campaigns"]["p95_within_target"] is False
    rows = {line.split()[0]: line.split() for line in pages_table(summary).splitlines()[2:]}
    assert rows["overview"][1:] == ["3.00", "0.60", "0.69", "0.70", "3", "yes"]
    assert rows["campaigns"][-1] == "NO"
