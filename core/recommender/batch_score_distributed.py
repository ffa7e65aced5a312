"""Batch scoring on several processes or machines, sharded by customer.

Each worker scores the customers of its shard (`core.recommender.batch_score.shard_of`: a
stable hash
of the pseudonym) with `core.recommender.batch_score.score_customers` and writes them to one Parquet
file, `<shard_dir>/shard=<i>/part.parquet`. Workers only read (the read snapshot and
the model registry): DuckDB allows one writer, so none of them opens the warehouse for
writing. When every shard's file is there, the coordinator loads them all with DuckDB's
`read_parquet('<shard_dir>/*/*.parquet', hive_partitioning = true)` in ONE
`write_transaction` that replaces the run's rows, as `core.recommender.batch_score.score` does, and
removes the folder. If a shard is missing (a worker failed) nothing is loaded and the
warehouse keeps the rows it had.

Two launchers of the same worker:

- `score_sharded(paths, run_id, workers=N)` (`clearmark score --workers N`): N spawned
  processes on this machine; the calling process coordinates.
- `torchrun --nproc_per_node N [--nnodes M --node_rank R --master_addr HOST
  --master_port PORT] -m core.recommender.batch_score_distributed [run_id] [--k K]`: one worker per
  rank; rank 0 fixes the run id, the scoring moment and the shard folder, and loads the
  shards once every rank has written its own. Across machines the data folder (read
  snapshot, models, shard folder) must be shared storage and rank 0 must run where the
  warehouse file is.

Every worker scores with the same run and the same moment `at` (fixed once by the
coordinator), so the union of the shards is row for row what one `score` call writes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pandas as pd

from core.config import Paths
from core.recommender.batch_score import BATCH_CUSTOMERS, DEFAULT_K, ScoringResult, score_customers
from core.store.queries import QUERIES
from core.store.warehouse import write_transaction

PART = "part.parquet"
# The shards' rows, read by DuckDB straight from Parquet inside the write transaction
# (no second copy in Python memory); run id and creation time are the coordinator's.
LOAD_SHARDS = """
    INSERT INTO recommendations (run_id, user_pseudonym, item_id, rank, score, created_at)
    SELECT $run_id, user_pseudonym, item_id, rank, score, $created_at
    FROM read_parquet($files, hive_partitioning = true)
"""


class ShardsIncomplete(RuntimeError):
    """Some shard has no Parquet file (its worker failed): nothing was loaded."""


def shard_file(shard_dir: Path, index: int) -> Path:
    return Path(shard_dir) / f"shard={index}" / PART


def new_shard_dir(paths: Paths, run_id: str) -> Path:
    """A fresh folder for one scoring job's shards, under the data folder."""
    parent = paths.data_dir / "scoring"
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{run_id}.", dir=parent))


def resolve_run(paths: Paths, run_id: str | None) -> str:
    """`run_id`, or the latest complete run; fails before any worker starts."""
    from core.recommender import registry

    run_id = run_id or registry.latest_run(paths)
    if run_id is None:
        raise registry.RegistryError(f"no trained model in {paths.models_dir}: train one with "
                                     "`clearmark train` first.")
    registry.run_dir(paths, run_id)  # raises with what to do if the run is incomplete
    return run_id


def score_shard(paths: Paths, run_id: str, shard: tuple[int, int], shard_dir: Path, *,
                at: pd.Timestamp, k: int = DEFAULT_K, exclude_seen: bool = True,
                batch_customers: int = BATCH_CUSTOMERS, max_customers: int | None = None,
                progress: bool = False) -> int:
    """Worker: score shard `(index, count)` and write its Parquet file; returns the
    number of customers scored. Reads only; the file appears complete or not at all."""
    scored = score_customers(paths, run_id, k=k, at=at, exclude_seen=exclude_seen,
                             batch_customers=batch_customers, max_customers=max_customers,
                             shard=shard, progress=progress)
    target = shard_file(shard_dir, shard[0])
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{PART}.{os.getpid()}.partial")  # not matched by *.parquet
    scored.rows.to_parquet(partial, index=False)
    os.replace(partial, target)
    return scored.customers


def load_shards(paths: Paths, run_id: str, shard_dir: Path, count: int
                ) -> tuple[int, pd.Timestamp]:
    """Coordinator: the `count` shards' rows replace the run's rows in ONE write
    transaction; the shard folder is removed afterwards. Returns (rows, created_at)."""
    shard_dir = Path(shard_dir)
    found = set(shard_dir.glob("*/*.parquet"))
    expected = {shard_file(shard_dir, i) for i in range(count)}
    if found != expected:
        raise ShardsIncomplete(f"{shard_dir}: expected the Parquet files of shards 0..{count - 1}"
                               f", missing {sorted(map(str, expected - found))}, unexpected "
                               f"{sorted(map(str, found - expected))}; nothing was loaded.")
    created_at = pd.Timestamp.now().floor("us")
    with write_transaction(paths) as con:
        con.execute(QUERIES["recommendations_delete_run"], {"run_id": run_id})
        con.execute(LOAD_SHARDS, {"run_id": run_id, "created_at": created_at,
                                  "files": str(shard_dir / "*" / "*.parquet")})
        rows = con.execute("SELECT count(*) FROM recommendations WHERE run_id = $run_id",
                           {"run_id": run_id}).fetchone()[0]
    remove_shards(shard_dir, count)
    return int(rows), created_at


def remove_shards(shard_dir: Path, count: int) -> None:
    """Delete the shards' files and folders (and `shard_dir` if that leaves it empty):
    they hold per-customer rows, which belong in the warehouse only."""
    for i in range(count):
        shard_file(shard_dir, i).unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # not there, or holds something else
            shard_file(shard_dir, i).parent.rmdir()
    with contextlib.suppress(OSError):
        Path(shard_dir).rmdir()


def score_sharded(paths: Paths | None = None, run_id: str | None = None, *, workers: int = 2,
                  k: int = DEFAULT_K, at: pd.Timestamp | None = None,
                  exclude_seen: bool = True, batch_customers: int = BATCH_CUSTOMERS,
                  max_customers: int | None = None) -> ScoringResult:
    """`core.recommender.batch_score.score` over `workers` processes on this machine (see the module
    docstring); the same rows, written in one transaction by this process."""
    paths = paths or Paths()
    if workers < 1:
        raise ValueError(f"workers={workers}: at least one.")
    if k < 1:
        raise ValueError(f"k={k}: ask for at least 1 recommendation per customer.")
    run_id = resolve_run(paths, run_id)
    at = pd.Timestamp.now().floor("s") if at is None else pd.Timestamp(at)
    shard_dir = new_shard_dir(paths, run_id)
    started = time.perf_counter()
    try:
        # spawn, not fork: a forked child would inherit this process' torch thread pools.
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            jobs = [pool.submit(score_shard, paths, run_id, (i, workers), shard_dir, at=at,
                                k=k, exclude_seen=exclude_seen,
                                batch_customers=batch_customers,
                                max_customers=max_customers) for i in range(workers)]
            customers = sum(job.result() for job in jobs)  # re-raises a worker's error
    except BaseException:
        remove_shards(shard_dir, workers)
        raise
    seconds = time.perf_counter() - started
    rows, created_at = load_shards(paths, run_id, shard_dir, workers)
    return ScoringResult(run_id=run_id, customers=customers, rows=rows, seconds=seconds,
                         created_at=created_at)


# --- torchrun ------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """One rank of `torchrun ... -m core.recommender.batch_score_distributed`; see the
    module docstring."""
    import torch.distributed as dist

    parser = argparse.ArgumentParser(
        prog="torchrun --nproc_per_node N -m core.recommender.batch_score_distributed",
        description="Score every customer with a trained model, one shard per rank; "
                    "rank 0 writes all rows to the warehouse in one transaction.")
    parser.add_argument("run_id", nargs="?", help="default: the latest trained model")
    parser.add_argument("--k", type=int, default=DEFAULT_K)
    parser.add_argument("--include-seen", action="store_true",
                        help="allow items the customer already has")
    parser.add_argument("--max-customers", type=int, help="the first N customers only")
    parser.add_argument("--at", type=pd.Timestamp,
                        help="the scoring moment (ISO time; default: now, fixed by rank 0)")
    parser.add_argument("--shard-dir", type=Path,
                        help="folder for the shards' Parquet files (shared by every machine; "
                             "default: a fresh folder under <data>/scoring)")
    args = parser.parse_args(argv)
    paths = Paths()
    dist.init_process_group("gloo")  # only to agree on the job and to wait for every shard
    rank, world = dist.get_rank(), dist.get_world_size()
    try:
        job: list[object] = [None]
        if rank == 0:
            try:
                run_id = resolve_run(paths, args.run_id)
                shard_dir = args.shard_dir or new_shard_dir(paths, run_id)
                at = pd.Timestamp.now().floor("s") if args.at is None else args.at
                job = [(run_id, at, Path(shard_dir))]
            except Exception as exc:  # tell the other ranks, then fail
                job = [f"{type(exc).__name__}: {exc}"]
        dist.broadcast_object_list(job, src=0)
        if isinstance(job[0], str):
            print(f"scoring not started: {job[0]}", file=sys.stderr)
            return 2
        run_id, at, shard_dir = job[0]
        try:
            outcome: object = score_shard(paths, run_id, (rank, world), shard_dir, at=at,
                                          k=args.k, exclude_seen=not args.include_seen,
                                          max_customers=args.max_customers)
        except Exception as exc:  # reported to rank 0, which then loads nothing
            outcome = f"rank {rank}: {type(exc).__name__}: {exc}"
        outcomes: list[object] = [None] * world
        dist.all_gather_object(outcomes, outcome)  # also the barrier: every shard written
        failures = [o for o in outcomes if isinstance(o, str)]
        if failures:
            if rank == 0:
                remove_shards(shard_dir, world)
            print("scoring failed, nothing written: " + "; ".join(failures), file=sys.stderr)
            return 1
        if rank == 0:
            rows, _ = load_shards(paths, run_id, shard_dir, world)
            print(f"Scored {sum(outcomes):,} customers with {run_id} on {world} workers: "
                  f"{rows:,} recommendations (top {args.k})")
        return 0
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    raise SystemExit(main())
