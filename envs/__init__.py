"""Environment layer: Gymnasium tasks behind one TorchRL factory.

``make_env(cfg)`` builds ``num_envs`` copies of one Gymnasium task inside ONE process
(``gymnasium.vector.SyncVectorEnv`` with ``AutoresetMode.SAME_STEP``) wrapped by
``torchrl.envs.GymWrapper``, followed by these transforms, in this order:

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

Exact resume: ``env_state(env)`` / ``load_env_state(env, state)``. Take the snapshot at a
rollout boundary (after ``step_and_maybe_reset`` or a collector batch). After
``load_env_state`` the NEXT full ``env.reset()`` does not reset the simulators: it returns
the restored current observation (this is what a ``Collector`` built after the restore
sees), so stepping continues bitwise identically.
"""

from __future__ import annotations

import copy
import difflib
import numbers
import warnings
from typing import Any, Mapping

import gymnasium as gym
import mujoco
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from tensordict import TensorDictBase
from torchrl.data import Unbounded
from torchrl.envs import EnvBase, GymWrapper, TransformedEnv
from torchrl.envs.transforms import Transform

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
]

def _mujoco_warning(message: str) -> None:
    # MuJoCo prints its warnings to stdout and appends them to MUJOCO_LOG.TXT in the working
    # directory, once per model load (32 identical lines for 32 environments). Python's warning
    # machinery shows each distinct message once instead, and writes no file.
    warnings.warn(f"MuJoCo: {message.strip()}", RuntimeWarning, stacklevel=2)


mujoco.set_mju_user_warning(_mujoco_warning)

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

_DEFAULTS: dict[str, Any] = {
    "num_envs": 32,
    "normalize_obs": True,
    "scale_reward": True,
    "gamma": 0.99,
    "max_episode_steps": None,
    "clip_obs": 10.0,
}

_REWARD_CLIP = 10.0
_EPS = 1e-8


# --------------------------------------------------------------------------- config


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    if isinstance(cfg, Mapping):
        return cfg.get(key, default)
    try:  # OmegaConf DictConfig and similar
        return cfg.get(key, default)
    except AttributeError:
        return getattr(cfg, key, default)


def _is_int(x: Any) -> bool:
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
        raise ValueError(
            f"env.id={env_id!r} is not a registered gymnasium id{hint}; valid choices: {', '.join(known)}"
        )
    num_envs = _get(cfg, "num_envs", _DEFAULTS["num_envs"])
    if not _is_int(num_envs) or num_envs < 1:
        raise ValueError(f"env.num_envs={num_envs!r} is invalid; valid choices: an integer >= 1")
    for key in ("normalize_obs", "scale_reward"):
        val = _get(cfg, key, _DEFAULTS[key])
        if not isinstance(val, (bool, np.bool_)):
            raise ValueError(f"env.{key}={val!r} is invalid; valid choices: true, false")
    gamma = _get(cfg, "gamma", _DEFAULTS["gamma"])
    if not _is_real(gamma) or not (0.0 < float(gamma) <= 1.0):
        raise ValueError(f"env.gamma={gamma!r} is invalid; valid choices: a number in (0, 1]")
    mes = _get(cfg, "max_episode_steps", None)
    if mes is not None and (not _is_int(mes) or mes < 1):
        raise ValueError(
            f"env.max_episode_steps={mes!r} is invalid; valid choices: null (gymnasium default) or an integer >= 1"
        )
    clip = _get(cfg, "clip_obs", _DEFAULTS["clip_obs"])
    if clip is not None and (not _is_real(clip) or not float(clip) > 0):
        raise ValueError(f"env.clip_obs={clip!r} is invalid; valid choices: null (no clipping) or a number > 0")


def _cfg_values(cfg: Any) -> dict[str, Any]:
    validate_env_config(cfg)
    out = {"id": _get(cfg, "id")}
    for key, default in _DEFAULTS.items():
        out[key] = _get(cfg, key, default)
    return out


# --------------------------------------------------------------------------- spaces


def _make_single(env_id: str, max_episode_steps: int | None) -> gym.Env:
    kwargs = {}
    if max_episode_steps is not None:
        kwargs["max_episode_steps"] = int(max_episode_steps)
    return gym.make(env_id, **kwargs)


def _space_kind(space: gym.Space) -> str:
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        return "continuous"
    if isinstance(space, gym.spaces.Discrete):
        return "discrete"
    raise ValueError(
        f"unsupported action space {space!r}; supported: Box with 1-D shape (continuous), Discrete"
    )


def _check_obs_space(space: gym.Space) -> None:
    if not (isinstance(space, gym.spaces.Box) and len(space.shape) == 1):
        raise ValueError(f"unsupported observation space {space!r}; supported: Box with 1-D shape")


def _spaces(cfg: Any) -> tuple[gym.Space, gym.Space]:
    vals = _cfg_values(cfg)
    env = _make_single(vals["id"], vals["max_episode_steps"])
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def action_kind(cfg: Any) -> str:
    """'continuous' or 'discrete', read from the action space without stepping."""
    _, act_space = _spaces(cfg)
    return _space_kind(act_space)


def env_dims(cfg: Any) -> tuple[int, int]:
    """(obs_dim, act_dim) for continuous tasks, (obs_dim, num_actions) for discrete ones."""
    obs_space, act_space = _spaces(cfg)
    kind = _space_kind(act_space)
    _check_obs_space(obs_space)
    obs_dim = int(obs_space.shape[0])
    if kind == "discrete":
        return obs_dim, int(act_space.n)
    return obs_dim, int(act_space.shape[0])


# --------------------------------------------------------------------------- gymnasium side


class _DropInfo(gym.Wrapper):
    """Drops gymnasium's per-step info dict (reward_ctrl, x_position, ...)."""

    _EMPTY: dict = {}

    def step(self, action):
        obs, rew, term, trunc, _ = self.env.step(action)
        return obs, rew, term, trunc, {}

    def reset(self, **kwargs):
        obs, _ = self.env.reset(**kwargs)
        return obs, {}


class _ResumableSyncVectorEnv(SyncVectorEnv):
    """SyncVectorEnv (SAME_STEP auto-reset) with two no-op resets.

    * After ``load_env_state`` the next full reset returns the restored observation
      ("resume") instead of resetting the simulators.
    * When EVERY env auto-reset during the last step, TorchRL sees ``_reset.all()`` and
      calls a full ``reset()``, which would reset all envs a second time (discarding the
      auto-reset observations and consuming RNG; this happens on every synchronised
      time-limit truncation). That reset returns the current observations instead.

    ``_ngac_last_reset`` says which kind the last reset was: "real", "resume", "autoreset".
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._ngac_resume_pending = False
        self._ngac_last_reset = "real"
        self._ngac_pending_seed: int | None = None

    def reset(self, *, seed=None, options=None):
        if seed is None and self._ngac_pending_seed is not None and not self._ngac_resume_pending:
            seed = self._ngac_pending_seed  # first reset after make_env: env i gets seed + i
        self._ngac_pending_seed = None
        if seed is None and not options:
            if self._ngac_resume_pending:
                self._ngac_resume_pending = False
                self._ngac_last_reset = "resume"
                return copy.deepcopy(self._observations), {}
            if self._autoreset_envs.all():
                self._autoreset_envs[:] = False
                self._ngac_last_reset = "autoreset"
                return copy.deepcopy(self._observations), {}
        self._ngac_resume_pending = False
        self._ngac_last_reset = "real"
        return super().reset(seed=seed, options=options)


class _ClipAction(gym.wrappers.ClipAction):
    """gymnasium's ClipAction (action space becomes Box(-inf, inf)), with a cheaper clip.

    ``np.clip`` costs ~3.5 us on a 6-vector in numpy 2; ``minimum(maximum())`` ~1 us, and this
    runs once per env per step.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        low, high = env.action_space.low, env.action_space.high
        self.func = lambda a: np.minimum(np.maximum(a, low), high)


def _single_factory(env_id: str, max_episode_steps: int | None, continuous: bool):
    def thunk():
        env = _make_single(env_id, max_episode_steps)
        if continuous:
            env = _ClipAction(env)
        return _DropInfo(env)

    return thunk


# --------------------------------------------------------------------------- transforms


def _resumed(transform: Transform) -> bool:
    """True when the full reset being processed did not reset the simulators.

    (A resume after load_env_state, or the no-op reset after every env auto-reset.)
    """
    parent = transform.parent
    if parent is None:
        return False
    vec = getattr(parent.base_env, "_env", None)
    return getattr(vec, "_ngac_last_reset", "real") != "real"


def _full_reset_mask(tensordict: TensorDictBase | None) -> torch.Tensor | None:
    """None for a full reset, else the boolean [N] mask of the envs being reset."""
    if tensordict is None:
        return None
    reset = tensordict.get("_reset", None)
    if reset is None:
        return None
    reset = reset.reshape(-1)
    return None if bool(reset.all()) else reset


def _merge_moments(mean: np.ndarray, var: np.ndarray, count: np.ndarray, x: np.ndarray) -> None:
    """Fold the rows of ``x`` ([n, k]) into running (mean, var, count) in place (Chan et al.).

    The statistics are numpy views of the transforms' float64 torch buffers: these run once per
    environment step on a few dozen numbers, where numpy's per-call cost is a fraction of torch's.
    """
    n = x.shape[0]
    if n == 0:
        return
    b_mean = x.sum(0) / n
    d = x - b_mean
    b_var = (np.einsum("ij,ij->j", d, d) / n).reshape(mean.shape)  # ~4x cheaper than x.var(0) here
    b_mean = b_mean.reshape(mean.shape)
    tot = count + n
    delta = b_mean - mean
    m2 = var * count + b_var * n + np.square(delta) * (count * n / tot)
    mean += delta * (n / tot)
    var[...] = m2 / tot
    count[...] = tot


def _np(t: torch.Tensor) -> np.ndarray:
    """A float64 numpy view (or copy) of a CPU tensor."""
    return t.detach().cpu().numpy().astype(np.float64, copy=False)


class ObsNorm(Transform):
    """Float32 cast and (optionally) running mean/var normalisation of ``"observation"``.

    Statistics are float64 buffers ``mean``, ``var``, ``count`` (SB3 RunningMeanStd style:
    the whole batch of N observations merged per step). They update on every step and on
    full resets while not frozen; ``freeze()`` / ``unfreeze()`` control this.
    """

    def __init__(self, obs_dim: int, *, normalize: bool = True, clip: float | None = 10.0):
        super().__init__(in_keys=["observation"], out_keys=["observation"])
        self.normalize = bool(normalize)
        self.clip = None if clip is None else float(clip)
        self.frozen = False
        self.register_buffer("mean", torch.zeros(obs_dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(obs_dim, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))

    def freeze(self) -> "ObsNorm":
        self.frozen = True
        return self

    def unfreeze(self) -> "ObsNorm":
        self.frozen = False
        return self

    def _update(self, x: np.ndarray, finite: bool) -> None:
        x = x.reshape(-1, x.shape[-1])
        if not finite:  # a non-finite observation must not poison the statistics
            x = x[np.isfinite(x).all(-1)]
        _merge_moments(self.mean.numpy(), self.var.numpy(), self.count.numpy(), x)

    def _norm(self, x: np.ndarray, finite: bool) -> torch.Tensor:
        if not self.normalize:
            return torch.from_numpy(x.astype(np.float32))
        y = x - self.mean.numpy()
        y /= np.sqrt(self.var.numpy() + _EPS)
        if self.clip is not None:
            np.minimum(np.maximum(y, -self.clip, out=y), self.clip, out=y)  # np.clip costs 3x more
            if not finite:  # clipping would turn an infinite observation into a plausible one
                y[~np.isfinite(x)] = np.nan
        return torch.from_numpy(y.astype(np.float32))

    def _transform(self, td: TensorDictBase, update: bool) -> TensorDictBase:
        obs = td.get("observation")
        x = _np(obs)
        finite = bool(np.isfinite(x.sum()))  # one reduction; the per-element checks only when needed
        if update and self.normalize and not self.frozen:
            self._update(x, finite)
        td.set("observation", self._norm(x, finite).to(obs.device))
        return td

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        return self._transform(next_tensordict, update=True)

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        update = _full_reset_mask(tensordict) is None and not _resumed(self)
        return self._transform(tensordict_reset, update=update)

    def transform_observation_spec(self, observation_spec):
        spec = observation_spec["observation"]
        observation_spec["observation"] = Unbounded(
            shape=spec.shape, dtype=torch.float32, device=spec.device
        )
        return observation_spec


class EpisodeStats(Transform):
    """Undiscounted return and length of the current episode, from the raw reward.

    On the step where done is True they hold the finished episode's totals; the next step
    restarts from that step's reward. Accumulators are buffers (``ret`` float64, ``length``
    int64, shape [N]) and so part of ``state_dict``.
    """

    def __init__(self, num_envs: int):
        super().__init__(in_keys=["reward"], out_keys=["episode_return", "episode_length"])
        self.register_buffer("ret", torch.zeros(num_envs, dtype=torch.float64))
        self.register_buffer("length", torch.zeros(num_envs, dtype=torch.int64))

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        r = _np(next_tensordict.get("reward")).reshape(-1)
        done = next_tensordict.get("done").reshape(-1).numpy()
        ret, length = self.ret.numpy(), self.length.numpy()
        ret += r
        length += 1
        next_tensordict.set("episode_return", torch.from_numpy(ret.astype(np.float32)).unsqueeze(-1))
        next_tensordict.set("episode_length", torch.from_numpy(length.copy()).unsqueeze(-1))
        ret[done] = 0.0
        length[done] = 0
        return next_tensordict

    @torch.no_grad()
    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        mask = _full_reset_mask(tensordict)
        if mask is None:
            if not _resumed(self):
                self.ret.zero_()
                self.length.zero_()
        else:
            self.ret.masked_fill_(mask, 0.0)
            self.length.masked_fill_(mask, 0)
        tensordict_reset.set("episode_return", self.ret.to(torch.float32).unsqueeze(-1))
        tensordict_reset.set("episode_length", self.length.clone().unsqueeze(-1))
        return tensordict_reset

    def transform_observation_spec(self, observation_spec):
        shape = (*observation_spec.shape, 1)
        dev = observation_spec.device
        observation_spec["episode_return"] = Unbounded(shape=shape, dtype=torch.float32, device=dev)
        observation_spec["episode_length"] = Unbounded(shape=shape, dtype=torch.int64, device=dev)
        return observation_spec


class RewardScale(Transform):
    """Reward / running std of the discounted return (SB3 VecNormalize ``norm_reward``).

    Per step: ``G <- gamma * G + r``; the running variance of ``G`` (over all N envs) is
    updated unless frozen; ``r / sqrt(var + 1e-8)`` clipped to +-10; ``G`` is zeroed on done.
    """

    def __init__(self, num_envs: int, gamma: float = 0.99, clip: float = _REWARD_CLIP):
        super().__init__(in_keys=["reward"], out_keys=["reward"])
        self.gamma = float(gamma)
        self.clip = float(clip)
        self.frozen = False
        self.register_buffer("ret", torch.zeros(num_envs, dtype=torch.float64))
        self.register_buffer("ret_mean", torch.zeros((), dtype=torch.float64))
        self.register_buffer("ret_var", torch.ones((), dtype=torch.float64))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))

    def freeze(self) -> "RewardScale":
        self.frozen = True
        return self

    def unfreeze(self) -> "RewardScale":
        self.frozen = False
        return self

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        reward = next_tensordict.get("reward")
        r = _np(reward).reshape(-1)
        done = next_tensordict.get("done").reshape(-1).numpy()
        ret = self.ret.numpy()
        # A non-finite reward passes through (the trainer rejects the batch) but stays out of G.
        finite = bool(np.isfinite(r.sum()))
        ret *= self.gamma
        ret += r if finite else np.where(np.isfinite(r), r, 0.0)
        if not self.frozen:
            _merge_moments(self.ret_mean.numpy(), self.ret_var.numpy(), self.count.numpy(), ret.reshape(-1, 1))
        scaled = r / np.sqrt(self.ret_var.numpy() + _EPS)
        np.minimum(np.maximum(scaled, -self.clip, out=scaled), self.clip, out=scaled)
        next_tensordict.set("reward", torch.from_numpy(scaled.astype(np.float32)).reshape(reward.shape))
        ret[done] = 0.0
        return next_tensordict

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        mask = _full_reset_mask(tensordict)
        if mask is None:
            if not _resumed(self):
                self.ret.zero_()
        else:
            self.ret.masked_fill_(mask, 0.0)
        return tensordict_reset


# --------------------------------------------------------------------------- factory


def make_env(
    cfg: Any,
    *,
    num_envs: int | None = None,
    seed: int = 0,
    training: bool = True,
) -> EnvBase:
    """N copies of one task in one process, as a TorchRL env on the CPU (see the module docstring).

    Environments always live on the CPU (the transforms update their statistics through numpy
    views); with a GPU only the updates move, and the collector acts with a CPU copy of the actor.
    """
    vals = _cfg_values(cfg)
    n = vals["num_envs"] if num_envs is None else num_envs
    if not _is_int(n) or n < 1:
        raise ValueError(f"num_envs={n!r} is invalid; valid choices: an integer >= 1")
    n = int(n)
    obs_space, act_space = _spaces(cfg)
    kind = _space_kind(act_space)
    _check_obs_space(obs_space)
    obs_dim = int(obs_space.shape[0])

    thunks = [
        _single_factory(vals["id"], vals["max_episode_steps"], kind == "continuous") for _ in range(n)
    ]
    # GymWrapper runs a short spec check (random steps) at construction: keep it off the
    # caller's torch RNG, and re-seed the simulators afterwards.
    with torch.random.fork_rng(devices=[]):
        vec = _ResumableSyncVectorEnv(thunks, autoreset_mode=AutoresetMode.SAME_STEP)
        env = GymWrapper(vec, categorical_action_encoding=True, device="cpu")
    if not isinstance(env, TransformedEnv):  # pragma: no cover - torchrl always adds VecGymEnvTransform
        env = TransformedEnv(env)
    vec._ngac_pending_seed = int(seed)
    vec.action_space.seed(int(seed))
    for i, e in enumerate(vec.envs):
        e.action_space.seed(int(seed) + i)
    _vecgym_memo_clear(env)

    env.append_transform(ObsNorm(obs_dim, normalize=vals["normalize_obs"], clip=vals["clip_obs"]))
    env.append_transform(EpisodeStats(n))
    if vals["scale_reward"] and training:
        env.append_transform(RewardScale(n, gamma=vals["gamma"]))
    set_training(env, training)
    return env


def _transforms(env: EnvBase) -> list[Transform]:
    t = getattr(env, "transform", None)
    if t is None:
        return []
    return list(t) if hasattr(t, "__iter__") else [t]


def _find(env: EnvBase, cls: type) -> Transform | None:
    for t in _transforms(env):
        if isinstance(t, cls):
            return t
    return None


def _vecgym_memo_clear(env: EnvBase) -> None:
    for t in _transforms(env):
        if hasattr(t, "_memo") and isinstance(t._memo, dict):
            t._memo.clear()


def set_training(env: EnvBase, training: bool) -> None:
    """Unfreeze (training=True) or freeze (False) observation/reward statistics."""
    for t in _transforms(env):
        if isinstance(t, (ObsNorm, RewardScale)):
            t.unfreeze() if training else t.freeze()


def sync_normalization(src_env: EnvBase, dst_env: EnvBase) -> None:
    """Copy the observation-normalisation statistics of ``src_env`` into ``dst_env``.

    Typical use: before each evaluation, ``sync_normalization(train_env, eval_env)``; the
    eval env (``training=False``) keeps them frozen.
    """
    src, dst = _find(src_env, ObsNorm), _find(dst_env, ObsNorm)
    if src is None or dst is None:
        raise ValueError("sync_normalization: both envs must come from make_env (ObsNorm transform missing)")
    with torch.no_grad():
        dst.mean.copy_(src.mean)
        dst.var.copy_(src.var)
        dst.count.copy_(src.count)


# --------------------------------------------------------------------------- exact resume

_SIMPLE = (bool, int, float, str, type(None), np.bool_, np.integer, np.floating)


def _simple_attrs(obj: Any) -> dict[str, Any]:
    out = {}
    for k, v in vars(obj).items():
        if k in ("np_random", "_np_random", "spec", "metadata", "render_mode"):
            continue
        if isinstance(v, np.ndarray) and v.dtype != object:
            out[k] = v.copy()
        elif isinstance(v, _SIMPLE):
            out[k] = v
    return out


def _restore_attrs(obj: Any, attrs: Mapping[str, Any]) -> None:
    for k, v in attrs.items():
        setattr(obj, k, v.copy() if isinstance(v, np.ndarray) else v)


def _wrapper_chain(env: gym.Env) -> list[gym.Env]:
    chain = []
    e = env
    while isinstance(e, gym.Wrapper):
        chain.append(e)
        e = e.env
    chain.append(e)  # the unwrapped env last
    return chain


def _space_rng(space: gym.Space) -> dict | None:
    rng = getattr(space, "_np_random", None)
    return None if rng is None else copy.deepcopy(rng.bit_generator.state)


def _set_space_rng(space: gym.Space, state: dict | None) -> None:
    if state is None:
        return
    space.np_random.bit_generator.state = copy.deepcopy(state)


def _single_state(env: gym.Env) -> dict[str, Any]:
    chain = _wrapper_chain(env)
    base = chain[-1]
    st: dict[str, Any] = {
        "wrappers": [_simple_attrs(w) for w in chain[:-1]],
        "unwrapped": _simple_attrs(base),
        "np_random": copy.deepcopy(base.np_random.bit_generator.state),
        "np_random_seed": getattr(base, "_np_random_seed", None),
        "action_space_rng": [_space_rng(w.action_space) for w in chain],
    }
    if hasattr(base, "model") and hasattr(base, "data"):
        import mujoco

        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        buf = np.empty(mujoco.mj_stateSize(base.model, spec), dtype=np.float64)
        mujoco.mj_getState(base.model, base.data, buf, spec)
        st["mj_state"] = buf
        st["mj_time"] = float(base.data.time)
    return st


def _load_single_state(env: gym.Env, st: Mapping[str, Any]) -> None:
    chain = _wrapper_chain(env)
    base = chain[-1]
    if len(st["wrappers"]) != len(chain) - 1:
        raise ValueError("load_env_state: the wrapper stack differs from the snapshot's (different config?)")
    for w, attrs in zip(chain[:-1], st["wrappers"]):
        _restore_attrs(w, attrs)
    _restore_attrs(base, st["unwrapped"])
    base.np_random.bit_generator.state = copy.deepcopy(st["np_random"])
    if st.get("np_random_seed") is not None:
        base._np_random_seed = st["np_random_seed"]
    for w, s in zip(chain, st["action_space_rng"]):
        _set_space_rng(w.action_space, s)
    if "mj_state" in st:
        import mujoco

        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        mujoco.mj_setState(base.model, base.data, np.asarray(st["mj_state"], dtype=np.float64), spec)
        mujoco.mj_forward(base.model, base.data)


def _vec(env: EnvBase) -> _ResumableSyncVectorEnv:
    vec = getattr(env.base_env, "_env", None)
    if not isinstance(vec, _ResumableSyncVectorEnv):
        raise ValueError("env_state/load_env_state: env must come from ngac.envs.make_env")
    return vec


def env_state(env: EnvBase) -> dict[str, Any]:
    """Everything needed to continue stepping ``env`` bitwise identically (picklable)."""
    vec = _vec(env)
    state = {
        "num_envs": vec.num_envs,
        "envs": [_single_state(e) for e in vec.envs],
        "vector": {
            "observations": copy.deepcopy(vec._observations),
            "env_obs": [None if o is None else np.array(o, copy=True) for o in vec._env_obs],
            "rewards": vec._rewards.copy(),
            "terminations": vec._terminations.copy(),
            "truncations": vec._truncations.copy(),
            "autoreset_envs": vec._autoreset_envs.copy(),
            "action_space_rng": _space_rng(vec.action_space),
        },
        "transforms": {
            f"{i}:{type(t).__name__}": {k: v.detach().clone() for k, v in t.state_dict().items()}
            for i, t in enumerate(_transforms(env))
            if isinstance(t, (ObsNorm, EpisodeStats, RewardScale))
        },
    }
    return state


def load_env_state(env: EnvBase, state: Mapping[str, Any]) -> None:
    """Restore a snapshot from :func:`env_state` into an env built with the same config.

    The next full ``env.reset()`` then returns the restored current observation instead of
    resetting the simulators (one-shot).
    """
    vec = _vec(env)
    if state["num_envs"] != vec.num_envs:
        raise ValueError(f"load_env_state: snapshot has num_envs={state['num_envs']}, env has {vec.num_envs}")
    for e, st in zip(vec.envs, state["envs"]):
        _load_single_state(e, st)
    v = state["vector"]
    vec._observations = copy.deepcopy(v["observations"])
    vec._env_obs = [None if o is None else np.array(o, copy=True) for o in v["env_obs"]]
    vec._rewards = v["rewards"].copy()
    vec._terminations = v["terminations"].copy()
    vec._truncations = v["truncations"].copy()
    vec._autoreset_envs = v["autoreset_envs"].copy()
    _set_space_rng(vec.action_space, v["action_space_rng"])
    mine = {
        f"{i}:{type(t).__name__}": t
        for i, t in enumerate(_transforms(env))
        if isinstance(t, (ObsNorm, EpisodeStats, RewardScale))
    }
    if set(mine) != set(state["transforms"]):
        raise ValueError(
            f"load_env_state: transforms differ: snapshot {sorted(state['transforms'])}, env {sorted(mine)}"
        )
    for key, t in mine.items():
        t.load_state_dict(state["transforms"][key])
    _vecgym_memo_clear(env)
    vec._ngac_resume_pending = True


def load_normalization(env: EnvBase, state: Mapping[str, Any]) -> None:
    """Load only the observation statistics of an :func:`env_state` snapshot, frozen.

    For evaluation environments, which may differ from the training one in size and reward
    scaling but must see observations exactly as the policy was trained on them.
    """
    saved = [v for k, v in state["transforms"].items() if k.split(":", 1)[1] == "ObsNorm"]
    norm = _find(env, ObsNorm)
    if not saved or norm is None:
        raise ValueError("load_normalization: no observation statistics in the snapshot or no ObsNorm in the env")
    norm.load_state_dict(saved[0])
    norm.freeze()
