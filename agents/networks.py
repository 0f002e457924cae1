"""Policy and value networks, wired as TorchRL modules (contracts are tensordict keys).

Keys: the actor reads ``"observation"`` and writes ``"action"`` plus its log-prob key
(``actor.log_prob_key``, ``"action_log_prob"``) and the distribution parameters (``"loc"``,
``"scale"`` or ``"logits"``); the critic reads ``"observation"`` and writes ``"state_value"``.
The collector acts through :class:`RolloutPolicy`, the same actor's sampling path without the
distribution objects, which writes only ``"action"`` and the log-prob key.

Continuous actions use a diagonal Gaussian with a state-independent log-std, *clipped by the
environment* rather than tanh-squashed: the stored action is the Gaussian sample, so
log-probabilities and the Fisher are exact (the tanh Jacobian term is clamped near the bounds,
which biases both), and this matches SB3 and CleanRL.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from tensordict import TensorDictBase
from tensordict.nn import InteractionType, TensorDictModule, TensorDictModuleBase
from torch import Tensor, nn
from torch.distributions import Categorical
from torchrl.envs.utils import ExplorationType, exploration_type
from torchrl.modules import IndependentNormal, ProbabilisticActor

from ngac.curvature import BroadcastParameter

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "silu": nn.SiLU}


def mlp(in_dim: int, out_dim: int, hidden: Sequence[int], activation: str, out_gain: float = 1.0) -> nn.Sequential:
    """An MLP with orthogonal init (as in the PPO/ACKTR baselines) and a small last layer."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation={activation!r} is not valid; choose one of {sorted(ACTIVATIONS)}")
    layers: list[nn.Module] = []
    last = in_dim
    for width in hidden:
        lin = nn.Linear(last, int(width))
        nn.init.orthogonal_(lin.weight, gain=2**0.5)
        nn.init.zeros_(lin.bias)
        layers += [lin, ACTIVATIONS[activation]()]
        last = int(width)
    head = nn.Linear(last, out_dim)
    nn.init.orthogonal_(head.weight, gain=out_gain)
    nn.init.zeros_(head.bias)
    layers.append(head)
    return nn.Sequential(*layers)


class GaussianHead(nn.Module):
    """``observation -> (loc, scale)`` with a state-independent log-std."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int], activation: str, init_log_std: float):
        super().__init__()
        self.mean = mlp(obs_dim, act_dim, hidden, activation, out_gain=0.01)
        self.log_std = BroadcastParameter(act_dim, init_log_std)

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        loc = self.mean(obs)
        return loc, self.log_std(loc).clamp(-20.0, 2.0).exp()


class CategoricalHead(nn.Module):
    def __init__(self, obs_dim: int, num_actions: int, hidden: Sequence[int], activation: str):
        super().__init__()
        self.logits = mlp(obs_dim, num_actions, hidden, activation, out_gain=0.01)

    def forward(self, obs: Tensor) -> Tensor:
        return self.logits(obs)


def make_actor(
    obs_dim: int, act_dim: int, kind: str, hidden: Sequence[int], activation: str, init_log_std: float
) -> ProbabilisticActor:
    """The stochastic actor. ``kind`` is ``"continuous"`` or ``"discrete"``."""
    if kind == "continuous":
        net = TensorDictModule(
            GaussianHead(obs_dim, act_dim, hidden, activation, init_log_std),
            in_keys=["observation"],
            out_keys=["loc", "scale"],
        )
        dist_cls, dist_kwargs, dist_keys = IndependentNormal, {"upscale": 1.0, "tanh_loc": False}, ["loc", "scale"]
    elif kind == "discrete":
        net = TensorDictModule(
            CategoricalHead(obs_dim, act_dim, hidden, activation), in_keys=["observation"], out_keys=["logits"]
        )
        dist_cls, dist_kwargs, dist_keys = Categorical, {}, ["logits"]
    else:
        raise ValueError(f"action kind {kind!r} is not supported; valid: continuous, discrete")
    return ProbabilisticActor(
        net,
        in_keys=dist_keys,
        out_keys=["action"],
        distribution_class=dist_cls,
        distribution_kwargs=dist_kwargs,
        return_log_prob=True,
        default_interaction_type=InteractionType.RANDOM,
    )


class RolloutPolicy(TensorDictModuleBase):
    r"""The actor's sampling path for the collector: same head, same parameters, no distribution object.

    Reads ``"observation"``, writes ``"action"`` and the actor's log-prob key, exactly as the
    :class:`~torchrl.modules.ProbabilisticActor` from :func:`make_actor` does in RANDOM mode, but
    with a handful of tensor ops: building a TorchRL distribution and running the probabilistic
    tensordict machinery costs about 1 ms per environment step, a third of a raw vector step.

    Gaussian: :math:`a = \mu(o) + \sigma \epsilon`, :math:`\epsilon \sim N(0, I)`,
    :math:`\log\pi(a|o) = \sum_i -\epsilon_i^2/2 - \log\sigma_i - \log(2\pi)/2`.
    Categorical: :math:`a \sim \mathrm{softmax}(\ell(o))`, :math:`\log\pi(a|o) = \mathrm{log\_softmax}(\ell(o))_a`.
    Under a deterministic exploration type it returns the mean (mode) action.
    """

    def __init__(self, actor: ProbabilisticActor) -> None:
        super().__init__()
        self.head = actor.module[0].module
        if not isinstance(self.head, (GaussianHead, CategoricalHead)):
            raise TypeError(f"RolloutPolicy needs an actor from make_actor, got a {type(self.head).__name__} head")
        self.log_prob_key = actor.log_prob_keys[0]
        self.in_keys = ["observation"]
        self.out_keys = ["action", self.log_prob_key]

    @torch.no_grad()
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        obs = tensordict.get("observation")
        sample = exploration_type() in (None, ExplorationType.RANDOM)
        head = self.head
        if isinstance(head, GaussianHead):
            loc = head.mean(obs)
            log_std = head.log_std.param.clamp(-20.0, 2.0)
            if sample:
                eps = torch.randn_like(loc)
                action = torch.addcmul(loc, log_std.exp(), eps)
                log_prob = (eps.square().sum(-1) * -0.5) - (log_std.sum() + 0.5 * math.log(2 * math.pi) * loc.shape[-1])
            else:
                action = loc
                log_prob = (-log_std.sum() - 0.5 * math.log(2 * math.pi) * loc.shape[-1]).expand(loc.shape[:-1])
        else:
            log_p = head(obs).log_softmax(-1)
            if sample:
                flat = log_p.reshape(-1, log_p.shape[-1]).exp()
                action = torch.multinomial(flat, 1).reshape(log_p.shape[:-1])
            else:
                action = log_p.argmax(-1)
            log_prob = log_p.gather(-1, action.unsqueeze(-1)).squeeze(-1)
        tensordict.set("action", action)
        tensordict.set(self.log_prob_key, log_prob)
        return tensordict


def make_critic(obs_dim: int, hidden: Sequence[int], activation: str) -> TensorDictModule:
    return TensorDictModule(
        mlp(obs_dim, 1, hidden, activation, out_gain=1.0), in_keys=["observation"], out_keys=["state_value"]
    )


def mean_kl(old, new) -> Tensor:
    """Mean ``KL(old || new)`` over the batch, for the distributions the actor builds."""
    return torch.distributions.kl_divergence(old, new).mean()
