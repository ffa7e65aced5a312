"""Recall, false positives and throughput of ``privacy.scrub`` on the labelled sample.

Run from the repository root: ``.venv/bin/python -m bench.scrub_recall``. Prints a table and
writes ``bench/results/scrub_recall.json``.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence

from bench.machine import write_result
from privacy.scrub import PII_TYPES, scrub_many
from privacy.scrub_samples import (
    build_labelled_sample,
    build_typical_reviews,
    exact_rate,
    false_positive_rate,
    recall_by_type,
    value_survives,
)

THROUGHPUT_TEXTS = 20_000
REPEATS = 5
SEED = 0


def _texts_per_second(
    texts: Sequence[str], names: Sequence[tuple[str, ...]], *, repeats: int
) -> float:
    """Median over ``repeats`` runs of ``scrub_many`` on the whole column, in texts/s."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        scrub_many(texts, names=names)
        rates.append(len(texts) / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    sample = build_labelled_sample(seed=SEED)
    outputs, counts = scrub_many(
        [item.text for item in sample], names=[item.names for item in sample]
    )
    recall = recall_by_type(sample, outputs)
    fp_rate = false_positive_rate(sample, outputs)
    exact = exact_rate(sample, outputs)
    misses = [
        {"kind": span.kind, "value": span.value, "output": output}
        for item, output in zip(sample, outputs, strict=True)
        for span in item.spans
        if output is not None and value_survives(span.value, span.kind, output)
    ]
    false_positives = [
        {"text": item.text, "output": output}
        for item, output in zip(sample, outputs, strict=True)
        if item.is_clean and item.text != output
    ]

    typical_texts, typical_names = build_typical_reviews(THROUGHPUT_TEXTS, seed=SEED)
    cycled = [sample[i % len(sample)] for i in range(THROUGHPUT_TEXTS)]
    # Caches warm on the first pass, as they would after the first minute of ingest.
    scrub_many(typical_texts[:1000], names=typical_names[:1000])
    typical_rate = _texts_per_second(typical_texts, typical_names, repeats=REPEATS)
    labelled_rate = _texts_per_second(
        [item.text for item in cycled], [item.names for item in cycled], repeats=REPEATS
    )

    n_clean = sum(item.is_clean for item in sample)
    print(
        f"labelled sample: {len(sample)} texts ({len(sample) - n_clean} with PII, "
        f"{n_clean} clean), seed {SEED}"
    )
    print(f"{'type':<6} {'planted':>7} {'recall':>7}")
    planted = {
        kind: sum(span.kind == kind for item in sample for span in item.spans) for kind in PII_TYPES
    }
    for kind in PII_TYPES:
        print(f"{kind:<6} {planted[kind]:>7} {recall.get(kind, float('nan')):>7.3f}")
    print(f"false-positive rate on clean texts: {fp_rate:.3f} ({len(false_positives)}/{n_clean})")
    print(f"exact output on texts with PII:     {exact:.3f}")
    avg_len = statistics.mean(len(text) for text in typical_texts)
    print(
        f"throughput, typical reviews (avg {avg_len:.0f} chars, 5% with PII): "
        f"{typical_rate:,.0f} texts/s"
    )
    print(
        f"throughput, labelled sample cycled (every text has PII or tricky numbers): "
        f"{labelled_rate:,.0f} texts/s"
    )
    for miss in misses[:10]:
        print(f"  missed {miss['kind']}: {miss['value']!r} in {miss['output']!r}")
    for fp in false_positives[:10]:
        print(f"  false positive: {fp['output']!r}")

    result = {
        "sample": {"seed": SEED, "texts": len(sample), "clean": n_clean, "planted": planted},
        "recall": recall,
        "false_positive_rate": fp_rate,
        "exact_rate": exact,
        "counts": dict(counts),
        "throughput_texts_per_s": {
            "typical_reviews": typical_rate,
            "typical_avg_chars": avg_len,
            "labelled_cycled": labelled_rate,
            "texts": THROUGHPUT_TEXTS,
            "statistic": f"median of {REPEATS}",
        },
        "misses": misses,
        "false_positives": false_positives,
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "python": sys.version.split()[0],
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            # Other jobs share this machine; a high load explains a low throughput.
            "load_avg_1m_at_end": os.getloadavg()[0],
        },
    }
    print(f"wrote {write_result('scrub_recall', result)}")


if __name__ == "__main__":
    main()
