"""The TorchRL transforms of ``make_env``: observation normalisation, episode statistics, reward scaling.

All three keep their statistics in float64 buffers (so in ``state_dict``) and update them
through numpy views: they run once per environment step on a few dozen numbers, where numpy's
per-call cost is a fraction of torch's.

Resets. A reset with a partial ``"_reset"`` mask clears the per-episode accumulators of the
masked envs. A full reset clears all of them, unless the vector env did not really reset
(``last_reset`` of :class:`~ngac.envs.wrappers.ResumableSyncVectorEnv` is "resume" after
``load_env_state``, or "autoreset" after every env auto-reset in the last step): then the
accumulators and the observation statistics are left as they are.
"""

from __future__ import annotations

import numpy as np
import torch
from tensordict import TensorDictBase
from torchrl.data import Composite, Unbounded
from torchrl.envs.transforms import Transform

from .parallel import VectorParts

__all__ = ["ObsNorm", "EpisodeStats", "RewardScale", "REWARD_CLIP"]

#: RewardScale clips the scaled reward to +-REWARD_CLIP
REWARD_CLIP = 10.0
_EPS = 1e-8


def _resumed(transform: Transform) -> bool:
    """True when the full reset being processed did not reset the simulators (see the module docstring)."""
    parent = transform.parent
    if parent is None:
        return False
    try:
        return VectorParts(parent).last_reset() != "real"
    except ValueError:  # not an env from make_env
        return False


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

    With the batch's own moments ``m_b``, ``v_b`` and ``delta = m_b - mean``::

        count' = count + n
        mean'  = mean + delta * n / count'
        var'   = (var * count + v_b * n + delta^2 * count * n / count') / count'

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
    the whole batch of N observations merged per step, prior ``mean = 0, var = 1, count = 1e-4``).
    They update on every step and on full resets while not frozen; ``freeze()`` / ``unfreeze()``
    control this. The output is

        y = clip((x - mean) / sqrt(var + 1e-8), -clip, +clip)

    computed in float64 and cast to float32 (just the cast when ``normalize=False``). A row with a
    non-finite entry is left out of the statistics, and its non-finite entries become NaN rather
    than being clipped to a plausible value, so the trainer can reject the batch.
    """

    def __init__(self, obs_dim: int, *, normalize: bool = True, clip: float | None = 10.0):
        super().__init__(in_keys=["observation"], out_keys=["observation"])
        self.normalize = bool(normalize)
        self.clip = None if clip is None else float(clip)
        self.frozen = False
        self.register_buffer("mean", torch.zeros(obs_dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(obs_dim, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))

    def freeze(self) -> ObsNorm:
        self.frozen = True
        return self

    def unfreeze(self) -> ObsNorm:
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

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        spec = observation_spec["observation"]
        observation_spec["observation"] = Unbounded(shape=spec.shape, dtype=torch.float32, device=spec.device)
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

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        shape = (*observation_spec.shape, 1)
        dev = observation_spec.device
        observation_spec["episode_return"] = Unbounded(shape=shape, dtype=torch.float32, device=dev)
        observation_spec["episode_length"] = Unbounded(shape=shape, dtype=torch.int64, device=dev)
        return observation_spec


class RewardScale(Transform):
    """Reward / running std of the discounted return (SB3 VecNormalize ``norm_reward``).

    Per step, for every env ``i``:

        G_i <- gamma * G_i + r_i
        (mean, var, count) <- the pooled moments of (mean, var, count) and the batch {G_1..G_N}
        r_i <- clip(r_i / sqrt(var + 1e-8), -clip, +clip)
        G_i <- 0 where done_i

    with the prior ``mean = 0, var = 1, count = 1e-4``; the moments stay put while frozen. Over a
    run, ``var`` is therefore exactly the variance of every ``G`` seen so far pooled with the prior:
    ``(1e-4 + sum G^2) / (1e-4 + M) - (sum G / (1e-4 + M))^2`` after ``M`` values. A non-finite
    reward passes through unscaled and is left out of ``G``.
    """

    def __init__(self, num_envs: int, gamma: float = 0.99, clip: float = REWARD_CLIP):
        super().__init__(in_keys=["reward"], out_keys=["reward"])
        self.gamma = float(gamma)
        self.clip = float(clip)
        self.frozen = False
        self.register_buffer("ret", torch.zeros(num_envs, dtype=torch.float64))
        self.register_buffer("ret_mean", torch.zeros((), dtype=torch.float64))
        self.register_buffer("ret_var", torch.ones((), dtype=torch.float64))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))

    def freeze(self) -> RewardScale:
        self.frozen = True
        return self

    def unfreeze(self) -> RewardScale:
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
