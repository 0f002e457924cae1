"""How noisy is a K-episode evaluation? The per-episode spread of trained policies, and its standard error.

Run:  nice -n 10 python benchmarks/eval_noise.py CKPT [CKPT ...] [--pool 100] [--ks 5 10 20 50]
                                            [--repeats 10] [--repeat-k 10] [--seed-spread 612]

For each checkpoint (e.g. three ``ngac train env=hopper trainer.total_frames=300000 seed=S`` runs):

1. ``--pool`` episodes in one evaluation (``ngac.evaluation.eval_checkpoint``, the trainer's own
   deterministic evaluation, each episode from its own seeded start state): the per-episode mean and
   standard deviation sigma. A K-episode evaluation of independent start states then has the standard
   error sigma / sqrt(K).
2. ``--repeats`` evaluations of ``--repeat-k`` episodes, each from different start states: the standard
   deviation of their means, the measured standard error, beside sigma / sqrt(K).
3. One timed evaluation for each K in ``--ks``: its wall time (the episodes run in parallel, one per
   environment copy, so the time grows with the longest episode more than with K).

The table puts each K's standard error beside ``--seed-spread``, the across-seed standard deviation of the
final evaluation (BENCHMARKS.md: Hopper at 300k frames, 2415 +- 612 over seeds), and says how many
environment steps the evaluations cost beside the training frames.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

from ngac.evaluation import eval_checkpoint


def sample_std(std_ddof0: float, n: int) -> float:
    return std_ddof0 * math.sqrt(n / (n - 1)) if n > 1 else math.nan


def measure(path: str, args: argparse.Namespace) -> dict:
    t0 = time.perf_counter()
    pool = eval_checkpoint(path, episodes=args.pool, seed=args.seed)
    pool_s = time.perf_counter() - t0
    sigma = sample_std(pool["std_return"], pool["episodes"])
    means = [
        eval_checkpoint(path, episodes=args.repeat_k, seed=args.seed + 100_000 * (i + 1))["mean_return"]
        for i in range(args.repeats)
    ]
    timed = {}
    for k in args.ks:
        t0 = time.perf_counter()
        r = eval_checkpoint(path, episodes=k, seed=args.seed + 7_000_000 + k)
        timed[k] = (time.perf_counter() - t0, r["mean_length"])
    out = {
        "path": path,
        "mean": pool["mean_return"],
        "sigma": sigma,
        "length": pool["mean_length"],
        "pool_s": pool_s,
        "se_measured": statistics.stdev(means) if len(means) > 1 else math.nan,
        "timed": timed,
    }
    print(
        f"{path}: {pool['episodes']} episodes: mean {pool['mean_return']:.1f}, sigma {sigma:.1f}, "
        f"length {pool['mean_length']:.0f} ({pool_s:.0f} s); {args.repeats} x {args.repeat_k} episodes: "
        f"sd of the means {out['se_measured']:.1f} (sigma/sqrt(K) {sigma / math.sqrt(args.repeat_k):.1f}); "
        + ", ".join(f"K={k}: {s:.1f} s" for k, (s, _) in timed.items()),
        flush=True,
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--pool", type=int, default=100, help="episodes in the evaluation that measures sigma")
    parser.add_argument("--ks", type=int, nargs="+", default=[5, 10, 20, 50])
    parser.add_argument("--repeats", type=int, default=10, help="evaluations of --repeat-k episodes (0: skip)")
    parser.add_argument("--repeat-k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=20_000)
    parser.add_argument("--seed-spread", type=float, default=612.0, help="across-seed std of the final evaluation")
    parser.add_argument("--frames", type=float, default=300_000, help="training frames per run")
    parser.add_argument("--evals", type=int, default=3, help="evaluations per run (300k frames, every 100k: 3)")
    args = parser.parse_args(argv)
    bad = [k for k in [args.pool, args.repeat_k, *args.ks] if k < 2]
    if bad:
        parser.error(f"episode counts {bad} are invalid; valid choices: integers >= 2")
    results = [measure(p, args) for p in args.checkpoints]
    sigma = math.sqrt(statistics.mean(r["sigma"] ** 2 for r in results))
    length = statistics.mean(r["length"] for r in results)
    print(f"\nsigma (root mean square over {len(results)} policies): {sigma:.1f}; mean episode length {length:.0f}")
    print(f"seed spread (std over seeds of the final evaluation): {args.seed_spread:.0f}\n")
    print(f"| K | standard error sigma/sqrt(K) | / seed spread | eval wall s (mean of {len(results)}) "
          "| eval steps per run / training frames |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|")
    for k in args.ks:
        se = sigma / math.sqrt(k)
        wall = statistics.mean(r["timed"][k][0] for r in results)
        steps = args.evals * k * length
        print(f"| {k} | {se:.0f} | {se / args.seed_spread:.2f} | {wall:.1f} | {steps / args.frames:.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
