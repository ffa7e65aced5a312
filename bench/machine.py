"""The machine description every benchmark result carries."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
# Set by `bench.suite --quick` for its children: their results are written as
# <name>_quick, so that a smoke run never replaces a full run's result.
QUICK_ENV = "CLEARMARK_BENCH_QUICK"


def describe() -> dict[str, object]:
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in
                   Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or "unknown"
    try:
        mem_kb = next(int(line.split()[1]) for line in
                      Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal"))
        memory = f"{mem_kb / 1024 ** 2:.1f} GiB"
    except (OSError, StopIteration):
        memory = "unknown"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, cwd=RESULTS.parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(),
            "memory": memory, "python": sys.version.split()[0], "gpu": "none",
            "code_version": commit or "unknown",
            "when": datetime.now(UTC).isoformat(timespec="seconds")}


def result_name(name: str) -> str:
    """`name`, or `name` + "_quick" under `QUICK_ENV`."""
    if os.environ.get(QUICK_ENV) and not name.endswith("_quick"):
        return f"{name}_quick"
    return name


def write_result(name: str, result: dict[str, object]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{result_name(name)}.json"
    path.write_text(json.dumps({"machine": describe(), **result}, indent=2, default=str) + "\n")
    return path
