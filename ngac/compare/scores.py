"""Normalisation scores per task: ``random_return`` and ``reference_return`` from ``configs/env/*.yaml``.

A task's score is normalised as ``(score - random_return) / (reference_return - random_return)``: 0 is a
uniform-random policy (``benchmarks/random_returns.py``), 1 the reference (Tianshou's PPO after 1M frames,
its source in each config's comment). A task without both, or with equal ones, is not normalised, and
``ngac compare`` leaves it out of the aggregate across tasks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from omegaconf import OmegaConf

import ngac.configs


@dataclass(frozen=True)
class TaskScores:
    random_return: float
    reference_return: float

    def normalise(self, score: float) -> float:
        return (score - self.random_return) / (self.reference_return - self.random_return)


def env_config_dir() -> Path:
    return Path(ngac.configs.__file__).resolve().parent / "env"


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan


@cache
def task_scores(config_dir: Path | None = None) -> dict[str, TaskScores]:
    """Gymnasium id -> its scores, for the env configs that give both (finite and different)."""
    out = {}
    for path in sorted((config_dir or env_config_dir()).glob("*.yaml")):
        cfg = OmegaConf.to_container(OmegaConf.load(path))
        if not isinstance(cfg, dict) or not isinstance(cfg.get("id"), str):
            continue
        low, high = _number(cfg.get("random_return")), _number(cfg.get("reference_return"))
        if math.isfinite(low) and math.isfinite(high) and high != low:
            out[cfg["id"]] = TaskScores(low, high)
    return out
