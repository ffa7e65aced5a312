import stat

import pytest

from privacy.pseudonym import (
    PseudonymKeyError,
    create_key_file,
    load_key,
    pseudonym,
    pseudonymize,
)

KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))


def test_pseudonym_is_stable_and_keyed():
    assert pseudonym("C001", key=KEY_A) == pseudonym("C001", key=KEY_A)
    assert pseudonym("C001", key=KEY_A) != pseudonym("C001", key=KEY_B)
    assert pseudonym("C001", key=KEY_A) != pseudonym("C002", key=KEY_A)


def test_pseudonym_pinned_value():
    # HMAC-SHA256(key=00..1f, "C001"), first 128 bits: changing the scheme breaks links.
    import hashlib
    import hmac

    expected = "u_" + hmac.new(KEY_A, b"C001", hashlib.sha256).hexdigest()[:32]
    assert pseudonym("C001", key=KEY_A) == expected
    assert len(expected) == 34 and "C001" not in expected


def test_pseudonymize_column_matches_single():
    ids = ["a", "b", "a", "c"]
    assert pseudonymize(ids, key=KEY_A) == [pseudonym(i, key=KEY_A) for i in ids]


def test_missing_key_says_how_to_create(monkeypatch, tmp_path):
    monkeypatch.delenv("CLEARMARK_KEY", raising=False)
    monkeypatch.setenv("CLEARMARK_KEY_FILE", str(tmp_path / "nope.key"))
    with pytest.raises(PseudonymKeyError, match="clearmark key create"):
        load_key()


def test_short_key_is_refused(monkeypatch):
    monkeypatch.setenv("CLEARMARK_KEY", "ab" * 16)  # 128 bits
    with pytest.raises(PseudonymKeyError, match="at least 256"):
        load_key()


def test_key_file_round_trip_private_and_never_overwritten(monkeypatch, tmp_path):
    path = create_key_file(tmp_path / "k" / "pseudonym.key")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    monkeypatch.delenv("CLEARMARK_KEY", raising=False)
    monkeypatch.setenv("CLEARMARK_KEY_FILE", str(path))
    assert len(load_key()) == 32
    with pytest.raises(PseudonymKeyError, match="refusing to overwrite"):
        create_key_file(path)


def test_key_inside_the_warehouse_dir_is_refused(monkeypatch, tmp_path):
    path = create_key_file(tmp_path / "data" / "pseudonym.key")
    monkeypatch.delenv("CLEARMARK_KEY", raising=False)
    monkeypatch.setenv("CLEARMARK_KEY_FILE", str(path))
    with pytest.raises(PseudonymKeyError, match="outside the warehouse"):
        load_key(forbidden_dirs=(tmp_path / "data",))
