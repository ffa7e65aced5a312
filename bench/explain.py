"""Explanations: latency per method, throughput, SHAP approximation, faithfulness.

Run from the repository root: ``.venv/bin/python -m bench.explain [--quick]``. Prints a
summary and writes ``bench/results/explain.json`` (``bench.machine.write_result``).

Model: the latest trained run under data/models (or `--data DIR`) when there is one,
with its warehouse, else the untrained bundled MiniLM cross-encoder (its head starts at zero, so
it scores with the zero-shot prior alone) on a generated demo warehouse in a temp dir;
the result says which. The machine's load average is recorded at the start and the end:
wall-clock latencies on a shared 2-core machine move with it, so process CPU seconds
are recorded too (`cpu_s`; `idle_estimate_s` = CPU seconds / 2 threads, what an idle
machine would take at best).

Measured:
- cold start: compiling shap's numba kernels (`explain.warmup`), once per process;
- latency p50/p95 per method over held-out recommendations (one per customer, nothing
  cached for that customer): field SHAP (default settings), leave-one-out, attention
  (rollout and [CLS] share one forward), token SHAP of the most important field;
- a customer's page: the top-10 recommendations of one customer explained one after the
  other (history and context are shared, and cached, across them), and the export
  throughput in explanations per second;
- field SHAP approximation: the default (8 antithetic permutations beyond 4
  fields) against exact Shapley values (all 2^n coalitions), and how far leave-one-out
  is from them, and the bf16 option against the float32 default;
- faithfulness (`explain.faithfulness`): comprehensiveness / sufficiency AOPC per method
  and random, the share of recommendations where field SHAP beats random, Kendall tau
  between field SHAP and leave-one-out. For a registered run the summary is also stored
  beside it (`data/models/<run_id>/faithfulness.json`).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.machine import write_result
from core.config import Paths

BENCH_KEY = bytes(range(32))  # a throwaway warehouse in a temp dir: not a steward's key
TARGETS = {"shap-field p95 s": 1.0, "attention p95 s": 0.1, "shap-token p95 s": 5.0,
           "shap above random share": 0.9, "kendall shap vs loo": 0.6}


def _percentiles(values: list[float]) -> dict[str, float]:
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return {"n": 0}
    return {"n": int(len(x)), "p50": float(np.percentile(x, 50)),
            "p95": float(np.percentile(x, 95)), "mean": float(x.mean()),
            "max": float(x.max())}


def _demo_paths(tmp: Path, customers: int) -> Paths:
    from core.ingest.pipeline import ingest
    from core.synthetic.generator import GeneratorConfig, generate

    paths = Paths(tmp / "data")
    raw = tmp / "raw"
    generate(GeneratorConfig(customers=customers, items=max(200, customers // 10), seed=0), raw,
             progress=False)
    ingest([raw], key=BENCH_KEY, paths=paths, progress=False)
    return paths


def _data(quick: bool, tmp: Path, data_dir: str | None, run: str | None = None
          ) -> tuple[Paths, str, str]:
    """(paths, run id, what was used)."""
    from core.recommender import registry
    from explain.service import UNTRAINED

    paths = Paths(Path(data_dir)) if data_dir else Paths()
    run = run or registry.latest_run(paths)
    if run is not None and paths.snapshot.exists():
        return paths, run, f"trained run {run} on {paths.warehouse}"
    if data_dir and paths.snapshot.exists():
        return paths, UNTRAINED, (f"no trained run in {paths.models_dir}: the untrained MiniLM "
                                  f"cross-encoder on {paths.warehouse}")
    demo = _demo_paths(tmp, 1500 if quick else 3000)
    return demo, UNTRAINED, ("no trained run under data/models: the untrained MiniLM "
                             "cross-encoder (zero head + zero-shot prior) on generated demo "
                             "data")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer recommendations")
    parser.add_argument("--data", help="data folder with a warehouse (and runs) to use "
                        "instead of data/ (CLEARMARK_DATA)")
    parser.add_argument("--run", help="run id under the data folder's models (default: the "
                        "latest)")
    parser.add_argument("--result-name", default="explain",
                        help="bench/results/<name>.json (default: explain)")
    parser.add_argument("--faithfulness", type=int, help="held-out recommendations for the "
                        "faithfulness table (default 200; 100 with --quick)")
    args = parser.parse_args(argv)
    quick = args.quick
    n_faith = args.faithfulness or (100 if quick else 200)
    n_latency = 30 if quick else 100
    load_start = os.getloadavg()
    started = time.perf_counter()

    from explain.attention import explain_attention
    from explain.faithfulness import describe, evaluate, held_out_for, write_summary
    from explain.field_shap import FieldShapConfig, explain_fields, leave_one_out
    from explain.service import UNTRAINED, ExplainService
    from explain.token_shap import explain_tokens
    from explain.warmup import warm_up

    result: dict[str, object] = {"quick": quick, "load_average_start": load_start}
    with tempfile.TemporaryDirectory() as tmp:
        paths, run_id, source = _data(quick, Path(tmp), args.data, args.run)
        result["model"] = source
        result["run_id"] = run_id
        print(f"model: {source}", flush=True)

        t = time.perf_counter()
        result["cold_start_s"] = {"shap_numba_warm_up": warm_up()}
        config = FieldShapConfig()
        service = ExplainService.open(run_id, paths, field_config=config)
        result["cold_start_s"]["model_load"] = time.perf_counter() - t
        from explain.scoring import resolve_precision

        result["precision"] = resolve_precision(config.precision)
        result["field_shap_config"] = {"exact_max_fields": config.exact_max_fields,
                                       "permutations": config.permutations}

        t = time.perf_counter()
        held, split_name = held_out_for(service, recommendations=max(n_faith, n_latency))
        result["held_out"] = {"recommendations": len(held), "split": split_name,
                              "ranking_seconds": time.perf_counter() - t,
                              "fields_per_input": _percentiles([len(h.fields) for h in held])}
        print(f"{len(held)} held-out recommendations ({time.perf_counter() - t:.0f} s to "
              "rank)", flush=True)

        # --- latency per method, one recommendation per customer ----------------------
        lat: dict[str, list[float]] = {m: [] for m in ("shap-field", "leave-one-out",
                                                        "attention", "shap-token")}
        cpu: dict[str, list[float]] = {m: [] for m in lat}  # process CPU seconds
        evals: dict[str, list[int]] = {m: [] for m in lat}
        additivity, token_additivity = [], []
        model = service.model

        def timed(method: str, run):
            wall, used = time.perf_counter(), time.process_time()
            out = run()
            lat[method].append(time.perf_counter() - wall)
            cpu[method].append(time.process_time() - used)
            return out

        for h in held[:n_latency]:
            e = timed("shap-field", lambda h=h: explain_fields(model, h.fields,
                                                               subject=h.subject, config=config))
            evals["shap-field"].append(e.evaluations)
            additivity.append(e.additivity_error)
            timed("attention", lambda h=h: (
                explain_attention(model, h.fields, method="attention-rollout"),
                explain_attention(model, h.fields, method="attention-cls")))
            loo = timed("leave-one-out", lambda h=h: leave_one_out(
                model, h.fields, subject=h.subject, precision=config.precision))
            evals["leave-one-out"].append(loo.evaluations)
        for h in held[:5 if quick else 20]:
            e = explain_fields(model, h.fields, subject=h.subject, config=config)
            field = e.features[int(np.argmax(np.abs(e.attributions)))]
            tok = timed("shap-token", lambda h=h, field=field: explain_tokens(
                model, h.fields, field, subject=h.subject))
            evals["shap-token"].append(tok.evaluations)
            token_additivity.append(tok.additivity_error)
        result["latency_s"] = {m: _percentiles(v) for m, v in lat.items()}
        # CPU seconds do not grow with other processes' load; on an idle machine the
        # wall time is about CPU seconds / TORCH_THREADS (2) at best.
        result["cpu_s"] = {m: _percentiles(v) for m, v in cpu.items()}
        result["idle_estimate_s"] = {m: {k: v / 2 for k, v in _percentiles(c).items()
                                         if k != "n"} for m, c in cpu.items()}
        result["evaluations"] = {m: _percentiles(v) for m, v in evals.items()}
        result["additivity_error_max"] = {"shap-field": float(np.max(additivity)),
                                          "shap-token": float(np.max(token_additivity))}
        print("latency:", {m: round(v.get("p95", float("nan")), 3)
                           for m, v in result["latency_s"].items()}, flush=True)

        # --- a customer's page and the export throughput --------------------------------
        customers = [h.subject.pseudonym for h in held[:2 if quick else 5]]
        page_seconds, per_rec = [], []
        n_explained = 0
        t_all = time.perf_counter()
        for pseudonym in customers:
            recs = service.recommendations_for([pseudonym], k=10)
            t = time.perf_counter()
            for e in service.explain_recommendations(recs, methods=("shap-field",
                                                                    "attention-rollout")):
                if e.method == "shap-field":
                    per_rec.append(e.latency_s)
                    n_explained += 1
            page_seconds.append(time.perf_counter() - t)
        result["page"] = {"customers": len(customers), "recommendations_per_customer": 10,
                          "seconds_per_page": _percentiles(page_seconds),
                          "shap_field_latency_s": _percentiles(per_rec)}
        result["throughput_explanations_per_s"] = n_explained / max(
            time.perf_counter() - t_all, 1e-9)

        # --- approximation of the default field SHAP ------------------------------------
        from explain.attention import rank_agreement
        from explain.field_shap import exact_shapley
        from explain.scoring import FieldGame, as_scorer

        bf16_config = FieldShapConfig(precision="bf16")
        errors, taus, loo_taus, bf16_lat, default_lat, precision_gap = [], [], [], [], [], []
        for h in held[:5 if quick else 20]:
            default = explain_fields(model, h.fields, config=config)
            # the reference: exact Shapley values over all 2^n coalitions of the fields
            exact, _, _ = exact_shapley(FieldGame(as_scorer(model), h.fields))
            reference = replace(default, attributions=exact)
            scale = float(np.abs(exact).sum()) or 1.0
            errors.append(float(np.abs(default.attributions - exact).sum()) / scale)
            taus.append(rank_agreement(default, reference)["kendall"])
            loo_taus.append(rank_agreement(leave_one_out(model, h.fields), reference)["kendall"])
            default_lat.append(default.latency_s)
            half = explain_fields(model, h.fields, config=bf16_config)
            bf16_lat.append(half.latency_s)
            precision_gap.append(float(np.abs(half.attributions - default.attributions).sum())
                                 / (float(np.abs(default.attributions).sum()) or 1.0))
        result["shap_approximation"] = {
            "reference": "exact Shapley values (all 2^n coalitions, same precision)",
            "relative_l1_error": _percentiles(errors),
            "kendall_default_vs_reference": _percentiles([t for t in taus if np.isfinite(t)]),
            "kendall_leave_one_out_vs_reference": _percentiles(
                [t for t in loo_taus if np.isfinite(t)]),
            "default_latency_s": _percentiles(default_lat),
            "bf16_latency_s": _percentiles(bf16_lat),
            "relative_l1_bf16_vs_default": _percentiles(precision_gap)}

        # --- faithfulness -----------------------------------------------------------------
        t = time.perf_counter()
        summary, rows = evaluate(model, held[:n_faith], config=config)
        summary.update(describe(run_id, split_name, 10, 5, config))
        result["faithfulness"] = summary
        result["faithfulness_seconds"] = time.perf_counter() - t
        if run_id != UNTRAINED:
            result["faithfulness_stored"] = str(write_summary(paths, run_id, summary))

    shap_p95 = result["latency_s"]["shap-field"].get("p95", float("nan"))
    measured = {
        "shap-field p95 s": shap_p95,
        "attention p95 s": result["latency_s"]["attention"].get("p95", float("nan")),
        "shap-token p95 s": result["latency_s"]["shap-token"].get("p95", float("nan")),
        "shap above random share": summary["shap_above_random_share"],
        "kendall shap vs loo": summary["kendall_shap_vs_leave_one_out"]["mean"],
    }
    result["targets"] = {
        name: {"target": target, "measured": measured[name],
               "hit": bool(measured[name] >= target if "share" in name or "kendall" in name
                           else measured[name] <= target)}
        for name, target in TARGETS.items()}
    result["load_average_end"] = os.getloadavg()
    result["seconds"] = time.perf_counter() - started
    path = write_result(args.result_name, result)

    print(f"\n{'method':20s} {'comprehensiveness':>18s} {'sufficiency':>12s}")
    for name, m in summary["methods"].items():
        print(f"{name:20s} {m['comprehensiveness_aopc']['mean']:>18.4f} "
              f"{m['sufficiency_aopc']['mean']:>12.4f}")
    for name, t in result["targets"].items():
        print(f"{name:26s} target {t['target']:<6} measured {t['measured']:.3f} "
              f"{'HIT' if t['hit'] else 'MISS'}")
    print("CPU seconds p95 per method:", {m: round(v.get("p95", float("nan")), 3)
                                          for m, v in result["cpu_s"].items()})
    print(f"load average start {load_start}, end {result['load_average_end']}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
