"""Ingest throughput and warehouse size for generated data (default 100k
customers, about 1M events), plus scrubbing recall on the generator's reviews.

    .venv/bin/python -m bench.ingest_throughput [--customers 100000]

The scrubbing check is independent of the scrubber's own labelled sample: the
generator plants each reviewer's real name, e-mail or phone in some reviews,
and the check counts how many of those values survive in the warehouse.
"""

from __future__ import annotations

import argparse
import resource
import secrets
import tempfile
import time
from pathlib import Path

import pandas as pd

from bench.machine import write_result
from core.config import Paths
from core.ingest.pipeline import ingest
from core.store.warehouse import read_connection
from core.synthetic.generator import GeneratorConfig, default_item_count, generate
from privacy.pseudonym import pseudonymize


def planted_pii_survival(raw_dir: Path, paths: Paths, key: bytes) -> dict[str, object]:
    """For reviews whose raw text contains the reviewer's e-mail, phone or
    name, the share of those values gone from the stored text (recall)."""
    customers = pd.read_csv(raw_dir / "customers.csv", dtype=str)
    reviews = pd.read_csv(raw_dir / "reviews.csv", dtype=str)
    merged = reviews.merge(customers, on="customer_id", how="left")
    merged["user_pseudonym"] = pseudonymize(merged["customer_id"], key=key)
    with read_connection(paths) as con:
        stored = con.execute("SELECT user_pseudonym, item_id, ts, text FROM reviews").df()
    merged["ts"] = pd.to_datetime(merged["timestamp"])
    joined = merged.merge(stored, on=["user_pseudonym", "item_id", "ts"], suffixes=("", "_db"))
    out: dict[str, object] = {"reviews_checked": len(joined)}
    for kind, column in (("EMAIL", "email"), ("PHONE", "phone"), ("NAME", "name")):
        planted = joined[[v in t for v, t in zip(joined[column], joined["text"], strict=True)]]
        survived = sum(v.lower() in (t or "").lower()
                       for v, t in zip(planted[column], planted["text_db"], strict=True))
        out[kind] = {"planted": len(planted), "survived": int(survived),
                     "recall": round(1 - survived / len(planted), 4) if len(planted) else None}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=100_000)
    args = parser.parse_args()
    key = secrets.token_bytes(32)
    with tempfile.TemporaryDirectory() as tmp:
        paths = Paths(data_dir=Path(tmp))
        raw = Path(tmp) / "raw"
        t0 = time.perf_counter()
        files = generate(GeneratorConfig(customers=args.customers,
                                         items=default_item_count(args.customers)),
                         raw, progress=False)
        generate_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        results = ingest([raw], key=key, paths=paths, progress=False)
        ingest_s = time.perf_counter() - t0
        rows = sum(r.rows_read for r in results)
        size = paths.warehouse.stat().st_size
        scrub = planted_pii_survival(raw, paths, key)
        k_report = next(r.k_report for r in results if r.k_report is not None)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "customers": args.customers, "rows_by_table": files.rows,
        "generate_seconds": round(generate_s, 1),
        "ingest_seconds": round(ingest_s, 1), "rows_ingested": rows,
        "rows_per_second": round(rows / ingest_s),
        "events_per_second": round(files.rows["events"] / ingest_s),
        "warehouse_mb": round(size / 1024 ** 2, 1),
        "peak_rss_mb": round(peak_mb), "k_anonymity": vars(k_report),
        "scrub_recall_on_generated_reviews": scrub,
    }
    path = write_result("ingest_throughput", result)
    print(f"{rows:,} rows ({files.rows['events']:,} events) ingested in {ingest_s:.1f} s: "
          f"{rows / ingest_s:,.0f} rows/s; warehouse {size / 1024 ** 2:.1f} MB; "
          f"peak RSS {peak_mb:,.0f} MB")
    print(f"k-anonymity: {vars(k_report)}")
    print(f"scrubbing on generated reviews: {scrub}")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
