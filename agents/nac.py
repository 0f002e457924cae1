"""The natural-gradient actor-critic (the paper's SMAC and its ablations).

On each batch: the critic regresses the GAE value targets (Adam, a few epochs of minibatches);
then the curvature backend turns the policy gradient into a direction ``d``, the step rule picks
``eta``, and ``theta <- theta + eta * d`` is applied only if everything is finite.

The agent never asks which curvature backend it holds.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any

import torch
from tensordict import TensorDictBase
from torch import Tensor

from ngac.curvature import PolicyBatch, as_schedule, build_curvature

from . import metrics as M
from .base import OnPolicyAgent
from .guard import Snapshot, all_finite, fit_value
from .networks import mean_kl
from .step_rules import take_step


class NaturalGradientAgent(OnPolicyAgent):
    uses_curvature = True

    @classmethod
    def from_config(cls, cfg: dict[str, Any], obs_dim: int, act_dim: int, action_kind: str) -> NaturalGradientAgent:
        return cls(cfg["agent"], cfg["curvature"], obs_dim, act_dim, action_kind)

    @classmethod
    def algo_name(cls, cfg: dict[str, Any]) -> str:
        return str(cfg["curvature"]["name"])

    def __init__(self, agent: dict[str, Any], curvature: dict[str, Any], obs_dim: int, act_dim: int, action_kind: str):
        super().__init__(agent, obs_dim, act_dim, action_kind)
        self.curvature = build_curvature(**curvature)
        self.lr = as_schedule(agent["lr"], "agent.lr")
        self._norm_history: list[float] = []

    def advice(self) -> str | None:
        return self.curvature.advise(self.cfg["step_rule"])

    def configure_optimizers(self):
        # fused: one kernel for the whole step instead of ~10 ops per tensor (0.1 vs 0.5 ms on a 64x64
        # critic here); the critic takes 160 of these per update at the defaults.
        return torch.optim.Adam(self.critic.parameters(), lr=self.cfg["critic"]["lr"], fused=True)

    def optimise(self, flat: TensorDictBase, adv: Tensor, target: Tensor) -> dict[str, float]:
        obs_td = flat.select("observation")
        metrics, critic_applied = self._update_critic(obs_td["observation"], target)
        skipped = self.skipped_updates
        metrics.update(self._update_actor(obs_td, flat["action"], adv))
        if not critic_applied and self.skipped_updates == skipped:  # one count per update, whichever part refused
            self.skipped_updates += 1
        return metrics

    def _update_critic(self, obs: Tensor, target: Tensor) -> tuple[dict[str, float], bool]:
        """The critic's epochs of Adam minibatches, with no host sync and no vote across ranks per step
        (:mod:`.guard`): every step is taken, then one check per update; if any loss was non-finite on any
        rank, the critic and its optimiser state go back to what they were before this batch.

        Returns the metrics and whether the update was applied.
        """
        start = time.perf_counter()
        # The torch optimiser itself, not Lightning's wrapper (its closure, hooks and step counting, which
        # nothing here uses): about 15% of a critic update on one CPU core (benchmarks/critic_update.py).
        opt = self.optimizers(use_pl_optimizer=False)
        ccfg = self.cfg["critic"]
        value_net = self.critic.module  # the plain MLP: no tensordict work inside the hot loop
        snapshot = Snapshot(value_net.parameters(), opt)
        # Under DDP, manual_backward arms DDP's reducer, which averages the critic's gradients over the
        # ranks in the backward pass (the one collective a data-parallel step needs); in one process it
        # is loss.backward() and its hooks, which nothing uses.
        backward = self.manual_backward if self.world > 1 else Tensor.backward
        losses = fit_value(value_net, opt, obs, target, ccfg["epochs"], ccfg["minibatch_size"], backward)
        finite, values = all_finite(losses)
        applied = self.all_ranks(finite)
        if not applied:
            snapshot.restore()
            warnings.warn(
                f"update {self.updates}: critic update discarded (a non-finite loss "
                f"{'on this rank' if not finite else 'on another rank'}); the critic is unchanged",
                RuntimeWarning,
                stacklevel=2,
            )
        return {
            M.VALUE_LOSS: sum(values) / len(values) if applied and values else float("nan"),
            M.CRITIC_MS: (time.perf_counter() - start) * 1e3,
        }, applied

    def _update_actor(self, obs_td: TensorDictBase, action: Tensor, adv: Tensor) -> dict[str, float]:
        actor = self.actor
        with torch.no_grad():
            old_dist = actor.get_dist(obs_td.clone(False))
            old_logp = old_dist.log_prob(action)

        def log_prob_fn() -> Tensor:
            return actor.get_dist(obs_td.clone(False)).log_prob(action)

        def kl_fn() -> Tensor:
            return mean_kl(old_dist, actor.get_dist(obs_td.clone(False)))

        def surrogate_fn() -> Tensor:
            return ((log_prob_fn() - old_logp).exp() * adv).mean()

        # Data parallel: every batch statistic (the backend's, the step rule's KL and surrogate) is
        # the mean over the ranks, so every rank computes the same direction and step.
        all_mean = self.all_mean if self.world > 1 else None
        all_gather = self.all_gather if self.world > 1 else None
        direction = self.curvature.direction(
            PolicyBatch(actor, log_prob_fn, adv, kl_fn, all_mean=all_mean, all_gather=all_gather)
        )
        if all_mean is not None:
            kl_local, surrogate_local = kl_fn, surrogate_fn
            kl_fn = lambda: all_mean(kl_local())  # noqa: E731
            surrogate_fn = lambda: all_mean(surrogate_local())  # noqa: E731
        params = [p for p in actor.parameters() if p.requires_grad]
        result = take_step(
            self.cfg["step_rule"],
            params,
            direction.vector,
            direction.dFd,
            lr=float(self.lr(self.updates)),
            max_kl=self.cfg["max_kl"],
            kl_fn=kl_fn,
            surrogate_fn=surrogate_fn,
            max_backtracks=self.cfg["line_search"]["max_backtracks"],
            shrink=self.cfg["line_search"]["shrink"],
        )
        self.curvature.observe(
            kl=result.kl,
            applied=result.applied,
            eta=result.eta if result.applied else float("nan"),
            surrogate_gain=result.surrogate_gain if result.applied else float("nan"),
        )
        if not result.applied:
            self.skipped_updates += 1
            warnings.warn(f"update {self.updates} skipped: {result.reason}", RuntimeWarning, stacklevel=2)
        self._warn_on_exploding_norm(direction.norm * (result.eta if math.isfinite(result.eta) else 1.0))

        metrics = {f"{M.CURVATURE_PREFIX}{k}": v for k, v in direction.metrics().items()}
        metrics.update(
            {
                M.ETA: result.eta,
                M.BACKTRACKS: float(result.backtracks),
                M.APPROX_KL: result.kl,
                M.SURROGATE_GAIN: result.surrogate_gain,
                M.ENTROPY: float(old_dist.entropy().mean()),
            }
        )
        return metrics

    def _warn_on_exploding_norm(self, step_norm: float) -> None:
        """The paper's failure mode with too small a damping: update norms that explode."""
        hist = self._norm_history
        if math.isfinite(step_norm) and len(hist) >= 5:
            median = sorted(hist)[len(hist) // 2]
            if median > 0 and step_norm > self.cfg["explode_factor"] * median:
                warnings.warn(
                    f"update norm {step_norm:.3g} is {step_norm / median:.0f}x the recent median "
                    f"({median:.3g}): the damping may be too small for this step rule",
                    RuntimeWarning,
                    stacklevel=2,
                )
        if math.isfinite(step_norm):
            hist.append(step_norm)
            del hist[:-50]

    def extra_state(self) -> dict[str, Any]:
        return {"curvature": self.curvature.state_dict(), "norm_history": list(self._norm_history)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.curvature.load_state_dict(state["curvature"])
        self._norm_history = list(state["norm_history"])
