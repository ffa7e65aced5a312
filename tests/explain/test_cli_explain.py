"""`clearmark explain`, `explain-export` (core.cli.explain, registered like the other
extensions)."""

from __future__ import annotations

import csv

import pytest

from core.cli import main as cli
from tests.explain.conftest import EXPLAIN_USERS, PAYLOADS, TINY_RUN


@pytest.fixture
def main(monkeypatch):
    if "core.cli.explain" not in cli.EXTENSIONS:  # until the lead wires it in core.cli.main
        monkeypatch.setattr(cli, "EXTENSIONS", (*cli.EXTENSIONS, "core.cli.explain"))
    return cli.main


def test_explain_prints_reasons_and_writes_csv(explain_warehouse, main, capsys, tmp_path):
    out = tmp_path / "one.csv"
    code = main(["explain", EXPLAIN_USERS[1], "--run", TINY_RUN, "--k", "2",
                 "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    assert text.count("shap-field: score") == 2
    assert "because of" in text or "raises the score" in text or "No single field" in text
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert rows and {r["pseudonym"] for r in rows} == {EXPLAIN_USERS[1]}


def test_explain_one_item_by_attention_and_by_tokens(explain_warehouse, main, capsys):
    code = main(["explain", EXPLAIN_USERS[2], "--run", TINY_RUN, "--item", "i_007",
                 "--method", "attention-rollout"])
    text = capsys.readouterr().out
    assert code == 0 and "where the model looked, not a cause" in text
    code = main(["explain", EXPLAIN_USERS[2], "--run", TINY_RUN, "--item", "i_007",
                 "--method", "shap-token", "--field", "item_title"])
    assert code == 0, capsys.readouterr()


def test_explain_problems_exit_2(explain_warehouse, main, capsys):
    assert main(["explain", "u_nobody", "--run", TINY_RUN]) == 2
    assert "no customer 'u_nobody'" in capsys.readouterr().err
    assert main(["explain", EXPLAIN_USERS[0], "--run", TINY_RUN, "--method",
                 "shap-token"]) == 2
    assert "--field" in capsys.readouterr().err
    assert main(["explain", EXPLAIN_USERS[0], "--run", "no_such_run"]) == 2


def test_explain_export_audience_and_all(explain_warehouse, main, capsys, tmp_path):
    audience = tmp_path / "audience.txt"
    audience.write_text("\n".join(EXPLAIN_USERS[:2]) + "\n")
    out = tmp_path / "audience.csv"
    assert main(["explain-export", "--audience", str(audience), "--out", str(out),
                 "--run", TINY_RUN, "--k", "2"]) == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert {r["pseudonym"] for r in rows} == set(EXPLAIN_USERS[:2])
    everyone = tmp_path / "all.csv"
    assert main(["explain-export", "--all", "--out", str(everyone), "--run", TINY_RUN,
                 "--k", "1"]) == 0
    rows = list(csv.DictReader(everyone.open(encoding="utf-8")))
    assert {r["pseudonym"] for r in rows} == set(EXPLAIN_USERS)
    titles = {r["item_title"] for r in rows}
    assert not any(t.startswith(tuple("=+@\t\r")) for t in titles)
    assert all(("'" + p) in titles or p not in titles for p in PAYLOADS)
    assert main(["explain-export", "--out", str(everyone)]) == 2
    assert "--audience" in capsys.readouterr().err
