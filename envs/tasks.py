"""The task table, the env-config defaults and their validation (no environment is built here)."""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

__all__ = ["TASKS", "DEFAULTS", "validate_env_config", "cfg_values", "is_int"]

#: config-group name -> gymnasium id
TASKS: dict[str, str] = {
    "halfcheetah": "HalfCheetah-v5",
    "hopper": "Hopper-v5",
    "walker2d": "Walker2d-v5",
    "swimmer": "Swimmer-v5",
    "ant": "Ant-v5",
    "reacher": "Reacher-v5",
    "inverted_pendulum": "InvertedPendulum-v5",
    "inverted_double_pendulum": "InvertedDoublePendulum-v5",
    "humanoid": "Humanoid-v5",
    "pusher": "Pusher-v5",
    "pendulum": "Pendulum-v1",
    "cartpole": "CartPole-v1",
    "acrobot": "Acrobot-v1",
}

#: env-config key -> value used when the key is absent
DEFAULTS: dict[str, Any] = {
    "num_envs": 32,
    "workers": 1,
    "normalize_obs": True,
    "scale_reward": True,
    "gamma": 0.99,
    "max_episode_steps": None,
    "clip_obs": 10.0,
}


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    if isinstance(cfg, Mapping):
        return cfg.get(key, default)
    try:  # OmegaConf DictConfig and similar
        return cfg.get(key, default)
    except AttributeError:
        return getattr(cfg, key, default)


def is_int(x: Any) -> bool:
    """An integer that is not a bool."""
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _is_real(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def validate_env_config(cfg: Any) -> None:
    """Check an env config without creating any environment; raise a one-line ValueError."""
    if cfg is None:
        raise ValueError("env config is None; expected a mapping with at least 'id'")
    env_id = _get(cfg, "id")
    known = sorted(TASKS.values())
    if not isinstance(env_id, str):
        raise ValueError(f"env.id={env_id!r} must be a string; valid choices: {', '.join(known)}")
    if env_id not in gym.envs.registry:
        close = difflib.get_close_matches(env_id, list(gym.envs.registry.keys()), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"env.id={env_id!r} is not a registered gymnasium id{hint}; valid choices: {', '.join(known)}")
    num_envs = _get(cfg, "num_envs", DEFAULTS["num_envs"])
    if not is_int(num_envs) or num_envs < 1:
        raise ValueError(f"env.num_envs={num_envs!r} is invalid; valid choices: an integer >= 1")
    workers = _get(cfg, "workers", DEFAULTS["workers"])
    if not is_int(workers) or workers < 1:
        raise ValueError(f"env.workers={workers!r} is invalid; valid choices: an integer >= 1 that divides num_envs")
    if num_envs % workers:
        divisors = [k for k in range(1, num_envs + 1) if num_envs % k == 0]
        raise ValueError(
            f"env.workers={workers} does not divide env.num_envs={num_envs}; valid choices: "
            f"{', '.join(map(str, divisors))}"
        )
    for key in ("normalize_obs", "scale_reward"):
        val = _get(cfg, key, DEFAULTS[key])
        if not isinstance(val, (bool, np.bool_)):
            raise ValueError(f"env.{key}={val!r} is invalid; valid choices: true, false")
    gamma = _get(cfg, "gamma", DEFAULTS["gamma"])
    if not _is_real(gamma) or not (0.0 < float(gamma) <= 1.0):
        raise ValueError(f"env.gamma={gamma!r} is invalid; valid choices: a number in (0, 1]")
    mes = _get(cfg, "max_episode_steps", None)
    if mes is not None and (not is_int(mes) or mes < 1):
        raise ValueError(
            f"env.max_episode_steps={mes!r} is invalid; valid choices: null (gymnasium default) or an integer >= 1"
        )
    clip = _get(cfg, "clip_obs", DEFAULTS["clip_obs"])
    if clip is not None and (not _is_real(clip) or not float(clip) > 0):
        raise ValueError(f"env.clip_obs={clip!r} is invalid; valid choices: null (no clipping) or a number > 0")


def cfg_values(cfg: Any) -> dict[str, Any]:
    """The validated config as a plain dict: ``id`` plus every key of :data:`DEFAULTS`."""
    validate_env_config(cfg)
    out = {"id": _get(cfg, "id")}
    for key, default in DEFAULTS.items():
        out[key] = _get(cfg, key, default)
    return out
