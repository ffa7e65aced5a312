"""Keyed pseudonyms for customer ids (HMAC-SHA256).

The key is a secret of at least 256 bits held by the data steward, outside
the warehouse and the repository. The same key always gives the same
pseudonym, so data ingested on different days links up; without the key a
pseudonym cannot be turned back into a customer id, not even by guessing
ids (a plain hash could be reversed by hashing every plausible id).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

KEY_ENV = "CLEARMARK_KEY"  # the key itself, as hex
KEY_FILE_ENV = "CLEARMARK_KEY_FILE"  # or a file holding it
DEFAULT_KEY_FILE = Path.home() / ".config" / "clearmark" / "pseudonym.key"
DEMO_KEY_FILE = Path.home() / ".config" / "clearmark" / "demo.key"
MIN_KEY_BYTES = 32  # 256 bits
PREFIX = "u_"
HEX_CHARS = 32  # 128 bits of the HMAC: collisions are out of reach at any customer count


class PseudonymKeyError(RuntimeError):
    """The pseudonymization key is missing or unusable; the message says how to fix it."""


HOW_TO_CREATE = (
    "Create one with `clearmark key create` (writes {default}, readable by you only), "
    f"or set {KEY_FILE_ENV} to a key file, or {KEY_ENV} to 64+ hex characters. "
    "Keep the key outside the warehouse and the repository, and keep it safe: the same key "
    "is needed to link later ingests to the same pseudonyms."
)


def _parse_key(text: str, source: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError as exc:
        raise PseudonymKeyError(f"The key in {source} is not hex. " + HOW_TO_CREATE.format(
            default=DEFAULT_KEY_FILE)) from exc
    if len(key) < MIN_KEY_BYTES:
        raise PseudonymKeyError(
            f"The key in {source} has {len(key) * 8} bits; at least {MIN_KEY_BYTES * 8} are "
            "needed. " + HOW_TO_CREATE.format(default=DEFAULT_KEY_FILE)
        )
    return key


def _check_outside(path: Path, forbidden: Iterable[Path]) -> None:
    resolved = path.resolve()
    for root in forbidden:
        root = root.resolve()
        if resolved == root or root in resolved.parents:
            raise PseudonymKeyError(
                f"The key file {path} lies inside {root}. Move it outside the warehouse and "
                "the repository (e.g. to ~/.config/clearmark/) so it is never copied with them."
            )


def load_key(*, forbidden_dirs: Iterable[Path] = (), path: Path | None = None) -> bytes:
    """The key in `path` when given; else the steward's key: `CLEARMARK_KEY`, else
    `CLEARMARK_KEY_FILE`, else the default file."""
    if path is None and os.environ.get(KEY_ENV):
        return _parse_key(os.environ[KEY_ENV], f"${KEY_ENV}")
    path = Path(path or os.environ.get(KEY_FILE_ENV, DEFAULT_KEY_FILE))
    if not path.exists():
        raise PseudonymKeyError(
            f"No pseudonymization key: {path} does not exist. "
            + HOW_TO_CREATE.format(default=DEFAULT_KEY_FILE)
        )
    _check_outside(path, forbidden_dirs)
    return _parse_key(path.read_text(), str(path))


def create_key_file(path: Path) -> Path:
    """Write a fresh 256-bit key readable by the owner only; never overwrite one."""
    if path.exists():
        raise PseudonymKeyError(f"{path} already exists; refusing to overwrite a key (pseudonyms "
                        "made with it would no longer link up).")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(MIN_KEY_BYTES) + "\n")
    return path


def pseudonym(customer_id: str, *, key: bytes) -> str:
    """`u_` + the first 128 bits of HMAC-SHA256(key, id), hex."""
    digest = hmac.new(key, customer_id.encode("utf-8"), hashlib.sha256).hexdigest()
    return PREFIX + digest[:HEX_CHARS]


def pseudonymize(customer_ids: Iterable[str], *, key: bytes) -> list[str]:
    """Pseudonyms for a column of ids, computing each distinct id once."""
    ids = list(customer_ids)
    cache = {cid: pseudonym(cid, key=key) for cid in set(ids)}
    return [cache[cid] for cid in ids]
