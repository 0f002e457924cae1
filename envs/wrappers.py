"""The gymnasium side: per-env wrappers and the resumable ``SyncVectorEnv``.

:func:`vector_env` is the one way back from the TorchRL env to this vector env: TorchRL's
``GymWrapper`` forwards an attribute it does not have to the env it wraps (documented on
``torchrl.envs.common._EnvWrapper``), and :attr:`ResumableSyncVectorEnv.ngac_vector_env` is
such an attribute.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from torchrl.envs import EnvBase

from .gym_env import make_gym_env

__all__ = [
    "DropInfo",
    "ClipAction",
    "ResumableSyncVectorEnv",
    "single_factory",
    "vector_env",
    "wrapper_chain",
    "seed_action_spaces",
]

#: what the last ``reset()`` of a :class:`ResumableSyncVectorEnv` was
RESET_KINDS = ("real", "resume", "autoreset")


class DropInfo(gym.Wrapper):
    """Drops gymnasium's per-step info dict (reward_ctrl, x_position, ...)."""

    def step(self, action: Any) -> tuple[Any, Any, Any, Any, dict]:
        obs, rew, term, trunc, _ = self.env.step(action)
        return obs, rew, term, trunc, {}

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        obs, _ = self.env.reset(**kwargs)
        return obs, {}


class ClipAction(gym.wrappers.ClipAction):
    """gymnasium's ClipAction (action space becomes Box(-inf, inf)), with a cheaper clip.

    ``np.clip`` costs ~3.5 us on a 6-vector in numpy 2; ``minimum(maximum())`` ~1 us, and this
    runs once per env per step.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        low, high = env.action_space.low, env.action_space.high
        self.func = lambda a: np.minimum(np.maximum(a, low), high)


class ResumableSyncVectorEnv(SyncVectorEnv):
    """SyncVectorEnv with ``AutoresetMode.SAME_STEP`` and two resets that do not reset.

    * After :meth:`restore` the next full reset returns the restored observation ("resume")
      instead of resetting the simulators.
    * When EVERY env auto-reset during the last step, TorchRL sees ``_reset.all()`` and calls a
      full ``reset()``, which would reset all envs a second time (discarding the auto-reset
      observations and consuming RNG; this happens on every synchronised time-limit
      truncation). That reset returns the current observations instead ("autoreset").

    With SAME_STEP auto-reset, ``step`` overwrites every per-env buffer of gymnasium's vector
    env, so the state that carries from one step to the next is held by the sub-envs (see
    :mod:`ngac.envs.snapshot`) plus what the last ``step``/``reset`` returned: the observation
    (:attr:`observations`) and which envs finished (:attr:`finished`). Both are recorded here
    from the public return values.
    """

    def __init__(self, env_fns: list[Callable[[], gym.Env]]):
        super().__init__(env_fns, autoreset_mode=AutoresetMode.SAME_STEP)
        self.observations: np.ndarray = np.zeros((self.num_envs, *self.single_observation_space.shape))
        self.finished = np.zeros(self.num_envs, dtype=np.bool_)
        #: which kind (one of :data:`RESET_KINDS`) the last ``reset()`` was
        self.last_reset = "real"
        self._resume_pending = False
        self._pending_seed: int | None = None

    #: this vector env's index among the workers of a multi-process env (0 in one process)
    part: int = 0
    #: called after :meth:`ngac_restore` (set by the builder: renews TorchRL's auto-reset transform)
    ngac_after_restore: Callable[[], None] | None = None

    def ngac_snapshot(self) -> dict[str, Any]:
        """This part's simulators, RNGs and current step (see :mod:`ngac.envs.snapshot`)."""
        from .snapshot import vector_snapshot

        return vector_snapshot(self)

    def ngac_restore(self, parts: list[dict[str, Any]]) -> None:
        """Load ``parts[self.part]`` (one snapshot per worker: each worker picks its own)."""
        from .snapshot import vector_restore

        if self.ngac_after_restore is not None:
            self.ngac_after_restore()
        vector_restore(self, parts[self.part])

    def ngac_last_reset(self) -> str:
        """:attr:`last_reset`, as a method: what a multi-process env asks its workers."""
        return self.last_reset

    @property
    def ngac_vector_env(self) -> ResumableSyncVectorEnv:
        """This env; reached through TorchRL's GymWrapper by :func:`vector_env`."""
        return self

    def seed_next_reset(self, seed: int) -> None:
        """The next reset without a seed of its own seeds env ``i`` with ``seed + i``."""
        self._pending_seed = int(seed)

    def restore(self, observations: np.ndarray, finished: np.ndarray) -> None:
        """Set the current observation and finished mask; the next full reset is a no-op ("resume")."""
        self.observations = np.array(observations, copy=True)
        self.finished = np.array(finished, dtype=np.bool_, copy=True)
        self._resume_pending = True

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict]:
        obs, rew, term, trunc, info = super().step(actions)
        self.observations = np.array(obs, copy=True)
        self.finished = np.logical_or(term, trunc)
        return obs, rew, term, trunc, info

    def reset(self, *, seed: Any = None, options: dict | None = None) -> tuple[Any, dict]:
        if seed is None and self._pending_seed is not None and not self._resume_pending:
            seed = self._pending_seed
        self._pending_seed = None
        if seed is None and not options:
            if self._resume_pending:
                self._resume_pending = False
                self.last_reset = "resume"
                return copy.deepcopy(self.observations), {}
            if self.finished.all():
                self.finished[:] = False
                self.last_reset = "autoreset"
                return copy.deepcopy(self.observations), {}
        self._resume_pending = False
        self.last_reset = "real"
        obs, info = super().reset(seed=seed, options=options)
        self.observations = np.array(obs, copy=True)
        self.finished[:] = False
        return obs, info


def single_factory(env_id: str, max_episode_steps: int | None, continuous: bool) -> Callable[[], gym.Env]:
    """A thunk that builds one wrapped sub-env: (ClipAction for continuous tasks) and DropInfo."""

    def thunk() -> gym.Env:
        env = make_gym_env(env_id, max_episode_steps)
        if continuous:
            env = ClipAction(env)
        return DropInfo(env)

    return thunk


def wrapper_chain(env: gym.Env) -> list[gym.Env]:
    """``env``, the env it wraps, and so on down to the unwrapped env (last)."""
    chain = [env]
    while isinstance(chain[-1], gym.Wrapper):
        chain.append(chain[-1].env)
    return chain


def seed_action_spaces(vec: ResumableSyncVectorEnv, seed: int) -> None:
    """Seed the vector action space with ``seed`` and every action space in sub-env ``i``'s chain with ``seed + i``.

    Each space is then seeded, so a snapshot reads its RNG (``space.np_random``) without
    seeding it on the way.
    """
    vec.action_space.seed(int(seed))
    for i, e in enumerate(vec.envs):
        seen: set[int] = set()
        for w in wrapper_chain(e):
            space = w.action_space
            if id(space) not in seen:
                seen.add(id(space))
                space.seed(int(seed) + i)


def vector_env(env: EnvBase) -> ResumableSyncVectorEnv:
    """The :class:`ResumableSyncVectorEnv` inside an env from ``make_env`` (its ``.envs`` are the copies)."""
    vec = getattr(getattr(env, "base_env", env), "ngac_vector_env", None)
    if not isinstance(vec, ResumableSyncVectorEnv):
        raise ValueError(f"expected an env from ngac.envs.make_env, got {type(env).__name__}")
    return vec
