"""Environment throughput: raw gymnasium SyncVectorEnv vs ngac's make_env under a Collector.

Run:  python benchmarks/env_throughput.py [--frames 6000] [--repeats 3] [--sizes 1 8 32 64]

Both sides step HalfCheetah-v5 with random actions in one process, torch.set_num_threads(1).
Measurements are interleaved (raw, ours, raw, ours, ...) and the median is reported.
"raw" = raw stepping as defined in benchmarks/throughput.py (SyncVectorEnv, random actions, after a warm-up).
"ours" = make_env(cfg) (obs normalisation + reward scaling + episode stats, training mode)
stepped by torchrl.collectors.Collector with policy=None (random actions from the spec).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time

import torch
from throughput import raw_rate
from torchrl.collectors import Collector

from ngac.envs import make_env

ENV_ID = "HalfCheetah-v5"


def raw_steps_per_s(n: int, frames: int, seed: int = 0) -> float:
    """Raw stepping as ``benchmarks/throughput.py`` defines it for every benchmark."""
    return raw_rate(ENV_ID, n, max(1, frames // n))


def ours_steps_per_s(n: int, frames: int, seed: int = 0) -> float:
    env = make_env({"id": ENV_ID, "num_envs": n, "normalize_obs": True, "scale_reward": True}, seed=seed)
    per_batch = n * max(1, 1000 // n)
    batches = max(1, frames // per_batch)
    collector = Collector(env, policy=None, frames_per_batch=per_batch, total_frames=per_batch * (batches + 1))
    it = iter(collector)
    next(it)  # warm-up batch (first reset, buffer allocation), not timed
    t0 = time.perf_counter()
    count = 0
    for b in it:
        count += b.numel()
    dt = time.perf_counter() - t0
    collector.shutdown()
    env.close()
    return count / dt


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=6000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 32, 64])
    args = p.parse_args()
    torch.set_num_threads(1)
    logging.getLogger("torchrl").setLevel(logging.WARNING)

    raw: dict[int, list[float]] = {n: [] for n in args.sizes}
    ours: dict[int, list[float]] = {n: [] for n in args.sizes}
    for rep in range(args.repeats):
        for n in args.sizes:
            frames = args.frames if n > 1 else max(1000, args.frames // 4)
            raw[n].append(raw_steps_per_s(n, frames, seed=rep))
            ours[n].append(ours_steps_per_s(n, frames, seed=rep))

    print(f"{ENV_ID}, 1 torch thread, median of {args.repeats} interleaved repeats, torch {torch.__version__}\n")
    print("| num_envs | raw SyncVectorEnv steps/s | make_env + Collector steps/s | ratio ours/raw |")
    print("|---:|---:|---:|---:|")
    for n in args.sizes:
        r, o = statistics.median(raw[n]), statistics.median(ours[n])
        print(f"| {n} | {r:,.0f} | {o:,.0f} | {o / r:.2f} |")


if __name__ == "__main__":
    main()
