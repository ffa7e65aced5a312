"""The privacy budget ledger: an append-only, hash-chained JSON-lines file.

Every training run that touches personal data (and every statistic learnt
from it) is recorded here before it starts (`privacy.budget.charge` checks the
budget and appends the "started" record). A record is never edited: a
status change ("started" -> "completed" | "failed") is a new record for the
same run_id, and so is a budget change (artefact_kind "budget") and a
membership audit (artefact_kind "audit").

Each record carries `prev_hash` (the hash of the record before it; 64 zeros
for the first) and `hash`, the SHA-256 of the canonical JSON of the record
without `hash` (keys sorted, no spaces, UTF-8). `verify` walks the chain and
names the record that was edited, deleted, reordered or garbled. The chain
cannot by itself detect the removal of the LAST records or a rewrite of the
whole file with fresh hashes: keep the head hash (`verify(...).head_hash`,
printed by `clearmark audit verify` and carried by the audit report)
somewhere else and pass it back as `expected_head`.

The ledger is a plain file, not a warehouse table, so appending never fights
the app for DuckDB's single writer. Appenders take an exclusive `flock` on
the file, re-verify the chain, append one line and fsync before unlocking.

From the project this module imports only `privacy.guarantee` (what makes a
run private); `privacy.budget` and `privacy.audit` build on it, never the other
way round. Paths come in as arguments.
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import math
import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from privacy.guarantee import NO_UNIT, is_private

GENESIS = "0" * 64
STATUSES = ("started", "completed", "failed")
NON_SPEND_KINDS = ("budget", "audit")  # records that change nothing in the spend
MECHANISM_DP_SGD = "DP-SGD (Gaussian, Poisson sampling)"
MECHANISM_NONE = "none (not private)"
# One release of per-item customer counts with Gaussian noise: recorded with
# sample_rate 1 and steps 1, so that every accountant composes it exactly as the
# Gaussian mechanism (noise std = noise_multiplier x the L2 sensitivity in max_grad_norm).
MECHANISM_GAUSSIAN_COUNTS = "Gaussian mechanism (item counts, released once)"
# A DP fit of a model's final weights: noisy gradient steps on one Poisson sample,
# composed into one Gaussian mechanism (recorded with steps 1 at the sample's rate).
MECHANISM_GAUSSIAN_FIT = "Gaussian mechanism (final-weight fit, Poisson sample)"
INF = "inf"  # how an infinite epsilon is written in JSON


class LedgerError(RuntimeError):
    """The ledger is damaged or the request does not fit it; the message says why."""


class BudgetExceeded(LedgerError):
    """A run would take the dataset over its privacy budget. Nothing was appended."""

    def __init__(self, message: str, *, dataset: str, budget_epsilon: float,
                 spent_epsilon: float, requested_epsilon: float, composed_epsilon: float,
                 remaining_epsilon: float) -> None:
        super().__init__(message)
        self.dataset = dataset
        self.budget_epsilon = budget_epsilon
        self.spent_epsilon = spent_epsilon
        self.requested_epsilon = requested_epsilon
        self.composed_epsilon = composed_epsilon
        self.remaining_epsilon = remaining_epsilon


@dataclass(frozen=True)
class LedgerRecord:
    """One line of the ledger. Spend fields are None on budget and audit records."""

    seq: int
    run_id: str
    dataset: str
    dataset_fingerprint: str
    artefact_kind: str  # recommender, sentiment, statistic, ..., or budget / audit
    privacy_unit: str | None  # customer, example, none (not private)
    contribution_cap: int | None  # max examples per unit per step/epoch, from the trainer
    mechanism: str | None
    noise_multiplier: float | None
    sample_rate: float | None
    steps: int | None
    max_grad_norm: float | None
    delta: float | None
    epsilon: float | None  # math.inf for a run that is not private ("inf" on disk)
    accountant: str | None
    accountant_version: str | None
    sampler: str | None
    secure_mode: bool | None
    who: str
    when: str  # UTC, ISO 8601
    code_version: str
    status: str
    note: str
    details: dict[str, Any] = field(default_factory=dict)  # budget / audit specifics
    prev_hash: str = GENESIS
    hash: str = ""

    @property
    def is_spend(self) -> bool:
        return self.artefact_kind not in NON_SPEND_KINDS

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: an infinite epsilon becomes the string "inf"."""
        d = asdict(self)
        d["epsilon"] = _encode_float(self.epsilon)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LedgerRecord:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in d.items() if k in known}
        values["epsilon"] = _decode_float(d.get("epsilon"))
        return cls(**values)


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    records: int  # lines that parsed as records
    head_hash: str  # hash of the record with the highest seq (GENESIS when empty)
    problems: list[str]


@dataclass(frozen=True)
class RunSummary:
    """A run as the ledger sees it now: spend parameters as charged at start,
    latest status and latest claimed epsilon."""

    run_id: str
    dataset: str
    dataset_fingerprint: str
    artefact_kind: str
    privacy_unit: str
    contribution_cap: int
    noise_multiplier: float
    sample_rate: float
    steps: int
    max_grad_norm: float
    delta: float
    epsilon: float  # latest claim (complete() may restate it)
    charged_epsilon: float  # claim at start, when the budget was charged
    accountant: str
    accountant_version: str
    secure_mode: bool
    status: str
    who: str
    started_at: str
    updated_at: str
    code_version: str
    note: str
    first_seq: int
    last_seq: int

    @property
    def private(self) -> bool:
        return is_private(self.charged_epsilon, self.privacy_unit)

    @property
    def mechanism(self) -> tuple[float, float, int]:
        """(noise_multiplier, sample_rate, steps) as the accountants take it; a run
        that is not private has noise 0 (epsilon infinite) whatever was recorded."""
        return (self.noise_multiplier if self.private else 0.0, self.sample_rate, self.steps)


# --- encoding and hashing --------------------------------------------------------


def _encode_float(x: float | None) -> float | str | None:
    if x is None:
        return None
    if math.isnan(x):
        raise ValueError("epsilon is NaN")
    return INF if math.isinf(x) else x


def _decode_float(x: Any) -> float | None:
    if x is None:
        return None
    if x == INF:
        return math.inf
    return float(x)


def canonical_json(d: dict[str, Any]) -> str:
    return json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def record_hash(d: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of a record without its `hash` key."""
    body = {k: v for k, v in d.items() if k != "hash"}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


# --- reading and verifying --------------------------------------------------------


@dataclass(frozen=True)
class _Line:
    number: int  # 1-based line number in the file
    data: dict[str, Any] | None  # None when the line is not a JSON object
    complete: bool  # ends with a newline


def _parse(raw: bytes) -> list[_Line]:
    if not raw:
        return []
    chunks = raw.split(b"\n")
    ends_with_newline = chunks[-1] == b""
    if ends_with_newline:
        chunks = chunks[:-1]
    lines = []
    for i, chunk in enumerate(chunks, start=1):
        complete = ends_with_newline or i < len(chunks)
        try:
            data = json.loads(chunk.decode("utf-8"))
            if not isinstance(data, dict) or not isinstance(data.get("seq"), int):
                data = None
            else:
                LedgerRecord.from_dict(data)  # every field there, with usable values
        except (UnicodeDecodeError, json.JSONDecodeError, TypeError, ValueError):
            data = None
        lines.append(_Line(i, data, complete))
    return lines


def _name(d: dict[str, Any]) -> str:
    return f"record seq {d.get('seq')} (run {d.get('run_id')})"


def _verify_lines(lines: list[_Line], expected_head: str | None = None) -> VerifyResult:
    problems: list[str] = []
    good = [ln for ln in lines if ln.data is not None]

    # 1. lines that are not records: truncated, garbled, blank, or cut before the newline
    last_seq_before: int | None = None
    garbled_after: dict[int | None, int] = {}  # seq of the record before -> garbled lines
    for ln in lines:
        if ln.data is None:
            where = ("before any record" if last_seq_before is None
                     else f"after seq {last_seq_before}")
            problems.append(f"line {ln.number} ({where}) is truncated or garbled: "
                            "not a ledger record")
            garbled_after[last_seq_before] = garbled_after.get(last_seq_before, 0) + 1
        else:
            if not ln.complete:
                problems.append(f"line {ln.number} ({_name(ln.data)}) has no line end: "
                                "the file was cut after it or an append did not finish")
            last_seq_before = ln.data["seq"]

    # 2. each record's own hash: any edited field breaks it
    stored: dict[int, str] = {}
    for ln in good:
        d = ln.data
        if d.get("hash") != record_hash(d):
            problems.append(f"{_name(d)} at line {ln.number} was edited: its hash does not "
                            "match its content")
        if d["seq"] in stored:
            problems.append(f"{_name(d)} at line {ln.number} repeats seq {d['seq']}")
        else:
            stored[d["seq"]] = d.get("hash", "")

    # 3. order in the file
    for a, b in zip(good, good[1:], strict=False):
        if b.data["seq"] < a.data["seq"]:
            problems.append(f"records are out of order: seq {a.data['seq']} (line {a.number}) "
                            f"comes before seq {b.data['seq']} (line {b.number})")

    # 4. missing records (gaps in seq), not counting gaps a garbled line already explains
    present = sorted(stored)
    if present and present[0] != 1:
        missing = present[0] - 1 - garbled_after.get(None, 0)
        if missing > 0:
            problems.append(f"the first record{'s' if missing > 1 else ''} "
                            f"(seq 1{f' to {present[0] - 1}' if missing > 1 else ''}) "
                            f"{'are' if missing > 1 else 'is'} missing")
    for a, b in zip(present, present[1:], strict=False):
        missing = b - a - 1 - garbled_after.get(a, 0)
        if missing == 1:
            problems.append(f"record after seq {a} is missing (seq {a + 1})")
        elif missing > 1:
            problems.append(f"{missing} records after seq {a} are missing "
                            f"(seq {a + 1} to {b - 1})")

    # 5. links: each record names the hash of the one before it
    by_seq = {ln.data["seq"]: ln for ln in reversed(good)}  # first occurrence wins
    for seq in present:
        d = by_seq[seq].data
        if seq == 1 and d.get("prev_hash") != GENESIS:
            problems.append(f"{_name(d)} is first but does not start the chain "
                            "(prev_hash is not the genesis value)")
        elif seq - 1 in stored and d.get("prev_hash") != stored[seq - 1]:
            problems.append(f"{_name(by_seq[seq - 1].data)} was replaced or rewritten: "
                            f"seq {seq} no longer links to it (prev_hash mismatch)")

    head = stored[present[-1]] if present else GENESIS
    if expected_head is not None and expected_head != GENESIS \
            and expected_head not in stored.values():
        problems.append(f"the anchored head hash {expected_head[:16]}... is not in the ledger: "
                        "records at its end were removed or the file was rewritten")
    return VerifyResult(ok=not problems, records=len(good), head_hash=head, problems=problems)


@contextmanager
def _locked(path: Path, *, exclusive: bool) -> Iterator[BinaryIO | None]:
    """The ledger file under flock (exclusive for appenders, shared for readers).
    Yields None for a reader when the file does not exist yet."""
    if not exclusive and not path.exists():
        yield None
        return
    if exclusive:
        path.parent.mkdir(parents=True, exist_ok=True)
    created = exclusive and not path.exists()
    with open(path, "a+b" if exclusive else "rb") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            if created:  # make the new directory entry durable too
                dir_fd = os.open(path.parent, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
            yield fh
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _read_lines(fh: BinaryIO | None) -> list[_Line]:
    if fh is None:
        return []
    fh.seek(0)
    return _parse(fh.read())


def verify(path: Path, *, expected_head: str | None = None) -> VerifyResult:
    """Walk the chain and name every problem: an edited record (hash mismatch),
    a missing one (seq gap / broken link), reordered or repeated records, a
    truncated or garbled line. `expected_head`: a head hash kept elsewhere
    earlier; it must still be in the chain (catches removal of the last records)."""
    with _locked(Path(path), exclusive=False) as fh:
        return _verify_lines(_read_lines(fh), expected_head)


def read_verified(path: Path, *, expected_head: str | None = None,
                  ) -> tuple[VerifyResult, list[LedgerRecord]]:
    """One consistent read: the verification result and every record that parses."""
    with _locked(Path(path), exclusive=False) as fh:
        lines = _read_lines(fh)
    return (_verify_lines(lines, expected_head),
            [LedgerRecord.from_dict(ln.data) for ln in lines if ln.data])


def read_records(path: Path) -> list[LedgerRecord]:
    """Every line that parses as a record, in file order (damage is `verify`'s job)."""
    with _locked(Path(path), exclusive=False) as fh:
        return [LedgerRecord.from_dict(ln.data) for ln in _read_lines(fh) if ln.data]


# --- appending -------------------------------------------------------------------


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in some containers
        return f"uid {os.getuid()}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def code_version(repo_dir: Path | None) -> str:
    """`git rev-parse HEAD` of the repository holding `repo_dir`, else "unknown"."""
    if repo_dir is None:
        return "unknown"
    repo_dir = Path(repo_dir).resolve()
    if not any((p / ".git").exists() for p in (repo_dir, *repo_dir.parents)):
        return "unknown"
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_dir, capture_output=True,
                             text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else "unknown"


Build = Callable[[list[LedgerRecord]], dict[str, Any]]


def append_with(*, ledger_path: Path, build: Build,
                after: Callable[[LedgerRecord], None] | None = None) -> LedgerRecord:
    """Append one record, atomically with respect to other appenders.

    Under an exclusive lock: verify the chain (a damaged ledger refuses every
    append: fail closed), call `build(records)` with the current records (it
    returns the new record's fields, or raises to refuse), append with seq and
    prev_hash filled in, fsync, then call `after(record)` while still locked.
    """
    ledger_path = Path(ledger_path)
    with _locked(ledger_path, exclusive=True) as fh:
        lines = _read_lines(fh)
        check = _verify_lines(lines)
        if not check.ok:
            raise LedgerError(
                f"The privacy ledger {ledger_path} failed verification, so nothing more is "
                "recorded until the data steward has looked at it (`clearmark audit verify`):\n  "
                + "\n  ".join(check.problems))
        records = [LedgerRecord.from_dict(ln.data) for ln in lines if ln.data]
        values = {"details": {}, **build(records)}
        values.setdefault("who", _who())
        values.setdefault("when", _now())  # after build: it may take a while (accountant)
        values.update(seq=max((r.seq for r in records), default=0) + 1,
                      prev_hash=check.head_hash, hash="")
        d = LedgerRecord(**values).to_dict()
        d["hash"] = record_hash(d)
        line = json.dumps(d, ensure_ascii=False, allow_nan=False) + "\n"
        fh.seek(0, os.SEEK_END)
        fh.write(line.encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())
        record = LedgerRecord.from_dict(d)
        if after is not None:
            after(record)
        return record


# --- runs ------------------------------------------------------------------------


def summarize(records: list[LedgerRecord]) -> list[RunSummary]:
    """Latest status per run (spend records only), in the order runs started."""
    first: dict[str, LedgerRecord] = {}
    last: dict[str, LedgerRecord] = {}
    for r in sorted(records, key=lambda r: r.seq):
        if not r.is_spend:
            continue
        first.setdefault(r.run_id, r)
        last[r.run_id] = r
    out = []
    for run_id, s in first.items():
        e = last[run_id]
        out.append(RunSummary(
            run_id=run_id, dataset=s.dataset, dataset_fingerprint=s.dataset_fingerprint,
            artefact_kind=s.artefact_kind, privacy_unit=s.privacy_unit or NO_UNIT,
            contribution_cap=s.contribution_cap or 0,
            noise_multiplier=s.noise_multiplier or 0.0, sample_rate=s.sample_rate or 0.0,
            steps=s.steps or 0, max_grad_norm=s.max_grad_norm or 0.0, delta=s.delta or 0.0,
            epsilon=e.epsilon if e.epsilon is not None else math.inf,
            charged_epsilon=s.epsilon if s.epsilon is not None else math.inf,
            accountant=s.accountant or "", accountant_version=s.accountant_version or "",
            secure_mode=bool(s.secure_mode), status=e.status, who=s.who,
            started_at=s.when, updated_at=e.when, code_version=s.code_version,
            note=e.note, first_seq=s.seq, last_seq=e.seq))
    return out


def runs(ledger_path: Path) -> list[RunSummary]:
    """Latest status per run, with the spend parameters it was charged with."""
    return summarize(read_records(ledger_path))


def _transition(*, ledger_path: Path, run_id: str, status: str, epsilon: float | None,
                note: str) -> LedgerRecord:
    def build(records: list[LedgerRecord]) -> dict[str, Any]:
        mine = [r for r in records if r.run_id == run_id and r.is_spend]
        if not mine:
            raise LedgerError(f"no run {run_id} in the ledger: charge() it first")
        latest = max(mine, key=lambda r: r.seq)
        if latest.status != "started":
            raise LedgerError(f"run {run_id} is already {latest.status} "
                              f"(seq {latest.seq}); a finished run does not change again")
        values = {f.name: getattr(latest, f.name) for f in fields(LedgerRecord)
                  if f.name not in ("seq", "who", "when", "prev_hash", "hash")}
        values.update(status=status, note=note)
        if epsilon is not None:
            if math.isnan(epsilon) or epsilon < 0:
                raise ValueError(f"epsilon must be >= 0, got {epsilon}")
            values["epsilon"] = float(epsilon)
        return values

    return append_with(ledger_path=ledger_path, build=build)


def complete(*, ledger_path: Path, run_id: str, epsilon: float | None = None,
             note: str = "") -> LedgerRecord:
    """Record that a started run finished; `epsilon` restates its final spend
    (the budget stays charged with the parameters given at start)."""
    return _transition(ledger_path=ledger_path, run_id=run_id, status="completed",
                       epsilon=epsilon, note=note)


def fail(*, ledger_path: Path, run_id: str, note: str = "") -> LedgerRecord:
    """Record that a started run failed. It stays charged: the data was touched."""
    return _transition(ledger_path=ledger_path, run_id=run_id, status="failed",
                       epsilon=None, note=note)
