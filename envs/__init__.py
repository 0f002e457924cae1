"""Environment layer: Gymnasium tasks behind one TorchRL factory.

``make_env(cfg)`` builds ``num_envs`` copies of one Gymnasium task
(``gymnasium.vector.SyncVectorEnv`` with ``AutoresetMode.SAME_STEP``) wrapped by
``torchrl.envs.GymWrapper``. With ``env.workers=K > 1`` there are K such vector envs, one per
``torchrl.envs.ParallelEnv`` worker process, each with ``num_envs / K`` copies, and their
``[K, m]`` batch is flattened to ``[num_envs]`` (:mod:`.parallel`): the same seeds, the same
steps, bitwise. Then, in this process, these transforms, in this order:

1. ``VecGymEnvTransform`` (added by TorchRL): puts the true terminal observation in
   ``("next", "observation")`` on an auto-reset step and hands the reset observation back
   on the following ``reset``.
2. :class:`ObsNorm`: casts the observation to float32 and, when ``normalize_obs``,
   normalises it with running mean/var (float64 buffers, in the transform's
   ``state_dict``), clipped to ``+-clip_obs``. Frozen when ``training=False``.
3. :class:`EpisodeStats`: ``("next", "episode_return")`` (float32) and
   ``("next", "episode_length")`` (int64), both ``[N, 1]``, from the RAW reward.
4. :class:`RewardScale` (only when ``scale_reward`` and ``training``): divides the
   reward by the running std of the discounted return (VecNormalize style), clipped
   to +-10.

Output tensordict contract, batch size ``[N]``: ``"observation"`` float32 ``[N, obs_dim]``,
``"action"`` (float32 ``[N, act_dim]`` continuous; int64 ``[N]`` discrete),
``("next", "reward")`` float32 ``[N, 1]``, ``"done"``/``"terminated"``/``"truncated"``
bool ``[N, 1]``, ``"episode_return"``/``"episode_length"`` ``[N, 1]`` (root and next).

Exact resume: ``env_state(env)`` / ``load_env_state(env, state)`` (:mod:`.snapshot`).

Modules, one concern each: :mod:`.tasks` (task table, config validation), :mod:`.gym_env`
(making one gymnasium env quietly), :mod:`.spaces` (probing, cached), :mod:`.wrappers`
(gymnasium side), :mod:`.transforms` (TorchRL side), :mod:`.factory` (``make_env``),
:mod:`.snapshot` (exact resume), :mod:`.parallel` (``env.workers``), :mod:`.render` (video viewer, ``MUJOCO_GL`` check),
:mod:`.compat` (the private attributes of other libraries that remain).

Importing this package imports nothing heavy and changes no global state: the names below are
loaded on first use, so ``ngac.envs.render.check_gl_backend`` can run before TorchRL (which
imports MuJoCo, which fails at import under a broken ``MUJOCO_GL``) is imported.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "TASKS",
    "ObsNorm",
    "EpisodeStats",
    "RewardScale",
    "validate_env_config",
    "make_env",
    "action_kind",
    "env_dims",
    "sync_normalization",
    "set_training",
    "env_state",
    "load_env_state",
    "load_normalization",
    "vector_env",
]

#: public name -> the module (relative to this package) that defines it
_WHERE = {
    "TASKS": "tasks",
    "validate_env_config": "tasks",
    "ObsNorm": "transforms",
    "EpisodeStats": "transforms",
    "RewardScale": "transforms",
    "make_env": "factory",
    "sync_normalization": "factory",
    "set_training": "factory",
    "action_kind": "spaces",
    "env_dims": "spaces",
    "env_state": "snapshot",
    "load_env_state": "snapshot",
    "load_normalization": "snapshot",
    "vector_env": "wrappers",
}

if TYPE_CHECKING:
    from .factory import make_env, set_training, sync_normalization
    from .snapshot import env_state, load_env_state, load_normalization
    from .spaces import action_kind, env_dims
    from .tasks import TASKS, validate_env_config
    from .transforms import EpisodeStats, ObsNorm, RewardScale
    from .wrappers import vector_env


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
