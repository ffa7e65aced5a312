"""Explanations as CSV: long format, one row per recommendation x feature, streamed.

Columns (`COLUMNS`): run_id, pseudonym, item_id, item_title, rank, prediction,
base_value, method, feature, field, feature_value, attribution, direction,
approximation_error, evaluations, latency_s.

Scopes: one customer, a list of pseudonyms (a campaign audience) or every customer.
Rows are written one recommendation at a time as they are explained: nothing holds
more than one customer's recommendations, so memory does not grow with the export.
UTF-8 with a header; every cell goes through `privacy.csv_safe.safe_cell` (item titles
are third-party text: a cell a spreadsheet would run as a formula gets a leading
quote; plain numbers stay numbers).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from explain.result import Explanation, direction
from privacy.csv_safe import safe_row

COLUMNS = ("run_id", "pseudonym", "item_id", "item_title", "rank", "prediction", "base_value",
           "method", "feature", "field", "feature_value", "attribution", "direction",
           "approximation_error", "evaluations", "latency_s")
DEFAULT_METHODS = ("shap-field",)


def explanation_rows(e: Explanation, *, item_title: str = "") -> Iterator[list[object]]:
    """The rows of one explanation (one per feature), raw values in COLUMNS order."""
    approximation = e.approximation_error
    for feature, field, value, attribution in zip(e.features, e.fields, e.values,
                                                  e.attributions, strict=True):
        yield [e.run_id, e.pseudonym, e.item_id, item_title or e.item_id, e.rank,
               e.prediction, e.base_value, e.method, feature, field, value,
               float(attribution), direction(float(attribution)), approximation,
               e.evaluations, e.latency_s]


def write_rows(rows: Iterable[list[object]], out: IO[str], *, header: bool = True) -> int:
    """Write rows (neutralised cell by cell) to a text file object; returns the count."""
    writer = csv.writer(out, lineterminator="\r\n")
    if header:
        writer.writerow(COLUMNS)
    count = 0
    for row in rows:
        writer.writerow(safe_row(row))
        count += 1
    return count


def csv_chunks(rows: Iterable[list[object]], *, header: bool = True) -> Iterator[bytes]:
    """The same CSV as UTF-8 byte chunks, one per row (a download generator)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    if header:
        writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(safe_row(row))
        yield buffer.getvalue().encode("utf-8")
        buffer.seek(0)
        buffer.truncate()
    rest = buffer.getvalue()
    if rest:
        yield rest.encode("utf-8")


def _explained(service, pseudonyms: Iterable[str], methods: Iterable[str], k: int
               ) -> Iterator[list[object]]:
    methods = tuple(methods)
    for pseudonym in pseudonyms:
        recs = service.recommendations_for([pseudonym], k=k)
        titles = dict(zip(recs["item_id"].astype(str), recs["title"].astype(str),
                          strict=True))
        for e in service.explain_recommendations(recs, methods=methods, pseudonym=pseudonym):
            yield from explanation_rows(e, item_title=titles.get(e.item_id, e.item_id))


def export_rows(service, *, pseudonyms: Iterable[str] | None = None,
                methods: Iterable[str] = DEFAULT_METHODS, k: int = 10
                ) -> Iterator[list[object]]:
    """Rows for the given customers (lazily consumed), or every customer with None."""
    who = service.customers() if pseudonyms is None else pseudonyms
    return _explained(service, (str(p).strip() for p in who if str(p).strip()), methods, k)


def export_csv(service, out: IO[str] | Path | str, *, pseudonyms: Iterable[str] | None = None,
               methods: Iterable[str] = DEFAULT_METHODS, k: int = 10) -> int:
    """Stream the explanations of the given customers (None: all) to a file object or a
    path; returns the number of rows written."""
    rows = export_rows(service, pseudonyms=pseudonyms, methods=methods, k=k)
    if isinstance(out, (str, Path)):
        with open(out, "w", encoding="utf-8", newline="") as f:
            return write_rows(rows, f)
    return write_rows(rows, out)


def read_audience(path: Path | str) -> Iterator[str]:
    """Pseudonyms from a file, one per line (blank lines and # comments skipped; a CSV
    whose header has a `user_pseudonym` or `pseudonym` column is read by that column),
    lazily."""
    with open(path, encoding="utf-8") as f:
        column: int | None = None
        first = True
        for raw in f:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            cells = [c.strip() for c in line.split(",")]
            if first:
                first = False
                header = [c.lower() for c in cells]
                column = next((header.index(n) for n in ("user_pseudonym", "pseudonym")
                               if n in header), None)
                if column is not None:
                    continue
            if len(cells) > (column or 0):
                yield cells[column or 0]
