"""One definition of throughput for every benchmark here.

**Steady frames/s**: the environment frames of the second half of training over the wall-clock seconds
they took. From a run's progress marks, ``(frames, seconds)`` at the end of every batch (its update
included), take the first mark at or after half the run's frames, ``(f_a, t_a)``, and the last one,
``(f_b, t_b)``: steady = ``(f_b - f_a) / (t_b - t_a)``. Imports, start-up, the first half (warm-up:
allocator, first resets, lazy optimiser state) and the final evaluation fall outside; whatever runs
inside the window (a checkpoint, a periodic evaluation, a pause of a shared machine) counts, as it would
for a user. It is a ratio of sums, not a median of per-batch rates.

* ngac: the marks are its ``charts/frames`` rows in MLflow (value, timestamp) or, in-process, a
  callback at each batch end; SB3: the rollout ends (``num_timesteps``) with their update.
* Raw stepping (the simulator's price): a gymnasium vector env stepped with random actions after a
  short warm-up; frames over the seconds of stepping.

**Whole-process frames/s** is the other figure we quote: frames / the wall time of the whole process
(imports, start-up and the final evaluation included).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable


def steady_rate(marks: Iterable[tuple[float, float]], frames: float | None = None) -> float:
    """Steady frames/s from ``(frames, seconds)`` marks (any order); ``frames``: the run's total frames
    (default: the last mark's). NaN when the second half holds fewer than two marks."""
    marks = sorted(marks)
    if not marks:
        return math.nan
    total = marks[-1][0] if frames is None else frames
    late = [m for m in marks if m[0] >= total / 2]
    if len(late) < 2 or late[-1][1] <= late[0][1]:
        return math.nan
    (fa, ta), (fb, tb) = late[0], late[-1]
    return (fb - fa) / (tb - ta)


def steady_window(marks: Iterable[tuple[float, float]], frames: float | None = None) -> tuple[float, float]:
    """The ``(t_a, t_b)`` seconds that :func:`steady_rate` measures over."""
    marks = sorted(marks)
    total = marks[-1][0] if frames is None else frames
    late = [m for m in marks if m[0] >= total / 2]
    return late[0][1], late[-1][1]


def mlflow_marks(tracking_uri: str, run_id: str) -> list[tuple[float, float]]:
    """An ngac run's marks: its ``charts/frames`` rows, (frames, timestamp in seconds)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    return sorted((m.value, m.timestamp / 1e3) for m in client.get_metric_history(run_id, "charts/frames"))


def raw_rate(env_id: str, num_envs: int, steps: int, warmup: int = 20) -> float:
    """Raw stepping: gymnasium ``SyncVectorEnv(num_envs)``, random actions, frames/s over ``steps`` vector
    steps after ``warmup`` (no policy, no TorchRL, no learning: the simulator's price)."""
    import gymnasium as gym
    from gymnasium.vector import AutoresetMode, SyncVectorEnv

    env = SyncVectorEnv([lambda: gym.make(env_id) for _ in range(num_envs)], autoreset_mode=AutoresetMode.SAME_STEP)
    env.reset(seed=0)
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(64)]
    for i in range(warmup):
        env.step(actions[i % 64])
    t0 = time.perf_counter()
    for i in range(steps):
        env.step(actions[i % 64])
    rate = steps * num_envs / (time.perf_counter() - t0)
    env.close()
    return rate
