"""The return of a uniform-random policy on each task: the ``random_return`` of ``configs/env/*.yaml``.

Run:  nice -n 10 python benchmarks/random_returns.py [--episodes 100] [--seed 0] [--envs hopper swimmer]

``ngac compare`` normalises a task's scores as (score - random_return) / (reference_return - random_return).
Each episode runs the gymnasium task directly, with its default time limit and no ngac wrapper (no
observation normalisation, no reward scaling): episode ``i`` resets with seed ``seed + i`` and actions are
drawn uniformly from the action space, seeded with ``seed``. Prints one line per task (mean, std over
episodes, standard error, mean length) and the YAML lines to paste.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import gymnasium as gym
import numpy as np

from ngac.envs.tasks import TASKS


def random_returns(env_id: str, episodes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Undiscounted returns and lengths of ``episodes`` uniform-random episodes."""
    env = gym.make(env_id)
    env.action_space.seed(seed)
    returns, lengths = np.zeros(episodes), np.zeros(episodes, dtype=int)
    try:
        for i in range(episodes):
            env.reset(seed=seed + i)
            done = False
            while not done:
                _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
                returns[i] += float(reward)
                lengths[i] += 1
                done = terminated or truncated
    finally:
        env.close()
    return returns, lengths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--envs", nargs="*", default=sorted(TASKS), help=f"config names: {', '.join(sorted(TASKS))}")
    args = parser.parse_args(argv)
    bad = [e for e in args.envs if e not in TASKS]
    if bad:
        parser.error(f"--envs {' '.join(bad)} unknown; valid choices: {', '.join(sorted(TASKS))}")
    yaml_lines = []
    for name in args.envs:
        t0 = time.perf_counter()
        returns, lengths = random_returns(TASKS[name], args.episodes, args.seed)
        sem = returns.std(ddof=1) / math.sqrt(len(returns))
        print(
            f"{name:26s} {TASKS[name]:26s} mean {returns.mean():10.2f}  std {returns.std(ddof=1):9.2f}  "
            f"sem {sem:7.2f}  length {lengths.mean():7.1f}  ({time.perf_counter() - t0:.1f} s)",
            flush=True,
        )
        yaml_lines.append(f"{name}: random_return: {returns.mean():.1f}  # +- {sem:.1f} (sem)")
    print("\n" + "\n".join(yaml_lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
