"""Sharded batch scoring: the shards partition the customers, and scoring on two workers
(spawned processes, or torchrun ranks) writes exactly the rows one `score` call writes."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from core.config import Paths
from core.recommender import registry
from core.recommender.batch_score import score, score_customers, shard_of
from core.recommender.batch_score_distributed import (
    ShardsIncomplete,
    load_shards,
    score_shard,
    score_sharded,
    shard_file,
)
from core.recommender.model import CrossEncoder
from core.recommender.model_config import ModelConfig
from tests.core.recommender.test_batch_score import (
    CUSTOMERS,
    TINY,
    K,
    build_warehouse,
    recommendations,
)

ROOT = Path(__file__).resolve().parents[3]  # the repository: torchrun runs from there
AT = pd.Timestamp("2024-06-01 10:00")
RUN = "ce_test_run"


@pytest.fixture
def scored_setup(warehouse_paths: Paths) -> Paths:
    """tests/core/test_scoring.py's warehouse and random tiny model (13 customers)."""
    build_warehouse(warehouse_paths)
    model = CrossEncoder.from_config(TINY, ModelConfig(max_length=48, item_length=16,
                                                       prior_scale=0.0, content_candidates=6,
                                                       popular_candidates=4))
    with torch.no_grad():
        model.bert.classifier.weight.normal_()
    registry.save(warehouse_paths, run_id=RUN, model=model.eval(), train_config={},
                  privacy={"private": True, "epsilon": 3.0}, fingerprint={})
    return warehouse_paths


def ordered(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.sort_values(["user_pseudonym", "rank"]).reset_index(drop=True)


def assert_same_rows(got: pd.DataFrame, want: pd.DataFrame) -> None:
    got, want = ordered(got), ordered(want)
    columns = ["user_pseudonym", "item_id", "rank"]
    pd.testing.assert_frame_equal(got[columns].astype(str), want[columns].astype(str))
    # Padding differs with the batch's other customers: the logits may differ in the
    # last bits, never enough to change an item or a rank (checked above).
    np.testing.assert_allclose(got["score"], want["score"], rtol=1e-5, atol=1e-6)


def test_the_shards_partition_the_customers_and_score_them_alike(scored_setup):
    whole = score_customers(scored_setup, RUN, k=K, at=AT, progress=False)
    parts = [score_customers(scored_setup, RUN, k=K, at=AT, shard=(i, 2), progress=False)
             for i in range(2)]
    users = [set(p.rows["user_pseudonym"]) for p in parts]
    assert not users[0] & users[1] and all(users)  # disjoint, both non-empty here
    assert users[0] | users[1] == set(whole.rows["user_pseudonym"])
    assert sum(p.customers for p in parts) == whole.customers == CUSTOMERS + 1
    assert_same_rows(pd.concat([p.rows for p in parts]), whole.rows)
    assert all(shard_of(u, 2) == i for i, us in enumerate(users) for u in us)
    with pytest.raises(ValueError, match="shard"):
        score_customers(scored_setup, RUN, shard=(2, 2), progress=False)


def test_two_worker_processes_write_what_one_score_call_writes(scored_setup):
    score(scored_setup, RUN, k=K, at=AT, progress=False)
    single = recommendations(scored_setup)
    result = score_sharded(scored_setup, RUN, workers=2, k=K, at=AT)
    sharded = recommendations(scored_setup)
    assert result.customers == CUSTOMERS + 1 and result.rows == len(sharded) == len(single)
    assert_same_rows(sharded, single)
    assert (sharded["run_id"] == RUN).all() and sharded["created_at"].nunique() == 1
    assert not list((scored_setup.data_dir / "scoring").iterdir())  # shards removed


def test_a_missing_shard_loads_nothing(scored_setup, tmp_path):
    score(scored_setup, RUN, k=K, at=AT, progress=False)
    before = recommendations(scored_setup)
    score_shard(scored_setup, RUN, (0, 2), tmp_path / "shards", at=AT, k=2)
    with pytest.raises(ShardsIncomplete, match="shard=1"):
        load_shards(scored_setup, RUN, tmp_path / "shards", 2)
    assert shard_file(tmp_path / "shards", 0).exists()  # left for a look, not loaded
    pd.testing.assert_frame_equal(recommendations(scored_setup), before)


def test_torchrun_ranks_score_their_shards_and_rank_0_writes_them(scored_setup):
    score(scored_setup, RUN, k=K, at=AT, progress=False)
    single = recommendations(scored_setup)
    # --standalone: torchrun's own rendezvous on a free local port.
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
         "2", "-m", "core.recommender.batch_score_distributed", RUN, "--k", str(K),
         "--at", AT.isoformat()],
        cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
        text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"Scored {CUSTOMERS + 1} customers with {RUN} on 2 workers" in proc.stdout
    assert_same_rows(recommendations(scored_setup), single)
