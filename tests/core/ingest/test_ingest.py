"""Ingest: every line accounted for, bad rows quarantined, one transaction."""

import csv
import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from core.ingest.pipeline import ingest
from core.ingest.readers import SourceError
from core.store.warehouse import query, read_connection, table_counts

KEY = bytes(range(32))
SHARED = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "amazon-2018"

EVENTS_MAPPING = """
table = "events"
[columns]
customer_id = "cust"
item_id = "sku"
timestamp = "when"
event_type = "kind"
promotion = "promo"
"""


def write_events(tmp_path: Path, rows: list[str], name: str = "events.csv") -> Path:
    path = tmp_path / name
    path.write_text("cust,sku,when,kind,promo,email\n" + "\n".join(rows) + "\n")
    (tmp_path / name.replace(".csv", ".mapping.toml")).write_text(EVENTS_MAPPING)
    return path


def rejected_lines(result) -> dict[int, str]:
    with open(result.quarantine_file, newline="") as f:
        return {int(r["line"]): r["reason"] for r in csv.DictReader(f)}


def test_mapped_csv_events_are_pseudonymized_and_identifiers_dropped(warehouse_paths, tmp_path):
    path = write_events(tmp_path, [
        "C1,P1,2024-05-01T10:00:00,view,0,ann@example.com",
        "C1,P1,2024-05-01T10:05:00,purchase,1,ann@example.com",
        "C2,P2,2024-05-02 11:00,Add-To-Cart,no,bob@example.com",
    ])
    [result] = ingest([path], key=KEY, paths=warehouse_paths, progress=False)
    assert (result.rows_read, result.rows_accepted, result.rows_rejected) == (3, 3, 0)
    assert "email" in result.dropped_columns
    events = query("events_by_type_month", warehouse_paths)
    assert set(events["event_type"]) == {"view", "purchase", "add_to_cart"}
    with read_connection(warehouse_paths) as con:
        users = [u for (u,) in con.execute("SELECT user_pseudonym FROM users").fetchall()]
        promo = con.execute("SELECT promotion FROM events ORDER BY ts").fetchall()
    assert len(users) == 2 and all(u.startswith("u_") and "C1" not in u for u in users)
    assert [p for (p,) in promo] == [False, True, False]


def test_each_bad_input_is_quarantined_with_its_reason_and_good_rows_kept(
        warehouse_paths, tmp_path):
    path = write_events(tmp_path, [
        "C1,P1,2024-05-01T10:00:00,view,0,x",        # line 2: good
        ",P1,2024-05-01T10:00:00,view,0,x",          # 3: missing customer id
        "C1,P1,yesterday-ish,view,0,x",              # 4: bad timestamp
        "C1,P1,2099-01-01T00:00:00,view,0,x",        # 5: future
        "C1,P1,1990-01-01T00:00:00,view,0,x",        # 6: before 1995
        "C1,P1,2024-05-01T10:00:00,teleport,0,x",    # 7: unknown event type
        "C1,P1,2024-05-01T10:00:00,view,maybe,x",    # 8: promotion not boolean
        "C1,P1,2024-05-01T10:00:00,view,0,x",        # 9: duplicate of line 2
        "C1,P1",                                     # 10: too few fields
        "C3,P3,2024-06-01T09:00:00,purchase,1,x",    # 11: good
    ])
    with path.open("ab") as f:
        f.write(b"C\xff4,P4,2024-06-01T09:00:00,purchase,1,x\n")  # 12: not UTF-8
    [result] = ingest([path], key=KEY, paths=warehouse_paths, progress=False)
    assert result.rows_read == 11
    assert result.rows_accepted == 2
    assert result.rows_accepted + result.rows_rejected == result.rows_read
    reasons = rejected_lines(result)
    assert reasons[3] == "missing customer_id"
    assert reasons[4] == "timestamp not understood"
    assert reasons[5] == "timestamp in the future"
    assert reasons[6] == "timestamp before 1995"
    assert reasons[7].startswith("unknown event type")
    assert reasons[8] == "promotion is not true/false"
    assert reasons[9] == "duplicate record"
    assert reasons[10] == "2 fields where the header has 6"
    assert reasons[12] == "not valid UTF-8"
    assert table_counts(warehouse_paths)["events"] == 2
    counts = query("rejections_by_reason", warehouse_paths)
    assert int(counts["rows"].sum()) == 9


def test_rating_checks_and_unparseable_json_lines(warehouse_paths, tmp_path):
    path = tmp_path / "reviews.jsonl"
    good = {"reviewerID": "A1", "asin": "B1", "overall": 5.0, "reviewText": "Great",
            "summary": "ok", "unixReviewTime": 1529193600, "reviewerName": "Ann Lee"}
    lines = [json.dumps(good),
             json.dumps({**good, "overall": 7}),
             json.dumps({**good, "overall": "five"}),
             "{not json",
             json.dumps([1, 2]),
             json.dumps({**good, "asin": None})]
    path.write_text("\n".join(lines) + "\n")
    [result] = ingest([path], key=KEY, paths=warehouse_paths, progress=False)
    reasons = rejected_lines(result)
    assert result.source_format == "amazon-2018-reviews"
    assert reasons == {2: "rating out of range 1-5", 3: "rating is not a number",
                       4: "not valid JSON (Expecting property name enclosed in double quotes)",
                       5: "not a JSON object", 6: "missing item_id"}
    assert table_counts(warehouse_paths)["reviews"] == 1


def test_same_file_twice_adds_nothing(warehouse_paths, tmp_path):
    path = write_events(tmp_path, ["C1,P1,2024-05-01T10:00:00,view,0,x"])
    ingest([path], key=KEY, paths=warehouse_paths, progress=False)
    before = table_counts(warehouse_paths)
    [again] = ingest([path], key=KEY, paths=warehouse_paths, progress=False)
    assert "already ingested" in again.skipped_reason
    assert table_counts(warehouse_paths) == before


def test_rows_already_stored_from_another_file_are_duplicates(warehouse_paths, tmp_path):
    first = write_events(tmp_path, ["C1,P1,2024-05-01T10:00:00,view,0,x"], "a.csv")
    second = write_events(tmp_path, ["C1,P1,2024-05-01T10:00:00,view,0,y",
                                     "C2,P1,2024-05-01T10:00:00,view,0,y"], "b.csv")
    ingest([first], key=KEY, paths=warehouse_paths, progress=False)
    [result] = ingest([second], key=KEY, paths=warehouse_paths, progress=False)
    assert result.rejected == {"duplicate record": 1}
    assert table_counts(warehouse_paths)["events"] == 2


@pytest.mark.parametrize("content, message", [
    (b"", "the file is empty"),
    (b"a,b,c\n1,2,3\n4,5,6\n" * 10, "does not look like JSON lines"),
])
def test_unreadable_file_fails_naming_it(warehouse_paths, tmp_path, content, message):
    path = tmp_path / "reviews.jsonl"
    path.write_bytes(content)
    with pytest.raises(SourceError, match=message) as err:
        ingest([path], key=KEY, paths=warehouse_paths, progress=False)
    assert str(path) in str(err.value)


def test_binary_file_named_csv_fails(warehouse_paths, tmp_path):
    path = write_events(tmp_path, [])
    path.write_bytes(bytes(range(256)) * 20)
    with pytest.raises(SourceError, match="binary data"):
        ingest([path], key=KEY, paths=warehouse_paths, progress=False)


def test_truncated_gzip_fails(warehouse_paths, tmp_path):
    path = tmp_path / "reviews.json.gz"
    body = gzip.compress(b'{"reviewerID": "A", "asin": "B", "overall": 5}\n' * 5000)
    path.write_bytes(body[: len(body) // 2])
    with pytest.raises(SourceError, match="damaged or truncated"):
        ingest([path], key=KEY, paths=warehouse_paths, progress=False)


def test_failed_run_leaves_the_warehouse_as_it_was(warehouse_paths, tmp_path):
    ingest([write_events(tmp_path, ["C1,P1,2024-05-01T10:00:00,view,0,x"], "a.csv")],
           key=KEY, paths=warehouse_paths, progress=False)
    before = table_counts(warehouse_paths)
    good = write_events(tmp_path, ["C9,P9,2024-05-03T10:00:00,view,0,x",
                                   ",P9,2024-05-03T10:00:00,view,0,x"], "b.csv")
    empty = tmp_path / "c.csv"
    empty.write_bytes(b"")
    (tmp_path / "c.mapping.toml").write_text(EVENTS_MAPPING)
    with pytest.raises(SourceError):
        ingest([good, empty], key=KEY, paths=warehouse_paths, progress=False)
    assert table_counts(warehouse_paths) == before
    assert list(warehouse_paths.quarantine_dir.glob("*b.csv*")) == []


def test_parquet_with_mapping(warehouse_paths, tmp_path):
    path = tmp_path / "orders.parquet"
    pd.DataFrame({"cust": ["C1", "C2"], "sku": ["P1", "P2"],
                  "when": [1714557600, 1714644000], "kind": ["purchase", "purchase"],
                  "promo": [True, False]}).to_parquet(path)
    (tmp_path / "orders.mapping.toml").write_text(EVENTS_MAPPING)
    [result] = ingest([path], key=KEY, paths=warehouse_paths, progress=False)
    assert result.rows_accepted == 2
    assert table_counts(warehouse_paths)["events"] == 2


def test_mapping_mistakes_are_explained(warehouse_paths, tmp_path):
    path = write_events(tmp_path, ["C1,P1,2024-05-01T10:00:00,view,0,x"])
    bad = tmp_path / "bad.toml"
    bad.write_text('table = "events"\n[columns]\nitem_id = "sku"\n')
    with pytest.raises(SourceError, match="needs a column for"):
        ingest([path], key=KEY, paths=warehouse_paths, mapping=bad, progress=False)


def test_amazon_2023_format(warehouse_paths, tmp_path):
    reviews = tmp_path / "Toys.jsonl"
    reviews.write_text("\n".join(json.dumps(r) for r in [
        {"user_id": "AGX1", "parent_asin": "B01", "asin": "B01a", "rating": 4.0,
         "title": "Nice", "text": "Mail me at kid@example.com", "timestamp": 1588615855070,
         "verified_purchase": True, "helpful_vote": 2},
        {"user_id": "AGX2", "parent_asin": "B01", "asin": "B01b", "rating": 2.0,
         "title": "Meh", "text": "Broke fast", "timestamp": 1588615855999,
         "verified_purchase": False, "helpful_vote": 0},
    ]) + "\n")
    meta = tmp_path / "meta_Toys.jsonl"
    meta.write_text(json.dumps({"parent_asin": "B01", "main_category": "Toys", "title": "Robot",
                                "features": ["Walks"], "description": [], "price": 19.99,
                                "categories": ["Toys", "Robots"], "store": "RoboCo"}) + "\n")
    results = ingest([reviews, meta], key=KEY, paths=warehouse_paths, progress=False)
    assert {r.source_format for r in results} == {"amazon-2023-reviews", "amazon-2023-meta"}
    with read_connection(warehouse_paths) as con:
        item = con.execute(
            "SELECT title, brand, category, price, description FROM items").fetchall()
        texts = [t for (t,) in con.execute("SELECT text FROM reviews ORDER BY ts").fetchall()]
        ts = con.execute("SELECT min(ts) FROM reviews").fetchone()[0]
    assert item == [("Robot", "RoboCo", "Robots", 19.99, "Walks")]
    assert texts[0] == "Mail me at [EMAIL]"
    assert ts.year == 2020


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data/amazon-2018 is not on this machine")
def test_shared_amazon_2018_every_line_accounted_for(warehouse_paths):
    results = ingest([SHARED], key=KEY, paths=warehouse_paths, progress=False)
    for r in results:
        with gzip.open(SHARED / r.source, "rb") as f:
            lines = sum(1 for _ in f)
        assert r.rows_read == lines
        assert r.rows_accepted + r.rows_rejected == lines
    before = table_counts(warehouse_paths)
    again = ingest([SHARED], key=KEY, paths=warehouse_paths, progress=False)
    assert all(r.skipped_reason for r in again)
    assert table_counts(warehouse_paths) == before
