"""Configuration: one frozen dataclass per concern, passed explicitly."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def default_data_dir() -> Path:
    """`CLEARMARK_DATA` if set, else `data/` in the project."""
    return Path(os.environ.get("CLEARMARK_DATA", PROJECT_ROOT / "data"))


@dataclass(frozen=True)
class Paths:
    """Where things live on disk. The warehouse holds no personal data; the
    quarantine (raw bad rows, for the steward) and the key live outside it."""

    data_dir: Path = field(default_factory=default_data_dir)

    @property
    def warehouse(self) -> Path:
        return Path(os.environ.get("CLEARMARK_WAREHOUSE", self.data_dir / "warehouse.duckdb"))

    @property
    def snapshot(self) -> Path:
        """Read-only copy published after every write, for the app."""
        return self.warehouse.with_name(self.warehouse.stem + ".read.duckdb")

    @property
    def quarantine_dir(self) -> Path:
        return self.data_dir / "quarantine"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def ledger(self) -> Path:
        return self.data_dir / "privacy_ledger.jsonl"

    @property
    def budgets(self) -> Path:
        """The steward's privacy budgets (`clearmark budget set`)."""
        return self.data_dir / "privacy_budgets.json"

    @property
    def dataset(self) -> str:
        """The ledger's dataset: the warehouse (its file stem). Every model trained on
        the warehouse's customers is charged to this one name, so their spends compose
        against one budget."""
        return self.warehouse.stem

    @property
    def raw_demo_dir(self) -> Path:
        return self.data_dir / "raw" / "demo"


@dataclass(frozen=True)
class PrivacyConfig:
    """Privacy floors applied at ingest and on every page."""

    k_anonymity: int = 5  # smallest allowed group of quasi-identifier values
    min_cell_size: int = 10  # smallest aggregate over customers shown anywhere
    max_future_skew_days: int = 1  # timestamps later than now + this are rejected
    earliest_year: int = 1995  # timestamps before this are rejected


TORCH_THREADS = 2  # the target machine has 2 cores; more threads only contend


def use_cpu_threads(threads: int = TORCH_THREADS) -> None:
    """Set torch's intra-op threads once per process, at an entry point (the CLI, the
    server, a benchmark); library code leaves the process-wide setting alone."""
    import torch

    torch.set_num_threads(threads)
