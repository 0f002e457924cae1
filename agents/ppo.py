"""PPO baseline (the paper's reference algorithm) on TorchRL's ``ClipPPOLoss``.

Same networks, collector, GAE, checkpoints and metric names as the natural-gradient agent, so a
PPO run sits beside the curvature backends in one MLflow experiment. ``curvature/update_ms`` is
the time of the whole PPO optimisation of a batch (the cost of producing the policy step).
"""

from __future__ import annotations

import time
from typing import Any

import torch
from tensordict import TensorDictBase
from torch import Tensor
from torchrl.objectives import ClipPPOLoss

from .actor_critic import ActorCritic, explained_variance


class PPO(ActorCritic):
    def __init__(self, agent: dict[str, Any], curvature: dict[str, Any] | None, obs_dim: int, act_dim: int, action_kind: str):
        super().__init__(agent, None, obs_dim, act_dim, action_kind)
        self.loss = ClipPPOLoss(
            actor_network=self.actor,
            critic_network=self.critic,
            clip_epsilon=agent["clip_epsilon"],
            entropy_coeff=agent["entropy_coeff"],
            critic_coeff=agent["critic_coeff"],
            normalize_advantage=False,  # the batch advantages are normalised once, as for NAC
        )
        self.loss.set_keys(sample_log_prob=self.actor.log_prob_keys[0])

    def configure_optimizers(self):
        return torch.optim.Adam(self.loss.parameters(), lr=self.cfg["ppo_lr"], eps=1e-5, fused=True)

    def update(
        self, flat: TensorDictBase, obs_td: TensorDictBase, action: Tensor, adv: Tensor, target: Tensor
    ) -> dict[str, float]:
        start = time.perf_counter()
        opt = self.optimizers()
        data = flat.clone(False)
        data.set("advantage", adv.unsqueeze(-1))
        sums: dict[str, list[float]] = {"loss_objective": [], "loss_critic": [], "kl_approx": [], "clip_fraction": []}
        skipped = 0
        for _ in range(self.cfg["epochs"]):
            for idx in torch.randperm(data.shape[0], device=adv.device).split(self.cfg["minibatch_size"]):
                out = self.loss(data[idx])
                loss = out["loss_objective"] + out["loss_critic"] + out.get("loss_entropy", torch.zeros((), device=adv.device))
                if not torch.isfinite(loss):
                    skipped += 1  # never apply a non-finite step
                    continue
                opt.zero_grad()
                self.manual_backward(loss)
                torch.nn.utils.clip_grad_norm_(self.loss.parameters(), self.cfg["max_grad_norm"])
                opt.step()
                for k in sums:
                    if k in out.keys():
                        sums[k].append(float(out[k].detach().mean()))
        self.skipped_updates += int(skipped > 0)
        with torch.no_grad():
            pred = self.critic(obs_td.clone(False))["state_value"].squeeze(-1)
            entropy = float(self.actor.get_dist(obs_td.clone(False)).entropy().mean())

        def mean(xs: list[float]) -> float:
            return sum(xs) / len(xs) if xs else float("nan")

        return {
            "losses/value_loss": mean(sums["loss_critic"]),
            "losses/policy_loss": mean(sums["loss_objective"]),
            "losses/approx_kl": mean(sums["kl_approx"]),
            "losses/clipfrac": mean(sums["clip_fraction"]),
            "losses/entropy": entropy,
            "losses/explained_variance": explained_variance(pred, target),
            "curvature/update_ms": (time.perf_counter() - start) * 1e3,
        }
