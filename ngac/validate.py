"""Config checks that run before any environment or MLflow run starts.

Every failure is a :class:`ConfigError` whose message is one line naming the bad value and the
valid choices; the CLI prints it as ``ngac: error: ...`` and exits with status 2.
"""

from __future__ import annotations

import math
from typing import Any

from omegaconf import DictConfig, OmegaConf


class ConfigError(ValueError):
    """Bad user input, reported in one line."""


def _num(cfg: Any, key: str) -> Any:
    return OmegaConf.select(cfg, key, throw_on_missing=False)


def _positive(cfg: DictConfig, key: str, integer: bool = False) -> None:
    value = _num(cfg, key)
    ok_type = isinstance(value, int) and not isinstance(value, bool) if integer else isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok_type or not math.isfinite(value) or value <= 0:
        kind = "a positive integer" if integer else "a positive number"
        raise ConfigError(f"{key}={value!r} is invalid; it must be {kind}")


def _choice(cfg: DictConfig, key: str, choices: tuple[str, ...]) -> None:
    value = _num(cfg, key)
    if value not in choices:
        raise ConfigError(f"{key}={value!r} is not valid; choose one of {', '.join(choices)}")


def validate_config(cfg: DictConfig) -> None:
    """Check a composed ``ngac train`` config; raises :class:`ConfigError`."""
    from ngac.agents.step_rules import STEP_RULES
    from ngac.curvature import build_curvature
    from ngac.envs import validate_env_config

    try:
        validate_env_config(cfg.env)
    except ValueError as exc:
        raise ConfigError(f"env: {exc}") from None
    curv = OmegaConf.to_container(cfg.curvature, resolve=True)
    try:
        build_curvature(**curv)  # validates name, options, damping (> 0, schedules)
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc)) from None
    _positive(cfg, "trainer.total_frames", integer=True)
    _positive(cfg, "agent.frames_per_batch", integer=True)
    _positive(cfg, "agent.max_kl")
    _positive(cfg, "agent.critic.lr")
    _positive(cfg, "agent.critic.epochs", integer=True)
    _positive(cfg, "agent.critic.minibatch_size", integer=True)
    _positive(cfg, "trainer.eval_every_frames", integer=True)
    _positive(cfg, "trainer.eval_episodes", integer=True)
    _positive(cfg, "trainer.checkpoint_every_frames", integer=True)
    _positive(cfg, "trainer.num_threads", integer=True)
    _positive(cfg, "trainer.max_bad_batches", integer=True)
    _choice(cfg, "agent.step_rule", STEP_RULES)
    _choice(cfg, "agent.name", ("nac", "ppo"))
    _choice(cfg, "trainer.accelerator", ("cpu", "gpu", "cuda", "auto"))
    from ngac.agents.networks import ACTIVATIONS
    from ngac.curvature import as_schedule

    _choice(cfg, "agent.activation", tuple(sorted(ACTIVATIONS)))
    try:
        as_schedule(OmegaConf.to_container(cfg.agent, resolve=True)["lr"], "agent.lr")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    for key in ("agent.gamma", "agent.gae_lambda"):
        v = _num(cfg, key)
        if not isinstance(v, (int, float)) or not 0 <= v <= 1:
            raise ConfigError(f"{key}={v!r} is invalid; it must be in [0, 1]")
    batch, n = cfg.agent.frames_per_batch, cfg.env.num_envs
    if batch % n:
        raise ConfigError(
            f"agent.frames_per_batch={batch} is not divisible by env.num_envs={n}; "
            f"use a multiple of {n}, e.g. {max(n, batch // n * n)}"
        )
    if cfg.trainer.accelerator in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("trainer.accelerator=gpu but no CUDA device is visible; use trainer.accelerator=cpu or auto")
