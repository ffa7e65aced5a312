"""The command line: help for every subcommand, clear errors, exit codes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.cli.main import build_parser, main


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    return subprocess.run([sys.executable, "-m", "core.cli", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, cwd=cwd, timeout=600)


def test_help_explains_each_subcommand(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for command in ("key", "generate", "ingest", "demo", "app", "status"):
        assert command in out
    parser = build_parser()
    for action in parser._subparsers._group_actions:
        for name, sub in action.choices.items():
            assert sub.description, f"`clearmark {name}` has no description"


def test_missing_file_exits_2_naming_it(warehouse_paths, pseudonym_key, capsys):
    assert main(["ingest", "--quiet", "/nonexistent/orders.csv"]) == 2
    assert "/nonexistent/orders.csv: no such file" in capsys.readouterr().err


def test_missing_key_exits_2_saying_how_to_create_one(warehouse_paths, monkeypatch, tmp_path,
                                                      capsys):
    monkeypatch.delenv("CLEARMARK_KEY", raising=False)
    monkeypatch.setenv("CLEARMARK_KEY_FILE", str(tmp_path / "absent.key"))
    assert main(["ingest", "--quiet", str(tmp_path)]) == 2
    assert "clearmark key create" in capsys.readouterr().err


def test_demo_builds_the_warehouse_with_a_demo_key_outside_it(tmp_path):
    home, data = tmp_path / "home", tmp_path / "data"
    env = {"HOME": str(home), "CLEARMARK_DATA": str(data), "CLEARMARK_KEY": "",
           "CLEARMARK_KEY_FILE": ""}
    env = {k: v for k, v in {**os.environ, **env}.items() if v != ""}
    done = subprocess.run([sys.executable, "-m", "core.cli", "demo", "--no-app", "--skip-models",
                           "--customers", "300"], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert "Created a demo pseudonymization key" in done.stdout
    assert (home / ".config" / "clearmark" / "demo.key").exists()
    assert (data / "warehouse.read.duckdb").exists()
    assert not list(data.rglob("*.key"))
