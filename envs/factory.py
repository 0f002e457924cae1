"""``make_env``: N copies of one task as a TorchRL env (in this process or in `env.workers` processes); training mode and statistics sync."""

from __future__ import annotations

from typing import Any

import torch
from torchrl.envs import EnvBase
from torchrl.envs.transforms import Transform

from .parallel import parallel_env, vector_part
from .spaces import check_obs_space, probe_spaces, space_kind
from .tasks import cfg_values, is_int
from .transforms import EpisodeStats, ObsNorm, RewardScale

__all__ = ["make_env", "set_training", "sync_normalization", "env_transforms", "find_transform"]


def make_env(
    cfg: Any,
    *,
    num_envs: int | None = None,
    seed: int = 0,
    training: bool = True,
) -> EnvBase:
    """N copies of one task, as a TorchRL env on the CPU (see :mod:`ngac.envs`).

    Env ``i`` is seeded with ``seed + i`` at its first reset. The training layout (``num_envs``
    left to the config) steps them in ``env.workers`` processes (:mod:`ngac.envs.parallel`);
    an explicit ``num_envs`` (evaluation) steps them in this process. Environments always live on the
    CPU (the transforms update their statistics through numpy views); with a GPU only the
    updates move, and the collector acts with a CPU copy of the actor.
    """
    vals = cfg_values(cfg)
    n = vals["num_envs"] if num_envs is None else num_envs
    if not is_int(n) or n < 1:
        raise ValueError(f"num_envs={n!r} is invalid; valid choices: an integer >= 1")
    n = int(n)
    obs_space, act_space = probe_spaces(vals["id"], vals["max_episode_steps"])
    kind = space_kind(act_space)
    check_obs_space(obs_space)
    obs_dim = int(obs_space.shape[0])

    workers = int(vals["workers"]) if num_envs is None else 1  # evaluation envs: one process
    continuous = kind == "continuous"
    if workers == 1:
        env = vector_part(vals["id"], vals["max_episode_steps"], continuous, n, int(seed))
    else:
        env = parallel_env(vals["id"], vals["max_episode_steps"], continuous, n, int(seed), workers)

    env.append_transform(ObsNorm(obs_dim, normalize=vals["normalize_obs"], clip=vals["clip_obs"]))
    env.append_transform(EpisodeStats(n))
    if vals["scale_reward"] and training:
        env.append_transform(RewardScale(n, gamma=vals["gamma"]))
    set_training(env, training)
    return env


def env_transforms(env: EnvBase) -> list[Transform]:
    """The transforms of ``env`` in order (empty for an env without any)."""
    t = getattr(env, "transform", None)
    if t is None:
        return []
    return list(t) if hasattr(t, "__iter__") else [t]


def find_transform(env: EnvBase, cls: type) -> Transform | None:
    """The first transform of ``env`` that is a ``cls``, or None."""
    for t in env_transforms(env):
        if isinstance(t, cls):
            return t
    return None


def set_training(env: EnvBase, training: bool) -> None:
    """Unfreeze (training=True) or freeze (False) observation/reward statistics."""
    for t in env_transforms(env):
        if isinstance(t, (ObsNorm, RewardScale)):
            t.unfreeze() if training else t.freeze()


def sync_normalization(src_env: EnvBase, dst_env: EnvBase) -> None:
    """Copy the observation-normalisation statistics of ``src_env`` into ``dst_env``.

    Typical use: before each evaluation, ``sync_normalization(train_env, eval_env)``; the
    eval env (``training=False``) keeps them frozen.
    """
    src, dst = find_transform(src_env, ObsNorm), find_transform(dst_env, ObsNorm)
    if src is None or dst is None:
        raise ValueError("sync_normalization: both envs must come from make_env (ObsNorm transform missing)")
    with torch.no_grad():
        dst.mean.copy_(src.mean)
        dst.var.copy_(src.var)
        dst.count.copy_(src.count)
