"""DP training on two torchrun workers (gloo): both train, end with the same weights, and
the run carries the single-process privacy plan, one ledger entry and a loadable model."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import Paths
from core.recommender.data import training_data
from core.recommender.planning import plan_run
from core.recommender.registry import list_runs, load
from core.recommender.spend import COUNTS_SUFFIX
from core.recommender.train import train
from privacy.accounting import compose_epsilon
from privacy.budget import set_budget
from privacy.ledger import read_records
from tests.core.recommender.test_train import TINY, TINY_MODEL, build_warehouse, quick

ROOT = Path(__file__).resolve().parents[3]  # the repository: torchrun runs from there
# 40 customers, 2 expected per step: q = 1/20, so each worker's 20 customers give an
# empty local batch in about a third of the steps (the path that must still step).
SETTINGS = dict(epsilon=3.0, epochs=1, batch_size=2, max_steps=6, eval_users=10, lr=1e-3)
FLAGS = ["--epsilon", "3", "--epochs", "1", "--batch-size", "2", "--max-steps", "6",
         "--eval-users", "10", "--lr", "1e-3"]


@pytest.fixture
def tiny_warehouse(warehouse_paths: Paths) -> Paths:
    build_warehouse(warehouse_paths)
    return warehouse_paths


def torchrun(paths: Paths, tmp_path: Path, *flags: str) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node 2 -m core.cli.train_distributed` on the tiny
    BERT (the hidden test flag) and the tiny ModelConfig of tests/core/test_train.py."""
    TINY.to_json_file(str(tmp_path / "bert.json"))
    (tmp_path / "model.json").write_text(json.dumps(TINY_MODEL.to_dict()))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",  # free port
               "--nproc_per_node", "2", "-m", "core.cli.train_distributed", *flags,
               "--quiet",
               "--model-config-json", str(tmp_path / "model.json"),
               "--random-bert-json", str(tmp_path / "bert.json")]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "CLEARMARK_DATA": str(paths.data_dir)})


@pytest.mark.parametrize("clipping", ["bookkeeping", "hooks"])
def test_two_workers_train_one_model_with_the_single_process_plan(tiny_warehouse, tmp_path,
                                                                 clipping):
    proc = torchrun(tiny_warehouse, tmp_path, *FLAGS, "--clipping", clipping)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = list_runs(tiny_warehouse)["run_id"].tolist()
    assert len(runs) == 1 and f"Trained {runs[0]}" in proc.stdout
    loaded = load(runs[0], tiny_warehouse)  # the saved model loads
    ranks = loaded.metrics["timing"]["distributed"]["ranks"]
    # Both workers ran every step, saw customers, and ended with the same weights.
    assert [r["rank"] for r in ranks] == [0, 1]
    assert all(r["steps"] == 6 and r["customers"] > 0 for r in ranks)
    assert ranks[0]["trainable_sha256"] == ranks[1]["trainable_sha256"]
    assert sum(r["empty_steps"] for r in ranks) > 0  # empty local batches still stepped
    assert sum(c["batch_size"] for c in loaded.curve) == sum(r["customers"] for r in ranks)

    # The accountant's q and epsilon are the single-process plan's...
    config = quick(**SETTINGS, val_users=0, grad_sample_mode=clipping)
    data = training_data(tiny_warehouse, config, TINY_MODEL)
    _, _, _, _, plan = plan_run(config, TINY_MODEL, data.split, data.groups, {})
    privacy = loaded.privacy
    assert privacy["sample_rate"] == plan.sample_rate == 1 / 20
    assert privacy["steps"] == plan.steps == len(loaded.curve) == 6
    assert privacy["noise_multiplier"] == plan.noise_multiplier
    assert privacy["customers"] == plan.people
    # ...and what one process records for the same settings.
    single = load(train(tiny_warehouse, config, model_config=TINY_MODEL, bert_config=TINY,
                        progress=False), tiny_warehouse).privacy
    assert privacy["epsilon"] == pytest.approx(single["epsilon"], rel=1e-9)
    assert abs(privacy["epsilon"] - 3.0) / 3.0 < 0.05
    # (the popularity release is noised afresh by each run: its reliability differs)
    same = ("epsilon", "popularity_release")
    assert {k: v for k, v in privacy.items() if k not in same} == \
        {k: v for k, v in single.items() if k not in same}
    release, single_release = privacy["popularity_release"], single["popularity_release"]
    assert release["noise_multiplier"] == single_release["noise_multiplier"] > 0
    assert release["ledger_run_id"] == runs[0] + COUNTS_SUFFIX

    # One ledger entry for the distributed run (rank 0 alone charged it), completed.
    records = [r for r in read_records(tiny_warehouse.ledger) if r.run_id == runs[0]]
    assert [r.status for r in records] == ["started", "completed"]
    assert records[0].sample_rate == plan.sample_rate and records[0].steps == 6
    # the training entry holds DP-SGD's epsilon alone; with the run's counts entry
    # composed, it is the run's epsilon
    counts = [r for r in read_records(tiny_warehouse.ledger)
              if r.run_id == runs[0] + COUNTS_SUFFIX]
    assert [r.status for r in counts] == ["started", "completed"]
    assert compose_epsilon([(r.noise_multiplier, r.sample_rate, r.steps)
                            for r in (counts[0], records[0])], delta=privacy["delta"]) == \
        pytest.approx(privacy["epsilon"], rel=1e-3)


def test_a_refused_charge_stops_every_worker_before_training(tiny_warehouse, tmp_path):
    set_budget(budgets_path=tiny_warehouse.budgets, ledger_path=tiny_warehouse.ledger,
               dataset=tiny_warehouse.dataset, epsilon=1.0, delta=1e-5)
    proc = torchrun(tiny_warehouse, tmp_path, *FLAGS)  # asks for epsilon 3
    assert proc.returncode != 0
    assert "rank 0 did not start training" in proc.stderr  # the other rank was released
    assert list_runs(tiny_warehouse).empty
    assert not [r for r in read_records(tiny_warehouse.ledger) if r.artefact_kind != "budget"]
