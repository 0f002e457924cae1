"""Sizes checked against the budget and the machine, before any run or environment exists.

:func:`check_sizes` raises a one-line :class:`~ngac.validate.ConfigError` for a size that cannot
work (a batch larger than the whole budget, an evaluation or environment count far beyond what
one process steps, a batch that would not fit in memory) and returns one-line notes for sizes that
work but do something the user may not expect (a budget that is not a whole number of batches, a
linear network, a minibatch larger than the batch).

Evaluation steps one environment copy per episode, in one process; training steps ``num_envs``
copies per process. The caps below are where a run stops being a run and becomes a hang: 10,000
Hopper copies take about 10 GB and minutes per step.
"""

from __future__ import annotations

import math
import os
from typing import Any

from omegaconf import OmegaConf

from .validate import ConfigError

MAX_EVAL_EPISODES = 1000
MAX_NUM_ENVS = 4096
#: bytes a batch holds per frame and per float of observation/action: float32 observation and next
#: observation, action, value targets, the transforms' float64 work, GAE and the update's copies
BYTES_PER_FRAME_FLOAT = 64
MEMORY_SHARE = 0.5  # a batch may take at most this share of the memory available now


def available_memory() -> int | None:
    """Bytes of memory available now (Linux ``MemAvailable``), or None where unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def frames_that_run(total: int, per_update: int) -> int:
    """Frames a run trains for ``total``: whole updates of ``per_update`` frames, at least ``total``."""
    return math.ceil(total / per_update) * per_update


def check_eval_episodes(episodes: int, key: str = "trainer.eval_episodes") -> None:
    if episodes > MAX_EVAL_EPISODES:
        raise ConfigError(
            f"{key}={episodes} is too many: evaluation steps one environment copy per episode in one process; "
            f"use at most {MAX_EVAL_EPISODES}"
        )


def check_sizes(cfg: Any, obs_dim: int, act_dim: int, memory: int | None = None) -> list[str]:
    """Raise :class:`ConfigError` for sizes that cannot run; return notes for sizes that run unexpectedly."""
    t, agent = cfg.trainer, cfg.agent
    total, batch, n, devices = int(t.total_frames), int(agent.frames_per_batch), int(cfg.env.num_envs), int(t.devices)
    check_eval_episodes(int(t.eval_episodes))
    if n > MAX_NUM_ENVS:
        raise ConfigError(
            f"env.num_envs={n} is too many: each process steps its copies one after another; use at most "
            f"{MAX_NUM_ENVS} (env.workers spreads them over processes)"
        )
    per_update = batch * devices
    if per_update > total:
        raise ConfigError(
            f"agent.frames_per_batch={batch}{f' x trainer.devices={devices}' if devices > 1 else ''} exceeds "
            f"trainer.total_frames={total}: one update would overrun the budget; use a batch of at most {total}"
        )
    need = batch * (2 * obs_dim + act_dim + 8) * BYTES_PER_FRAME_FLOAT
    memory = available_memory() if memory is None else memory
    if memory is not None and need > MEMORY_SHARE * memory:
        raise ConfigError(
            f"agent.frames_per_batch={batch} needs about {need / 2**30:.1f} GiB for {cfg.env.id} "
            f"(observations of {obs_dim}), more than half of the {memory / 2**30:.1f} GiB available; use a smaller batch"
        )
    notes = []
    if total % per_update:
        notes.append(
            f"trainer.total_frames={total} is not a multiple of the {per_update} frames of one update: "
            f"{frames_that_run(total, per_update)} frames will run"
        )
    for key, what in (("agent.hidden_sizes", "policy"), ("agent.critic.hidden_sizes", "critic")):
        sizes = OmegaConf.select(cfg, key)
        if sizes is not None and len(sizes) == 0:
            notes.append(f"{key}=[]: the {what} is linear in the observation (no hidden layer)")
    for key in ("agent.critic.minibatch_size", "agent.minibatch_size"):
        mb = OmegaConf.select(cfg, key)
        if isinstance(mb, int) and mb > batch:
            notes.append(f"{key}={mb} is larger than agent.frames_per_batch={batch}: each epoch is one full-batch step")
    return notes
