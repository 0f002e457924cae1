"""Exact resume: ``env_state`` / ``load_env_state``, and ``load_normalization`` for evaluation envs.

A snapshot holds, per sub-env:

* every plain instance attribute (numbers, strings, numeric arrays) of each gymnasium wrapper
  and of the unwrapped env, read with ``vars()``: TimeLimit's step counter, the classic-control
  ``state``, MuJoCo envs' bookkeeping. Generic on purpose: it names no attribute, so a library
  upgrade that renames one is still captured;
* the env's ``np_random`` generator state and that of every action space on the wrapper chain
  (``space.np_random``);
* for MuJoCo envs, the full integration state (``mujoco.mj_getState`` with
  ``mjSTATE_INTEGRATION``) and the time;

plus the vector env's current observation and finished mask
(:class:`~ngac.envs.wrappers.ResumableSyncVectorEnv`), the vector action space's RNG, and the
``state_dict`` of every transform of this package.

Take it at a rollout boundary (after ``step_and_maybe_reset`` or a collector batch). After
``load_env_state`` the NEXT full ``env.reset()`` does not reset the simulators: it returns the
restored current observation (this is what a ``Collector`` built after the restore sees), so
stepping continues bitwise identically.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from torchrl.envs import EnvBase
from torchrl.envs.transforms import VecGymEnvTransform

from .factory import env_transforms, find_transform
from .parallel import VectorParts
from .transforms import EpisodeStats, ObsNorm, RewardScale
from .wrappers import ResumableSyncVectorEnv, wrapper_chain

__all__ = [
    "env_state",
    "load_env_state",
    "load_normalization",
    "vector_snapshot",
    "vector_restore",
    "fresh_autoreset_transform",
]

_SIMPLE = (bool, int, float, str, type(None), np.bool_, np.integer, np.floating)
_SKIP_ATTRS = ("np_random", "_np_random", "spec", "metadata", "render_mode")
_STATEFUL = (ObsNorm, EpisodeStats, RewardScale)


def _simple_attrs(obj: Any) -> dict[str, Any]:
    out = {}
    for k, v in vars(obj).items():
        if k in _SKIP_ATTRS:
            continue
        if isinstance(v, np.ndarray) and v.dtype != object:
            out[k] = v.copy()
        elif isinstance(v, _SIMPLE):
            out[k] = v
    return out


def _restore_attrs(obj: Any, attrs: Mapping[str, Any]) -> None:
    for k, v in attrs.items():
        setattr(obj, k, v.copy() if isinstance(v, np.ndarray) else v)


def _space_rng(space: gym.Space) -> dict:
    return copy.deepcopy(space.np_random.bit_generator.state)  # make_env seeded it: a pure read


def _set_space_rng(space: gym.Space, state: dict | None) -> None:
    if state is not None:
        space.np_random.bit_generator.state = copy.deepcopy(state)


def _single_state(env: gym.Env) -> dict[str, Any]:
    chain = wrapper_chain(env)
    base = chain[-1]
    st: dict[str, Any] = {
        "wrappers": [_simple_attrs(w) for w in chain[:-1]],
        "unwrapped": _simple_attrs(base),
        "np_random": copy.deepcopy(base.np_random.bit_generator.state),
        "action_space_rng": [_space_rng(w.action_space) for w in chain],
    }
    if hasattr(base, "model") and hasattr(base, "data"):
        import mujoco  # a MuJoCo env exists, so mujoco is imported already

        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        buf = np.empty(mujoco.mj_stateSize(base.model, spec), dtype=np.float64)
        mujoco.mj_getState(base.model, base.data, buf, spec)
        st["mj_state"] = buf
        st["mj_time"] = float(base.data.time)
    return st


def _load_single_state(env: gym.Env, st: Mapping[str, Any]) -> None:
    chain = wrapper_chain(env)
    base = chain[-1]
    if len(st["wrappers"]) != len(chain) - 1:
        raise ValueError("load_env_state: the wrapper stack differs from the snapshot's (different config?)")
    for w, attrs in zip(chain[:-1], st["wrappers"]):
        _restore_attrs(w, attrs)
    _restore_attrs(base, st["unwrapped"])
    base.np_random.bit_generator.state = copy.deepcopy(st["np_random"])
    for w, s in zip(chain, st["action_space_rng"]):
        _set_space_rng(w.action_space, s)
    if "mj_state" in st:
        import mujoco

        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        mujoco.mj_setState(base.model, base.data, np.asarray(st["mj_state"], dtype=np.float64), spec)
        mujoco.mj_forward(base.model, base.data)


def _stateful_transforms(env: EnvBase) -> dict[str, Any]:
    return {f"{i}:{type(t).__name__}": t for i, t in enumerate(env_transforms(env)) if isinstance(t, _STATEFUL)}


def vector_snapshot(vec: ResumableSyncVectorEnv) -> dict[str, Any]:
    """One vector env's share of a snapshot: its sub-envs and its current step (runs in its process)."""
    return {
        "num_envs": vec.num_envs,
        "envs": [_single_state(e) for e in vec.envs],
        "vector": {
            "observations": np.array(vec.observations, copy=True),
            "autoreset_envs": vec.finished.copy(),
            "action_space_rng": _space_rng(vec.action_space),
        },
    }


def vector_restore(vec: ResumableSyncVectorEnv, part: Mapping[str, Any]) -> None:
    """Load a :func:`vector_snapshot`; the next full reset returns its current observation."""
    if part["num_envs"] != vec.num_envs:
        raise ValueError(f"load_env_state: snapshot part has num_envs={part['num_envs']}, env has {vec.num_envs}")
    for e, st in zip(vec.envs, part["envs"]):
        _load_single_state(e, st)
    v = part["vector"]
    _set_space_rng(vec.action_space, v["action_space_rng"])
    vec.restore(v["observations"], v["autoreset_envs"])


def env_state(env: EnvBase) -> dict[str, Any]:
    """Everything needed to continue stepping ``env`` bitwise identically (picklable)."""
    parts = VectorParts(env).snapshot()
    return {
        "num_envs": sum(p["num_envs"] for p in parts),
        "workers": len(parts),
        "parts": parts,
        "transforms": {
            key: {k: v.detach().clone() for k, v in t.state_dict().items()}
            for key, t in _stateful_transforms(env).items()
        },
    }


def fresh_autoreset_transform(env: EnvBase) -> None:
    """Replace TorchRL's ``VecGymEnvTransform`` by a new one with the same settings.

    It remembers the last step's done mask and auto-reset observations; those of the env before
    the restore must not be replayed into the restored state's first reset.
    """
    for i, t in enumerate(env_transforms(env)):
        if isinstance(t, VecGymEnvTransform):
            fresh = VecGymEnvTransform(t.final_name, t.missing_obs_value, native_autoreset=t.native_autoreset)
            env.insert_transform(i, fresh)  # a lone transform becomes a Compose here, so pop works
            env.transform.pop(i + 1)
            return


def load_env_state(env: EnvBase, state: Mapping[str, Any]) -> None:
    """Restore a snapshot from :func:`env_state` into an env built with the same config.

    The next full ``env.reset()`` then returns the restored current observation instead of
    resetting the simulators (one-shot).
    """
    parts = state.get("parts")
    if parts is None:  # a one-process snapshot from before env.workers
        parts = [{"num_envs": state["num_envs"], "envs": state["envs"], "vector": state["vector"]}]
    handle = VectorParts(env)
    n = int(env.batch_size.numel())
    if state["num_envs"] != n:
        raise ValueError(f"load_env_state: snapshot has num_envs={state['num_envs']}, env has {n}")
    if len(parts) != handle.workers:
        raise ValueError(f"load_env_state: snapshot has env.workers={len(parts)}, env has {handle.workers}")
    mine = _stateful_transforms(env)
    if set(mine) != set(state["transforms"]):
        raise ValueError(
            f"load_env_state: transforms differ: snapshot {sorted(state['transforms'])}, env {sorted(mine)}"
        )
    for key, t in mine.items():
        t.load_state_dict(state["transforms"][key])
    handle.restore(list(parts))


def load_normalization(env: EnvBase, state: Mapping[str, Any]) -> None:
    """Load only the observation statistics of an :func:`env_state` snapshot, frozen.

    For evaluation environments, which may differ from the training one in size and reward
    scaling but must see observations exactly as the policy was trained on them.
    """
    saved = [v for k, v in state["transforms"].items() if k.split(":", 1)[1] == "ObsNorm"]
    norm = find_transform(env, ObsNorm)
    if not saved or norm is None:
        raise ValueError("load_normalization: no observation statistics in the snapshot or no ObsNorm in the env")
    norm.load_state_dict(saved[0])
    norm.freeze()
