"""Reading raw files line by line, keeping every line accounted for.

A reader yields chunks: the rows it could parse (with their line numbers)
and the lines it could not (with the reason and the raw text, for the
steward's quarantine). Problems with the file as a whole (missing, empty,
not the format it claims) raise `SourceError` naming the file.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
LINE_COLUMN = "_line"
PROBE_LINES = 20  # if none of the first lines parse, the file is not what it claims
csv.field_size_limit(16 * 1024 * 1024)


class SourceError(RuntimeError):
    """The file cannot be read at all; the message names the file and the fix."""


@dataclass
class Reject:
    line: int
    reason: str
    raw: str = ""


@dataclass
class Chunk:
    frame: pd.DataFrame  # source columns (strings or parsed JSON values) + LINE_COLUMN
    rejects: list[Reject] = field(default_factory=list)

    @property
    def lines(self) -> int:
        return len(self.frame) + len(self.rejects)


def detect_format(path: Path) -> str:
    """'jsonl', 'csv' or 'parquet', from the name (gzip suffix allowed)."""
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".json", ".jsonl", ".ndjson")):
        return "jsonl"
    if name.endswith((".csv", ".tsv", ".txt")):
        return "csv"
    if name.endswith(".parquet"):
        return "parquet"
    raise SourceError(
        f"{path}: cannot tell the format from the name. Use a .jsonl/.json, .csv or "
        ".parquet file (optionally .gz), or pass --format."
    )


def _open_binary(path: Path) -> io.BufferedIOBase:
    if not path.exists():
        raise SourceError(f"{path}: no such file.")
    if path.is_dir():
        raise SourceError(f"{path}: is a directory, not a file.")
    with path.open("rb") as f:
        head = f.read(4)
    if not head:
        raise SourceError(f"{path}: the file is empty; there is nothing to ingest.")
    if head[:2] == GZIP_MAGIC:
        return gzip.open(path, "rb")
    if path.suffix == ".gz":
        raise SourceError(f"{path}: named .gz but not gzip-compressed. Rename it or recompress it.")
    return path.open("rb")


def _guard_stream(path: Path, lines: Iterator[bytes]) -> Iterator[bytes]:
    try:
        yield from lines
    except (EOFError, OSError, zlib.error) as exc:
        raise SourceError(f"{path}: the file is damaged or truncated ({exc}).") from exc


def _not_what_it_claims(path: Path, kind: str, rejects: list[Reject]) -> SourceError:
    first = rejects[0]
    return SourceError(
        f"{path}: does not look like {kind}: none of the first {len(rejects)} lines could be "
        f"read (line {first.line}: {first.reason}). Check that the file is {kind}, or pass "
        "the right --format."
    )


def read_jsonl(path: Path, *, chunk_rows: int = 100_000) -> Iterator[Chunk]:
    """JSON lines, one object per line; gzip or plain."""
    stream = _open_binary(path)
    records: list[dict] = []
    lines: list[int] = []
    rejects: list[Reject] = []
    parsed_any = False
    with stream:
        for number, raw in enumerate(_guard_stream(path, stream), start=1):
            record, reject = _parse_json_line(number, raw)
            if reject is not None:
                rejects.append(reject)
                if not parsed_any and len(rejects) >= PROBE_LINES:
                    break
                continue
            parsed_any = True
            records.append(record)
            lines.append(number)
            if len(records) >= chunk_rows:
                yield Chunk(_frame(records, lines), rejects)
                records, lines, rejects = [], [], []
    if not parsed_any and rejects:
        raise _not_what_it_claims(path, "JSON lines", rejects[:PROBE_LINES])
    if records or rejects:
        yield Chunk(_frame(records, lines), rejects)


def _parse_json_line(number: int, raw: bytes) -> tuple[dict | None, Reject | None]:
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None, Reject(number, "not valid UTF-8", raw.decode("utf-8", "replace").strip())
    if not text:
        return None, Reject(number, "blank line", "")
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, Reject(number, f"not valid JSON ({exc.msg})", text)
    if not isinstance(record, dict):
        return None, Reject(number, "not a JSON object", text)
    return record, None


def _frame(records: list[dict], lines: list[int]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    frame[LINE_COLUMN] = lines
    return frame


def read_csv(path: Path, *, chunk_rows: int = 100_000) -> Iterator[Chunk]:
    """CSV with a header row; the delimiter is sniffed (comma, semicolon, tab)."""
    stream = _open_binary(path)
    with stream:
        text = io.TextIOWrapper(stream, encoding="utf-8", errors="surrogateescape", newline="")
        try:
            first = text.readline()
        except (EOFError, OSError, zlib.error) as exc:
            raise SourceError(f"{path}: the file is damaged or truncated ({exc}).") from exc
        if "\x00" in first or _mostly_undecodable(first):
            raise SourceError(f"{path}: contains binary data, not CSV text. Check the file.")
        try:
            dialect = csv.Sniffer().sniff(first, delimiters=",;\t|")
        except csv.Error:
            dialect = csv.excel
        rows = csv.reader(itertools.chain([first], text), dialect)
        try:
            header = next(rows)
        except StopIteration as exc:
            raise SourceError(f"{path}: the file is empty; there is nothing to ingest.") from exc
        header = [h.strip().lstrip("\ufeff") for h in header]
        if len(set(header)) != len(header):
            raise SourceError(f"{path}: the header repeats a column name: {header}.")
        width = len(header)
        values: list[list[str]] = []
        lines: list[int] = []
        rejects: list[Reject] = []
        line = rows.line_num
        try:
            for row in rows:
                start, line = line + 1, rows.line_num
                raw = ",".join(row)
                if not any(cell.strip() for cell in row):
                    rejects.append(Reject(start, "blank line", ""))
                    continue
                try:
                    raw.encode("utf-8")
                except UnicodeEncodeError:
                    rejects.append(Reject(start, "not valid UTF-8",
                                          raw.encode("utf-8", "surrogateescape").decode(
                                              "utf-8", "replace")))
                    continue
                if len(row) != width:
                    rejects.append(Reject(start, f"{len(row)} fields where the header has {width}",
                                          raw))
                    continue
                values.append(row)
                lines.append(start)
                if len(values) >= chunk_rows:
                    yield Chunk(_csv_frame(header, values, lines), rejects)
                    values, lines, rejects = [], [], []
        except csv.Error as exc:
            raise SourceError(f"{path}: line {rows.line_num}: {exc}. Fix the quoting there.") \
                from exc
        except (EOFError, OSError, zlib.error) as exc:
            raise SourceError(f"{path}: the file is damaged or truncated ({exc}).") from exc
    if values or rejects:
        yield Chunk(_csv_frame(header, values, lines), rejects)


def _mostly_undecodable(line: str) -> bool:
    bad = sum(1 for ch in line if "\udc80" <= ch <= "\udcff")
    return bad > max(8, len(line) // 10)


def _csv_frame(header: list[str], values: list[list[str]], lines: list[int]) -> pd.DataFrame:
    frame = pd.DataFrame(values, columns=header, dtype=object)
    frame[LINE_COLUMN] = lines
    return frame


def read_parquet(path: Path, *, chunk_rows: int = 100_000) -> Iterator[Chunk]:
    """Parquet, read in row batches; 'line' is the 1-based row number."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.exists():
        raise SourceError(f"{path}: no such file.")
    if path.stat().st_size == 0:
        raise SourceError(f"{path}: the file is empty; there is nothing to ingest.")
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceError(f"{path}: not a readable Parquet file ({exc}).") from exc
    start = 1
    for batch in parquet.iter_batches(batch_size=chunk_rows):
        frame = batch.to_pandas().astype(object)
        frame = frame.where(frame.notna(), None)
        frame[LINE_COLUMN] = range(start, start + len(frame))
        start += len(frame)
        yield Chunk(frame)


READERS = {"jsonl": read_jsonl, "csv": read_csv, "parquet": read_parquet}
