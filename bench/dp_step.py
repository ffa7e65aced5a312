"""DP training step against the non-private step: time, peak memory, clipping modes.

Run from the repository root: ``.venv/bin/python -m bench.dp_step [--quick]``. Prints a
table and writes ``bench/results/dp_step.json`` (``dp_step_quick.json`` with --quick)
with the machine description and the load average.

Protocol: one generated warehouse (`--customers`, default 1,500) in a temp dir; the
default model (`core.recommender.model_config.ModelConfig()`: MiniLM, one trainable top
layer, groups of 1 + 4 candidates) and one fixed batch of `--batch` customers (default
128, the default `TrainConfig.batch_size`), the same for every mode. Each mode runs in
its own process (so that its peak resident memory is its own): one warm-up step, then
`--repeats` timed steps (forward, backward, optimizer step; default 15), median reported.

Modes:
- non_private: plain autograd and Adam;
- bookkeeping: `core.dp.clipping` (the training default): per-customer norms and the
  clipped sum from one backward pass, Opacus' noise, scaling and accountant;
- hooks: Opacus' per-sample gradients (`grad_sample_mode="hooks"`), per-customer
  clipping, Gaussian noise;
- ghost: Opacus' ghost clipping (`grad_sample_mode="ghost"`): per-customer norms from
  activations and backprops, then a second backward pass.

Also measured: the float32 per-customer norms of ghost and book-keeping clipping
against the materialised per-customer gradients of hooks mode (`norm_error`). The
default (`TrainConfig.grad_sample_mode`) is the fastest mode here; the targets are
checked on it.

Ratios (dp / non-private) are computed within one run of this script, on one machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from bench.machine import write_result
from core.recommender.config import TrainConfig

BENCH_KEY = bytes(range(32))  # a throwaway warehouse in a temp dir: not a steward's key
MODES = ("non_private", "bookkeeping", "hooks", "ghost")
DP_MODES = MODES[1:]
TARGETS = {"time_ratio": 1.25, "memory_ratio": 1.3}


def _rss_mib() -> float:
    """Current resident memory of this process (Linux /proc), MiB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _batch(data_dir: Path, customers: int):
    """(model, dataset, fixed batch, customers in the training data)."""
    from core.config import Paths
    from core.recommender.data import load_training_data, make_split
    from core.recommender.examples import ExampleConfig, build_examples, collate_groups
    from core.recommender.model import CrossEncoder
    from core.recommender.model_config import ModelConfig
    from core.recommender.train import build_dataset

    model_config = ModelConfig()
    interactions, catalogue = load_training_data(Paths(data_dir))
    split = make_split(interactions, "leave_last_out")
    groups = build_examples(split.train, catalogue,
                            ExampleConfig(history_len=model_config.history_len,
                                          negatives=model_config.negatives))
    model = CrossEncoder.from_pretrained(model_config)
    dataset = build_dataset(groups, catalogue, model)
    batch = collate_groups([dataset[i] for i in range(min(customers, len(dataset)))])
    return model, dataset, batch, len({g.user for g in groups})


def step_seconds(module, optimizer, batch, repeats: int) -> list[float]:
    """Seconds of `repeats` optimisation steps (forward, backward, optimizer step) on
    the same batch, after one untimed warm-up step."""
    from core.recommender.train import batch_loss

    module.train()
    times = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        for _ in range(repeats + 1):
            started = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            batch_loss(module, optimizer, module(*batch)).backward()
            optimizer.step()
            times.append(time.perf_counter() - started)
    return times[1:]


def run_mode(mode: str, data_dir: Path, customers: int, repeats: int) -> dict[str, object]:
    """Time `repeats` steps of one mode on the fixed batch (in this process)."""
    import torch

    from core.config import use_cpu_threads
    from core.recommender.planning import plan_privacy
    from core.recommender.train import prepare_training

    use_cpu_threads()
    torch.manual_seed(0)
    model, dataset, batch, people = _batch(data_dir, customers)
    private = mode != "non_private"
    config = TrainConfig(non_private=not private, batch_size=customers, epochs=1,
                         grad_sample_mode=mode if private else "hooks")
    module, optimizer, _, _ = prepare_training(model, dataset, config,
                                               plan_privacy(config, people))
    before = _rss_mib()
    times = step_seconds(module, optimizer, batch, repeats)
    return {"mode": mode, "batch_customers": int(batch[0].shape[0]),
            "batch_pairs": int(batch[0].shape[0] * batch[0].shape[1]),
            "seconds_per_step": statistics.median(times), "step_seconds": times,
            "rss_before_steps_mib": before, "peak_rss_mib": _peak_mib(),
            "trainable_parameters": sum(p.numel() for p in model.trainable_parameters())}


def norm_error(data_dir: Path, customers: int) -> dict[str, float]:
    """Per-customer gradient norms of ghost and book-keeping clipping (float32) against
    the materialised ones of hooks mode, {mode: max relative error, ...}."""
    import torch

    from core.recommender.planning import plan_privacy
    from core.recommender.train import batch_loss, prepare_training

    norms = {}
    for mode in ("hooks", "ghost", "bookkeeping"):
        torch.manual_seed(0)
        model, dataset, batch, people = _batch(data_dir, customers)
        config = TrainConfig(batch_size=customers, epochs=1, grad_sample_mode=mode)
        module, optimizer, _, _ = prepare_training(model, dataset, config,
                                                   plan_privacy(config, people))
        module.train()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            loss = batch_loss(module, optimizer, module(*batch))
            params = model.trainable_parameters()
            if mode == "bookkeeping":
                loss.backward()
                per = [module.last_norms]
            elif mode == "hooks":
                loss.backward()
                per = [p.grad_sample.reshape(p.grad_sample.shape[0], -1).norm(dim=1)
                       for p in params]
            else:  # the norm pass alone: what ghost clipping computes its factors from
                loss.loss_per_sample.mean().backward(retain_graph=True)
                per = [p._norm_sample for p in params]
        norms[mode] = torch.stack(per, dim=1).norm(dim=1)  # (B,) total norm per customer
    out = {"customers": int(norms["hooks"].shape[0])}
    for mode in ("ghost", "bookkeeping"):
        ratio = (norms[mode] / norms["hooks"]).tolist()
        out[mode] = {"ratio_min": min(ratio), "ratio_max": max(ratio),
                     "max_relative_error": max(abs(r - 1) for r in ratio)}
    return out


def _prepare(tmp: Path, customers: int) -> Path:
    from core.config import Paths
    from core.ingest.pipeline import ingest
    from core.synthetic.generator import GeneratorConfig, generate

    paths = Paths(tmp / "data")
    raw = generate(GeneratorConfig(customers=customers, items=max(200, customers // 10),
                                   seed=0), tmp / "raw", progress=False).out_dir
    ingest([raw], key=BENCH_KEY, paths=paths, progress=False)
    return paths.data_dir


def _child(mode: str, data_dir: Path, batch: int, repeats: int) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.dp_step", "--child", mode, "--data", str(data_dir),
         "--batch", str(batch), "--repeats", str(repeats)],
        check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small batch, 2 repeats")
    parser.add_argument("--batch", type=int, help="customers per step (default 128)")
    parser.add_argument("--repeats", type=int, help="timed steps per mode (default 15)")
    parser.add_argument("--customers", type=int, default=1500)
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    batch = args.batch or (16 if args.quick else 128)
    repeats = args.repeats or (2 if args.quick else 15)
    if args.child:
        print(json.dumps(run_mode(args.child, Path(args.data), batch, repeats)))
        return 0
    started = time.perf_counter()
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = _prepare(Path(tmp), args.customers)
        modes = {}
        for mode in MODES:
            modes[mode] = _child(mode, data_dir, batch, repeats)
            print(f"{mode:12s} {modes[mode]['seconds_per_step']:7.2f} s/step  peak "
                  f"{modes[mode]['peak_rss_mib']:7.0f} MiB", flush=True)
        norms = norm_error(data_dir, min(batch, 32))
    base = modes["non_private"]
    ratios = {mode: {"time": modes[mode]["seconds_per_step"] / base["seconds_per_step"],
                     "peak_memory": modes[mode]["peak_rss_mib"] / base["peak_rss_mib"]}
              for mode in DP_MODES}
    default = TrainConfig().grad_sample_mode
    result = {
        "quick": args.quick, "batch_customers": batch, "repeats": repeats,
        "generated_customers": args.customers, "load_average_start": load_start,
        "modes": modes, "ratios_vs_non_private": ratios,
        "norm_error_float32_vs_hooks": norms,
        "default_mode": default,
        "targets": {"dp step time / non-private": {
                        "target": TARGETS["time_ratio"], "measured": ratios[default]["time"],
                        "hit": ratios[default]["time"] <= TARGETS["time_ratio"]},
                    "dp peak memory / non-private": {
                        "target": TARGETS["memory_ratio"],
                        "measured": ratios[default]["peak_memory"],
                        "hit": ratios[default]["peak_memory"] <= TARGETS["memory_ratio"]}},
        "load_average_end": os.getloadavg(), "seconds": time.perf_counter() - started,
    }
    for mode, r in ratios.items():
        print(f"{mode}: {r['time']:.2f}x time, {r['peak_memory']:.2f}x peak memory of the "
              "non-private step")
    for mode in ("ghost", "bookkeeping"):
        print(f"{mode} float32 norms / materialised norms: {norms[mode]['ratio_min']:.6f} "
              f".. {norms[mode]['ratio_max']:.6f}")
    path = write_result("dp_step_quick" if args.quick else "dp_step", result)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
