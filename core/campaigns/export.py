"""What leaves the warehouse: the audience CSV (pseudonyms) and the steward's activation.

The holdout never leaves the warehouse; exports are refused below `MIN_EXPORT` rows.
Every CSV cell goes through the neutralizer `cell` passed in by the caller
(`privacy.csv_safe.safe_cell`: no cell runs as a spreadsheet formula). `activate` is
the one place where pseudonyms are mapped back to customer ids, outside the warehouse.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from io import StringIO
from pathlib import Path

import pandas as pd

from core.campaigns.definition import Campaign, CampaignError
from core.campaigns.reasons import REASONS_PER_CUSTOMER
from core.campaigns.storage import load_campaign, log_activation, log_export
from core.config import PROJECT_ROOT, Paths
from core.store.interactions import USER
from core.store.warehouse import query

MIN_EXPORT = 100  # exported rows (audience without the holdout)
EXPORT_COLUMNS = ("pseudonym", "score", "probability", "decile",
                  *(f"reason_{i}" for i in range(1, REASONS_PER_CUSTOMER + 1)))

Cell = Callable[[object], object]  # a CSV cell neutralizer: privacy.csv_safe.safe_cell


class ExportRefused(CampaignError):
    """The audience is too small to hand out."""


def export_frame(rows: pd.DataFrame, *, cell: Cell, min_rows: int = MIN_EXPORT
                 ) -> pd.DataFrame:
    """The CSV's rows (`EXPORT_COLUMNS`, every cell through `cell`): holdout members are
    dropped, below `min_rows` rows the export is refused (`ExportRefused`)."""
    if "in_holdout" in rows:
        rows = rows[~rows["in_holdout"].astype(bool)]
    if len(rows) < min_rows:
        raise ExportRefused(f"the audience has {len(rows)} exportable customers (holdout "
                            f"excluded), fewer than the minimum of {min_rows}: a smaller "
                            "list could single customers out. Widen the rule (e.g. "
                            "`clearmark campaign audience <id> --rule top_pct --value 10`).")

    def reasons_of(value: object) -> list[str]:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return []
        listed = json.loads(value) if isinstance(value, str) else list(value)
        return [str(r) for r in listed][:REASONS_PER_CUSTOMER]

    out = []
    for row in rows.to_dict("records"):
        reasons = reasons_of(row.get("reasons"))
        reasons += [""] * (REASONS_PER_CUSTOMER - len(reasons))
        score = row.get("score")
        values = [row[USER], "" if score is None or pd.isna(score) else round(float(score), 6),
                  round(float(row["probability"]), 6), int(row["decile"]), *reasons]
        out.append([cell(v) for v in values])
    return pd.DataFrame(out, columns=[cell(c) for c in EXPORT_COLUMNS])


def export_csv(paths: Paths, campaign_id: str, *, cell: Cell, min_rows: int = MIN_EXPORT
               ) -> tuple[bytes, int]:
    """(CSV bytes, rows) of the campaign's audience without the holdout. Not logged: the
    caller logs what it hands out (`log_export`)."""
    load_campaign(paths, campaign_id)
    rows = query("campaign_export_rows", paths, campaign_id=campaign_id)
    frame = export_frame(rows, cell=cell, min_rows=min_rows)
    buffer = StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue().encode("utf-8"), len(frame)


def export_file_name(campaign: Campaign) -> str:
    return f"campaign_{campaign.campaign_id}_audience.csv"


def write_export(paths: Paths, campaign_id: str, out: Path, *, cell: Cell,
                 min_rows: int = MIN_EXPORT) -> int:
    """Write the export to `out` (atomically) and log it; returns the rows written."""
    data, rows = export_csv(paths, campaign_id, cell=cell, min_rows=min_rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    log_export(paths, campaign_id, rows=rows, file_name=out.name)
    return rows


def _read_raw(path: Path) -> pd.DataFrame:
    from core.ingest.readers import LINE_COLUMN, detect_format, read_csv, read_jsonl, read_parquet

    reader = {"csv": read_csv, "jsonl": read_jsonl, "parquet": read_parquet}[
        detect_format(path)]
    frames = [chunk.frame for chunk in reader(path)]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return frame.drop(columns=[LINE_COLUMN], errors="ignore")


def _check_outside(out: Path, paths: Paths) -> None:
    resolved = out.resolve()
    for root in (paths.data_dir, PROJECT_ROOT):
        root = root.resolve()
        if resolved == root or root in resolved.parents:
            raise CampaignError(f"{out} lies inside {root}: the activation file names "
                                "customers; write it outside the data directory and the "
                                "repository.")


def activate(export_file: Path, customers_file: Path, out: Path, *, key: bytes,
             paths: Paths, cell: Cell, id_column: str = "customer_id",
             columns: Sequence[str] = ()) -> dict[str, int]:
    """The steward's re-identification for activation: recompute the HMAC pseudonym of
    every raw customer id with the key, join the export on it, and write `out` with
    customer_id, the raw `columns` asked for, then the export's columns. Logged in
    `activation_log`. `out` must lie outside the data directory and the repository (it
    holds personal data); every cell goes through `cell` (raw files are not trusted).
    Returns {"rows_in": exported rows, "rows_matched": rows written}."""
    from privacy.pseudonym import pseudonymize

    _check_outside(out, paths)
    exported = pd.read_csv(export_file, dtype=str, keep_default_na=False)
    if "pseudonym" not in exported.columns:
        raise CampaignError(f"{export_file} has no 'pseudonym' column: pass a file written "
                            "by `clearmark campaign export`.")
    raw = _read_raw(customers_file)
    missing = [c for c in (id_column, *columns) if c not in raw.columns]
    if missing:
        raise CampaignError(f"{customers_file} lacks the column(s) {missing} (columns: "
                            f"{list(raw.columns)[:12]}): name the id column with "
                            "--id-column.")
    raw = raw[[id_column, *columns]].dropna(subset=[id_column])
    raw = raw.assign(**{id_column: raw[id_column].astype(str)}).drop_duplicates(id_column)
    raw["pseudonym"] = pseudonymize(raw[id_column].tolist(), key=key)
    joined = exported.merge(raw, on="pseudonym", how="inner")
    ordered = joined[[id_column, *columns, *[c for c in exported.columns]]]
    ordered = ordered.rename(columns={id_column: "customer_id"})
    safe = ordered.map(cell)
    out.parent.mkdir(parents=True, exist_ok=True)
    safe.to_csv(out, index=False)
    digest = hashlib.sha256(Path(export_file).read_bytes()).hexdigest()
    log_activation(paths, export_file=Path(export_file).name, export_sha256=digest,
                   rows_in=len(exported), rows_matched=len(joined), out_file=out.name)
    return {"rows_in": len(exported), "rows_matched": len(joined)}
