"""Canaries: personal data planted in raw input must be found nowhere after ingest.

The search covers every text column of every table and the raw bytes of the
warehouse file, its WAL and its read snapshot. The same search run on an
ingest with pseudonymization and scrubbing switched off must find canaries:
otherwise the search itself would be blind and the test worthless.
"""

from pathlib import Path

import pytest

import core.ingest.pipeline
from core.config import Paths
from core.ingest.pipeline import ingest
from core.store.warehouse import read_connection

KEY = bytes(range(32))
CANARIES = {
    "customer id": "CANARY-CUST-90210",
    "name": "Zebulon Quaxworthy",
    "first name": "Zebulon",
    "email": "zeb.quax@canary-mail.org",
    "phone": "+1 415-555-0189",
    "card": "4539 1488 0343 6467",
    "address": "17 Canary Wharf Lane",
}
CUSTOMERS_MAPPING = """
table = "customers"
[columns]
customer_id = "id"
name = "full_name"
email = "email"
phone = "phone"
address = "street"
age = "age"
city = "city"
signup_date = "signed_up"
"""
REVIEWS_MAPPING = """
table = "reviews"
[columns]
customer_id = "id"
name = "display_name"
item_id = "sku"
rating = "stars"
timestamp = "when"
summary = "headline"
text = "body"
"""
EVENTS_MAPPING = """
table = "events"
[columns]
customer_id = "id"
item_id = "sku"
timestamp = "when"
"""


def plant_raw_files(folder: Path) -> None:
    c = CANARIES
    folder.mkdir()
    rows = [f'{c["customer id"]},{c["name"]},{c["email"]},{c["phone"]},"{c["address"]}",'
            f'34,Berlin,2024-02-11,{c["card"]}']
    rows += [f"C{i},Person {i},p{i}@x.org,555-000{i % 10},Road {i},35,Berlin,2024-02-1{i % 9},"
             for i in range(12)]
    (folder / "customers.csv").write_text(
        "id,full_name,email,phone,street,age,city,signed_up,card_number\n"
        + "\n".join(rows) + "\n")
    (folder / "customers.mapping.toml").write_text(CUSTOMERS_MAPPING)
    (folder / "events.csv").write_text(
        "id,sku,when\n" f'{c["customer id"]},P1,2024-03-01T10:00:00\nC1,P2,2024-03-02T10:00:00\n')
    (folder / "events.mapping.toml").write_text(EVENTS_MAPPING)
    body = (f'Hi, {c["name"]} here. Call {c["phone"]} or mail {c["email"]}; '
            f'paid with {c["card"]}. {c["first name"]} loves it.')
    (folder / "reviews.csv").write_text(
        "id,display_name,sku,stars,when,headline,body\n"
        f'{c["customer id"]},{c["name"]},P1,5,2024-03-03T10:00:00,'
        f'"Thanks from {c["first name"]}","{body}"\n')
    (folder / "reviews.mapping.toml").write_text(REVIEWS_MAPPING)


def find_canaries(paths: Paths) -> dict[str, list[str]]:
    """Where each canary occurs: 'table.column' or the name of a file."""
    hits: dict[str, list[str]] = {name: [] for name in CANARIES}
    with read_connection(paths) as con:
        columns = con.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE data_type = 'VARCHAR'").fetchall()
        for table, column in columns:
            for name, value in CANARIES.items():
                found = con.execute(
                    f'SELECT count(*) FROM "{table}" WHERE lower("{column}") LIKE $v',
                    {"v": f"%{value.lower()}%"}).fetchone()[0]
                if found:
                    hits[name].append(f"{table}.{column}")
    files = [p for p in paths.warehouse.parent.glob(paths.warehouse.name + "*")]
    files += list(paths.snapshot.parent.glob(paths.snapshot.name + "*"))
    for path in files:
        data = path.read_bytes().lower()
        for name, value in CANARIES.items():
            if value.lower().encode() in data:
                hits[name].append(path.name)
    return {name: where for name, where in hits.items() if where}


def test_no_canary_reaches_the_warehouse(warehouse_paths, tmp_path):
    plant_raw_files(tmp_path / "raw")
    results = ingest([tmp_path / "raw"], key=KEY, paths=warehouse_paths, progress=False)
    assert sum(r.rows_accepted for r in results) == 13 + 2 + 1  # everything arrived
    assert find_canaries(warehouse_paths) == {}


def test_the_search_finds_canaries_when_protection_is_off(warehouse_paths, tmp_path,
                                                          monkeypatch):
    monkeypatch.setattr(core.ingest.pipeline, "pseudonymize", lambda ids, key: list(ids))
    monkeypatch.setattr(core.ingest.pipeline, "scrub_many",
                        lambda texts, names=None: (list(texts), {}))
    plant_raw_files(tmp_path / "raw")
    ingest([tmp_path / "raw"], key=KEY, paths=warehouse_paths, progress=False)
    hits = find_canaries(warehouse_paths)
    assert "users.user_pseudonym" in hits["customer id"]
    assert "reviews.text" in hits["email"]
    assert "reviews.text" in hits["card"]
    with pytest.raises(AssertionError):
        assert find_canaries(warehouse_paths) == {}
