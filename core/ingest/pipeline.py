"""Ingest: raw files in, a warehouse in which nobody can be named out.

Every row passes the door in this order: read (bad lines quarantined) ->
mapped onto canonical fields (unmapped columns dropped) -> validated (bad
rows quarantined) -> pseudonymized, generalized, scrubbed -> staged ->
deduplicated -> written. One call is one transaction: if anything fails,
the warehouse is left as it was and no quarantine file is kept.
"""

from __future__ import annotations

import csv
import hashlib
import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd
from tqdm import tqdm

from core import columns as C
from core.config import Paths, PrivacyConfig
from core.ingest.formats import SourceSpec, detect_amazon, load_mapping, mapping_path_for
from core.ingest.readers import LINE_COLUMN, READERS, Reject, SourceError, detect_format
from core.ingest.validation import Validated, validate
from core.store.warehouse import write_transaction
from privacy.generalize import age_band, enforce_k_anonymity, region_of, signup_month
from privacy.pseudonym import pseudonymize
from privacy.scrub import scrub_many

TABLE_ORDER = ("customers", "items", "events", "reviews")
# Staged columns per raw table, in warehouse order (the line number last).
STAGE_COLUMNS = {
    "customers": ("user_pseudonym", "age_band", "region", "signup_month"),
    "items": ("item_id", "title", "brand", "category", "price", "description"),
    "events": ("user_pseudonym", "item_id", "event_type", "ts", "promotion"),
    "reviews": ("review_id", "user_pseudonym", "item_id", "rating", "ts", "summary", "text",
                "verified", "helpful_votes"),
}
STAGE_TYPES = {"price": "DOUBLE", "ts": "TIMESTAMP", "promotion": "BOOLEAN", "rating": "DOUBLE",
               "verified": "BOOLEAN", "helpful_votes": "INTEGER"}
# What makes two rows the same record.
DEDUP_KEYS = {
    "customers": ("user_pseudonym",),
    "items": ("item_id",),
    "events": ("user_pseudonym", "item_id", "event_type", "ts"),
    "reviews": ("review_id",),
}
WAREHOUSE_TABLE = {"customers": "users", "items": "items", "events": "events",
                   "reviews": "reviews"}


class IngestError(RuntimeError):
    """An ingest that could not run; the warehouse is unchanged."""


@dataclass
class IngestResult:
    source: str
    table: str = ""
    source_format: str = ""
    run_id: str = ""
    skipped_reason: str = ""  # set when the file was already ingested
    rows_read: int = 0
    rows_accepted: int = 0
    rejected: Counter = field(default_factory=Counter)
    dropped_columns: list[str] = field(default_factory=list)
    scrubbed: Counter = field(default_factory=Counter)
    quarantine_file: Path | None = None
    k_report: object | None = None

    @property
    def rows_rejected(self) -> int:
        return sum(self.rejected.values())


def fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_spec(path: Path, *, mapping: Path | None = None) -> SourceSpec | None:
    """The mapping given, else `<name>.mapping.toml` beside the file, else None
    (Amazon review data is then recognised from its keys)."""
    if mapping is not None:
        return load_mapping(mapping)
    beside = mapping_path_for(path)
    return load_mapping(beside) if beside.exists() else None


def expand_sources(sources: Iterable[Path]) -> list[Path]:
    """Files as given; a directory stands for its data files (not mappings, not
    the generator's truth folder)."""
    out: list[Path] = []
    for source in sources:
        if source.is_dir():
            out += sorted(p for p in source.iterdir() if p.is_file() and _is_data_file(p))
        else:
            out.append(source)
    return out


def _is_data_file(path: Path) -> bool:
    try:
        detect_format(path)
    except SourceError:
        return False  # READMEs, mapping files and the like beside the data
    return not path.name.startswith(".")


# --- Transforms: validated canonical rows -> warehouse rows ---------------------------

@dataclass
class _Door:
    """What the transforms need besides the rows: the key, and the names of
    customers read earlier in this ingest (kept in memory only, to scrub them
    out of their own reviews; never written)."""

    key: bytes
    known_names: dict[str, str] = field(default_factory=dict)

def _regions(spec: SourceSpec) -> dict[str, str]:
    from core.synthetic.vocabulary import CITY_REGIONS

    return {**{k.lower(): v for k, v in CITY_REGIONS.items()}, **spec.regions}


def _customers(frame: pd.DataFrame, spec: SourceSpec, door: _Door, scrubbed: Counter,
               ) -> pd.DataFrame:
    regions = _regions(spec)
    door.known_names.update((cid, name) for cid, name in
                            zip(frame[C.CUSTOMER_ID], _values(frame[C.NAME]), strict=True) if name)
    return pd.DataFrame({
        "user_pseudonym": pseudonymize(frame[C.CUSTOMER_ID], key=door.key),
        "age_band": frame[C.AGE].map(age_band),
        "region": [region_of(city, pc, regions)
                   for city, pc in zip(frame[C.CITY], frame[C.POSTCODE], strict=True)],
        "signup_month": frame[C.SIGNUP_DATE].map(signup_month),
    })


def _clean_catalogue_text(column: pd.Series) -> pd.Series:
    """Catalogue exports carry HTML fragments and layout whitespace; keep the words."""
    text = column.astype(object).where(column.notna(), None)
    text = text.str.replace(r"<[^>]*>", " ", regex=True).str.replace(r"\s+", " ", regex=True)
    text = text.str.strip()
    return text.where(text.notna() & (text != ""), None)


def _items(frame: pd.DataFrame, spec: SourceSpec, door: _Door, scrubbed: Counter,
           ) -> pd.DataFrame:
    out = frame[[C.ITEM_ID, C.TITLE, C.BRAND, C.CATEGORY, C.PRICE, C.DESCRIPTION]].rename(
        columns={C.ITEM_ID: "item_id"})
    for column in (C.TITLE, C.BRAND, C.CATEGORY, C.DESCRIPTION):
        out[column] = _clean_catalogue_text(out[column])
    out[C.BRAND] = out[C.BRAND].str.removeprefix("by ")
    return out


def _events(frame: pd.DataFrame, spec: SourceSpec, door: _Door, scrubbed: Counter,
            ) -> pd.DataFrame:
    return pd.DataFrame({
        "user_pseudonym": pseudonymize(frame[C.CUSTOMER_ID], key=door.key),
        "item_id": frame[C.ITEM_ID], "event_type": frame[C.EVENT_TYPE],
        "ts": frame[C.TIMESTAMP], "promotion": frame[C.PROMOTION],
    })


def _values(column: pd.Series) -> list[str | None]:
    """Plain Python strings, missing as None (pandas may hold NaN for missing)."""
    return [None if pd.isna(v) else v for v in column.tolist()]


def _reviews(frame: pd.DataFrame, spec: SourceSpec, door: _Door, scrubbed: Counter,
             ) -> pd.DataFrame:
    # The display name on the review row and, when this ingest also read the
    # customer file, the customer's full name (a handle like 'maria35' on the
    # review does not stop 'Maria Lopez' in its text from being found).
    names = [[n for n in (display, door.known_names.get(cid)) if n] for display, cid in
             zip(_values(frame[C.NAME]), frame[C.CUSTOMER_ID], strict=True)]
    text, found_text = scrub_many(_values(frame[C.TEXT]), names=names)
    summary, found_summary = scrub_many(_values(frame[C.SUMMARY]), names=names)
    scrubbed.update(found_text)
    scrubbed.update(found_summary)
    users = pseudonymize(frame[C.CUSTOMER_ID], key=door.key)
    stamps = frame[C.TIMESTAMP].astype(str).tolist()
    review_ids = [
        "r_" + hashlib.sha256("\x1f".join((u, i, s, t or "")).encode()).hexdigest()[:32]
        for u, i, s, t in zip(users, frame[C.ITEM_ID], stamps, text, strict=True)
    ]
    return pd.DataFrame({
        "review_id": review_ids, "user_pseudonym": users, "item_id": frame[C.ITEM_ID],
        "rating": frame[C.RATING], "ts": frame[C.TIMESTAMP], "summary": summary, "text": text,
        "verified": frame[C.VERIFIED], "helpful_votes": frame[C.HELPFUL_VOTES],
    })


TRANSFORMS: dict[str, Callable[..., pd.DataFrame]] = {
    "customers": _customers, "items": _items, "events": _events, "reviews": _reviews,
}


# --- Staging and merging --------------------------------------------------------------

def _create_stage(con: duckdb.DuckDBPyConnection, table: str) -> str:
    stage = f"stage_{table}"
    cols = ", ".join(f"{c} {STAGE_TYPES.get(c, 'VARCHAR')}" for c in STAGE_COLUMNS[table])
    con.execute(f"CREATE OR REPLACE TEMP TABLE {stage} ({cols}, _line BIGINT)")
    return stage


def _stage_chunk(con: duckdb.DuckDBPyConnection, stage: str, table: str,
                 rows: pd.DataFrame, lines: pd.Series) -> None:
    rows = rows.copy()
    rows["_line"] = lines.to_numpy()
    con.register("chunk_rows", rows)
    try:
        cols = ", ".join((*STAGE_COLUMNS[table], "_line"))
        con.execute(f"INSERT INTO {stage} SELECT {cols} FROM chunk_rows")
    finally:
        con.unregister("chunk_rows")


def _merge(con: duckdb.DuckDBPyConnection, stage: str, table: str, run_id: str,
           spec: SourceSpec) -> list[Reject]:
    """Write staged rows, rejecting duplicates (within the file, or already stored)."""
    target = WAREHOUSE_TABLE[table]
    keys = DEDUP_KEYS[table]
    on = " AND ".join(f"t.{k} = s.{k}" for k in keys)
    # Customers and items already stored are updated (a newer export of the same
    # person or product), not rejected; events and reviews are facts: stored once.
    refresh = table in ("customers", "items")
    stored = "FALSE" if refresh else f"EXISTS (SELECT 1 FROM {target} t WHERE {on})"
    dups = con.execute(f"""
        SELECT _line, first_line, stored FROM (
            SELECT s._line, min(s._line) OVER w AS first_line,
                   row_number() OVER w AS rn, {stored} AS stored
            FROM {stage} s WINDOW w AS (PARTITION BY {', '.join(keys)} ORDER BY s._line))
        WHERE rn > 1 OR stored ORDER BY _line""").fetchall()
    rejects = [Reject(line, "duplicate record",
                      "already in the warehouse" if was_stored else f"same as line {first}")
               for line, first, was_stored in dups]
    con.execute(f"DELETE FROM {stage} WHERE _line IN (SELECT unnest($lines))",
                {"lines": [r.line for r in rejects]})
    cols = list(STAGE_COLUMNS[table])
    if refresh:
        updates = ", ".join(f"{c} = coalesce(s.{c}, t.{c})" for c in cols if c not in keys)
        con.execute(f"UPDATE {target} AS t SET {updates} FROM {stage} s WHERE {on}")
        con.execute(f"DELETE FROM {stage} s WHERE EXISTS (SELECT 1 FROM {target} t WHERE {on})")
    col_list = ", ".join(cols)
    con.execute(f"INSERT INTO {target} ({col_list}, run_id) "
                f"SELECT {col_list}, $run FROM {stage} ORDER BY _line", {"run": run_id})
    if table == "reviews" and spec.review_is_event:
        con.execute("""
            INSERT INTO events (user_pseudonym, item_id, event_type, ts, promotion, run_id)
            SELECT DISTINCT s.user_pseudonym, s.item_id, 'review', s.ts, NULL::BOOLEAN, $run
            FROM stage_reviews s WHERE NOT EXISTS (
                SELECT 1 FROM events e WHERE e.user_pseudonym = s.user_pseudonym
                AND e.item_id = s.item_id AND e.event_type = 'review' AND e.ts = s.ts)""",
                    {"run": run_id})
    return rejects


def _fill_references(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    """Every pseudonym and item referenced by an event or review has its row
    (attributes unknown until a customer or catalogue file says them)."""
    con.execute("""
        INSERT INTO users (user_pseudonym, run_id)
        SELECT DISTINCT user_pseudonym, $run FROM (
            SELECT user_pseudonym FROM events UNION SELECT user_pseudonym FROM reviews) r
        WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.user_pseudonym = r.user_pseudonym)""",
                {"run": run_id})
    con.execute("""
        INSERT INTO items (item_id, run_id)
        SELECT DISTINCT item_id, $run FROM (
            SELECT item_id FROM events UNION SELECT item_id FROM reviews) r
        WHERE NOT EXISTS (SELECT 1 FROM items i WHERE i.item_id = r.item_id)""",
                {"run": run_id})


def _enforce_k(con: duckdb.DuckDBPyConnection, run_id: str, privacy: PrivacyConfig):
    users = con.execute(
        "SELECT user_pseudonym, age_band, region, signup_month FROM users").df()
    generalized, report = enforce_k_anonymity(users, k=privacy.k_anonymity)
    con.register("generalized", generalized)
    try:
        con.execute("""
            UPDATE users SET age_band = g.age_band, region = g.region,
                             signup_month = g.signup_month
            FROM generalized g WHERE users.user_pseudonym = g.user_pseudonym""")
    finally:
        con.unregister("generalized")
    con.execute("INSERT INTO anonymity_reports VALUES ($run, $qi, $k, $reached, $gen, $sup)",
                {"run": run_id, "qi": ", ".join(C.QUASI_IDENTIFIERS), "k": report.k_target,
                 "reached": report.k_reached, "gen": report.generalization,
                 "sup": report.suppressed})
    return report


# --- Quarantine -------------------------------------------------------------------------

class Quarantine:
    """Bad rows for the steward, outside the warehouse; kept only if the ingest commits."""

    def __init__(self, directory: Path, run_id: str, source: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{run_id}_{source.name}.rejected.csv"
        self._tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._file = os.fdopen(fd, "w", encoding="utf-8", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(["line", "reason", "raw"])
        self.rows = 0

    def write(self, rejects: Iterable[Reject]) -> None:
        for r in rejects:
            self._writer.writerow([r.line, r.reason, r.raw])
            self.rows += 1

    def keep(self) -> Path | None:
        self._file.close()
        if self.rows == 0:
            self._tmp.unlink()
            return None
        os.replace(self._tmp, self.path)
        return self.path

    def discard(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)


# --- The ingest ---------------------------------------------------------------------------

def _ingest_one(con: duckdb.DuckDBPyConnection, source: Path, *, spec: SourceSpec | None,
                fmt: str | None, door: _Door, paths: Paths, privacy: PrivacyConfig,
                progress: bool, quarantines: list[Quarantine]) -> IngestResult:
    result = IngestResult(source=source.name)
    fmt = fmt or detect_format(source)
    fp = fingerprint(source)
    seen = con.execute("SELECT run_id FROM ingest_runs WHERE fingerprint = $fp",
                       {"fp": fp}).fetchone()
    if seen:
        result.skipped_reason = f"already ingested in run {seen[0]}; nothing added"
        return result
    result.run_id = f"ing_{datetime.now(UTC):%Y%m%dT%H%M%S}_{uuid.uuid4().hex[:8]}"
    started = datetime.now(UTC).replace(tzinfo=None)
    quarantine = Quarantine(paths.quarantine_dir, result.run_id, source)
    quarantines.append(quarantine)
    dropped: set[str] = set()
    stage = None
    bar = tqdm(desc=f"ingest {source.name}", unit=" rows", disable=not progress, leave=True)
    for chunk in READERS[fmt](source):
        result.rows_read += chunk.lines
        quarantine.write(chunk.rejects)
        result.rejected.update(r.reason for r in chunk.rejects)
        if spec is None and not chunk.frame.drop(columns=[LINE_COLUMN]).empty:
            spec = detect_amazon(chunk.frame)
            if spec is None:
                raise SourceError(
                    f"{source}: not Amazon review data and no mapping file. Write "
                    f"{mapping_path_for(source).name} beside it (see README, 'Your own data') "
                    "or pass --mapping.")
        if spec is not None and not chunk.frame.empty:
            if stage is None:
                stage = _create_stage(con, spec.table)
            canonical, dropped_here = spec.to_canonical(chunk.frame)
            dropped.update(dropped_here)
            checked = validate_chunk(canonical, spec, privacy)
            quarantine.write(checked.rejects)
            result.rejected.update(r.reason for r in checked.rejects)
            rows = TRANSFORMS[spec.table](checked.frame, spec, door, result.scrubbed)
            _stage_chunk(con, stage, spec.table, rows, checked.frame[LINE_COLUMN])
        bar.update(chunk.lines)
    bar.close()
    if spec is None:
        raise SourceError(f"{source}: no row could be read; nothing to ingest.")
    result.table, result.source_format = spec.table, spec.name
    if stage is not None:
        duplicates = _merge(con, stage, spec.table, result.run_id, spec)
        quarantine.write(duplicates)
        result.rejected.update(r.reason for r in duplicates)
    result.rows_accepted = result.rows_read - result.rows_rejected
    # Direct identifiers are read (a name, to scrub it out of the text) but never stored.
    identifiers = {spec.columns[f] for f in C.DIRECT_IDENTIFIERS if f in spec.columns}
    result.dropped_columns = sorted(dropped | identifiers)
    _fill_references(con, result.run_id)
    if spec.table == "customers":
        result.k_report = _enforce_k(con, result.run_id, privacy)
    _record_run(con, result, fp, started, quarantine)
    return result


def validate_chunk(canonical: pd.DataFrame, spec: SourceSpec,
                   privacy: PrivacyConfig) -> Validated:
    return validate(canonical, table=spec.table, timestamp_unit=spec.timestamp_unit,
                    default_event_type=spec.default_event_type, privacy=privacy)


def _record_run(con: duckdb.DuckDBPyConnection, result: IngestResult, fp: str,
                started: datetime, quarantine: Quarantine) -> None:
    con.execute("""
        INSERT INTO ingest_runs VALUES ($run, $source, $fmt, $table, $fp, $started,
            $finished, $read, $accepted, $rejected, $dropped, $quarantine)""",
                {"run": result.run_id, "source": result.source, "fmt": result.source_format,
                 "table": result.table, "fp": fp, "started": started,
                 "finished": datetime.now(UTC).replace(tzinfo=None),
                 "read": result.rows_read, "accepted": result.rows_accepted,
                 "rejected": result.rows_rejected, "dropped": ", ".join(result.dropped_columns),
                 "quarantine": quarantine.path.name if quarantine.rows else None})
    for reason, rows in sorted(result.rejected.items()):
        con.execute("INSERT INTO ingest_rejections VALUES ($run, $reason, $rows)",
                    {"run": result.run_id, "reason": reason, "rows": rows})
    for pii_type, found in sorted(result.scrubbed.items()):
        con.execute("INSERT INTO scrub_counts VALUES ($run, $type, $found)",
                    {"run": result.run_id, "type": pii_type, "found": found})


def ingest(sources: Iterable[Path], *, key: bytes, paths: Paths | None = None,
           privacy: PrivacyConfig | None = None, mapping: Path | None = None,
           fmt: str | None = None, progress: bool = True) -> list[IngestResult]:
    """Ingest files (or directories of files) in one transaction."""
    paths = paths or Paths()
    privacy = privacy or PrivacyConfig()
    files = expand_sources(sources)
    if not files:
        raise IngestError("No files to ingest.")
    for f in files:
        if not f.is_file():
            raise SourceError(f"{f}: no such file.")
    specs = {f: resolve_spec(f, mapping=mapping) for f in files}
    # Customers and the catalogue first, so events find their rows' attributes.
    files.sort(key=lambda f: TABLE_ORDER.index(specs[f].table) if specs[f] else len(TABLE_ORDER))
    quarantines: list[Quarantine] = []
    results: list[IngestResult] = []
    door = _Door(key)
    try:
        with write_transaction(paths) as con:
            for f in files:
                results.append(_ingest_one(con, f, spec=specs[f], fmt=fmt, door=door, paths=paths,
                                           privacy=privacy, progress=progress,
                                           quarantines=quarantines))
    except BaseException:
        for q in quarantines:
            q.discard()
        raise
    for q, r in zip(quarantines, [r for r in results if r.run_id], strict=True):
        r.quarantine_file = q.keep()
    return results
