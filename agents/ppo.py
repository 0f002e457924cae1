"""PPO (the paper's reference algorithm) on TorchRL's ``ClipPPOLoss``, a sibling of the
natural-gradient agent on the same on-policy base: same networks, collector, GAE, checkpoints and
metric names, so a PPO run sits beside the curvature backends in one MLflow experiment. It has no
curvature backend; ``perf/update_ms`` is the time of its whole optimisation of a batch.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from tensordict import TensorDictBase
from torch import Tensor
from torchrl.objectives import ClipPPOLoss

from . import metrics as M
from .base import OnPolicyAgent
from .guard import Snapshot, all_finite


class PPOAgent(OnPolicyAgent):
    def __init__(self, agent: dict[str, Any], obs_dim: int, act_dim: int, action_kind: str) -> None:
        super().__init__(agent, obs_dim, act_dim, action_kind)
        self.loss = ClipPPOLoss(
            actor_network=self.actor,
            critic_network=self.critic,
            clip_epsilon=agent["clip_epsilon"],
            entropy_coeff=agent["entropy_coeff"],
            critic_coeff=agent["critic_coeff"],
            normalize_advantage=False,  # the batch advantages are normalised once, by the base
        )
        self.loss.set_keys(sample_log_prob=self.actor.log_prob_keys[0])

    def configure_optimizers(self):
        return torch.optim.Adam(self.loss.parameters(), lr=self.cfg["lr"], eps=1e-5, fused=True)

    def optimise(self, flat: TensorDictBase, adv: Tensor, target: Tensor) -> dict[str, float]:
        # Every minibatch step is taken with no host sync and no vote across ranks; one check at the end
        # (agents/guard.py): if any loss was non-finite on any rank, the whole update is undone.
        opt = self.optimizers(use_pl_optimizer=False)
        params = list(self.loss.parameters())
        snapshot = Snapshot(params, opt)
        backward = self.manual_backward if self.world > 1 else Tensor.backward  # DDP averages the gradients
        data = flat.clone(False)
        data.set("advantage", adv.unsqueeze(-1))
        keys = ("loss_objective", "loss_critic", "kl_approx", "clip_fraction")
        losses: list[Tensor] = []
        parts: dict[str, list[Tensor]] = {k: [] for k in keys}
        for _ in range(self.cfg["epochs"]):
            for idx in torch.randperm(data.shape[0], device=adv.device).split(self.cfg["minibatch_size"]):
                out = self.loss(data[idx])
                loss = (
                    out["loss_objective"]
                    + out["loss_critic"]
                    + out.get("loss_entropy", torch.zeros((), device=adv.device))
                )
                opt.zero_grad()
                backward(loss)
                torch.nn.utils.clip_grad_norm_(params, self.cfg["max_grad_norm"])
                opt.step()
                losses.append(loss.detach())
                for k in keys:
                    if k in out.keys():
                        parts[k].append(out[k].detach().mean())
        finite, _ = all_finite(losses)
        applied = self.all_ranks(finite)
        if not applied:
            snapshot.restore()  # never apply a non-finite step
            self.skipped_updates += 1
            warnings.warn(f"update {self.updates} skipped: a non-finite PPO loss", RuntimeWarning, stacklevel=2)
        sums = {k: all_finite(v)[1] if applied else [] for k, v in parts.items()}
        obs_td = flat.select("observation")
        with torch.no_grad():
            entropy = float(self.actor.get_dist(obs_td.clone(False)).entropy().mean())

        def mean(xs: list[float]) -> float:
            return sum(xs) / len(xs) if xs else float("nan")

        return {
            M.VALUE_LOSS: mean(sums["loss_critic"]),
            M.POLICY_LOSS: mean(sums["loss_objective"]),
            M.APPROX_KL: mean(sums["kl_approx"]),
            M.CLIPFRAC: mean(sums["clip_fraction"]),
            M.ENTROPY: entropy,
        }
