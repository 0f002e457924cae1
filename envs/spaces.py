"""Observation and action spaces of a task, probed once per process.

Gymnasium's registry holds no spaces, so they are read from one environment built for the
purpose. The result is cached per ``(env id, max_episode_steps)``; the cache entry remembers the
registry's ``EnvSpec`` object and is dropped when the id is registered again.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from .gym_env import make_gym_env
from .tasks import cfg_values

__all__ = ["action_kind", "env_dims", "probe_spaces", "space_kind", "check_obs_space", "clear_space_cache"]

_CACHE: dict[tuple[str, int | None], tuple[gym.envs.registration.EnvSpec, gym.Space, gym.Space]] = {}


def clear_space_cache() -> None:
    """Forget every probed space (tests; a re-registered id is detected without this)."""
    _CACHE.clear()


def probe_spaces(env_id: str, max_episode_steps: int | None = None) -> tuple[gym.Space, gym.Space]:
    """(observation_space, action_space) of one ``env_id`` environment; builds at most one per key."""
    key = (env_id, None if max_episode_steps is None else int(max_episode_steps))
    spec = gym.spec(env_id)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is spec:
        return hit[1], hit[2]
    env = make_gym_env(env_id, max_episode_steps)
    try:
        spaces = env.observation_space, env.action_space
    finally:
        env.close()
    _CACHE[key] = (spec, *spaces)
    return spaces


def space_kind(space: gym.Space) -> str:
    """'continuous' for a 1-D Box, 'discrete' for Discrete; a one-line ValueError otherwise."""
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        return "continuous"
    if isinstance(space, gym.spaces.Discrete):
        return "discrete"
    raise ValueError(f"unsupported action space {space!r}; supported: Box with 1-D shape (continuous), Discrete")


def check_obs_space(space: gym.Space) -> None:
    """A one-line ValueError unless ``space`` is a 1-D Box."""
    if not (isinstance(space, gym.spaces.Box) and len(space.shape) == 1):
        raise ValueError(f"unsupported observation space {space!r}; supported: Box with 1-D shape")


def _spaces(cfg: Any) -> tuple[gym.Space, gym.Space]:
    vals = cfg_values(cfg)
    return probe_spaces(vals["id"], vals["max_episode_steps"])


def action_kind(cfg: Any) -> str:
    """'continuous' or 'discrete', read from the action space without stepping."""
    _, act_space = _spaces(cfg)
    return space_kind(act_space)


def env_dims(cfg: Any) -> tuple[int, int]:
    """(obs_dim, act_dim) for continuous tasks, (obs_dim, num_actions) for discrete ones."""
    obs_space, act_space = _spaces(cfg)
    kind = space_kind(act_space)
    check_obs_space(obs_space)
    obs_dim = int(obs_space.shape[0])
    if kind == "discrete":
        return obs_dim, int(act_space.n)
    return obs_dim, int(act_space.shape[0])
