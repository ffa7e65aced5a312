"""The warehouse privacy report: what ingest removed, generalized and scrubbed.

One plain dict for the Privacy page, `clearmark audit warehouse` and the JSON download:
columns never stored (per source file), the customer id's pseudonymization, the
quasi-identifiers with the k-anonymity target and the k reached, how they were
generalized and how many customers were suppressed, personal data scrubbed from review
text by type, and the minimum cell size every page enforces.
"""

from __future__ import annotations

from datetime import UTC, datetime

from core.columns import DIRECT_IDENTIFIERS
from core.config import Paths, PrivacyConfig
from core.store import warehouse


def _frame(name: str, paths: Paths):
    return warehouse.query(name, paths)


def warehouse_report(paths: Paths | None = None,
                     privacy: PrivacyConfig | None = None) -> dict[str, object]:
    """The report of the warehouse's latest snapshot; raises `WarehouseMissing`."""
    paths = paths or Paths()
    privacy = privacy or PrivacyConfig()
    dropped = _frame("privacy_dropped_columns", paths)
    scrubbed = _frame("privacy_scrub_counts", paths)
    anonymity = _frame("latest_anonymity_report_any_run", paths)
    columns: dict[str, list[str]] = {}
    for row in dropped.itertuples(index=False):
        for column in (c.strip() for c in str(row.dropped_columns).split(",")):
            if not column:
                continue
            columns.setdefault(column, [])
            if row.source not in columns[column]:
                columns[column].append(row.source)
    k = None
    if not anonymity.empty:
        a = anonymity.iloc[0]
        k = {"quasi_identifiers": str(a["quasi_identifiers"]),
             "k_target": int(a["k_target"]),
             "k_reached": None if a["k_reached"] is None or a["k_reached"] != a["k_reached"]
             else int(a["k_reached"]),
             "generalization": str(a["generalization"]),
             "suppressed_customers": int(a["suppressed_users"]),
             "ingest_run": str(a["run_id"])}
    return {
        "report": "clearmark warehouse privacy report",
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "warehouse": str(paths.warehouse),
        "customer_id": "stored only as a keyed pseudonym (HMAC-SHA256, 'u_' + 32 hex, "
                       "128 bits); the key lives outside the warehouse",
        "direct_identifiers_never_stored": list(DIRECT_IDENTIFIERS),
        "columns_not_stored": [{"column": c, "sources": s} for c, s in sorted(columns.items())],
        "k_anonymity": k,
        "scrubbed_from_text": {str(r.pii_type): int(r.found)
                               for r in scrubbed.itertuples(index=False)},
        "min_cell_size": privacy.min_cell_size,
        "notes": [
            "columns_not_stored: direct identifiers (read only to scrub them out of review "
            "text) and columns no mapping names; they never reach the warehouse.",
            "k_anonymity: every combination of the quasi-identifiers is shared by at least "
            "k_reached customers; rarer ones were generalized, then suppressed.",
            "min_cell_size: no page or export shows an aggregate over fewer customers.",
        ],
    }
