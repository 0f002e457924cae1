"""Shared fixtures for the curvature tests: small policies and an independent dense reference.

The reference never touches :class:`Scores`: per-sample scores come from ``torch.func``
(``functional_call`` + ``vmap(grad)``), ``S`` is ``B x d`` in ``policy.parameters()`` order,
``F = S^T S / B`` and ``g = S^T A / B``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import pytest
import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from ngac.curvature import BroadcastParameter, PolicyBatch

torch.set_num_threads(1)

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "sigmoid": nn.Sigmoid,
}


def mlp(sizes: Sequence[int], activation: str = "tanh") -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class GaussianPolicy(nn.Module):
    """Diagonal Gaussian, mean MLP, state-independent log-std; ``forward`` = per-sample log-prob."""

    def __init__(self, obs: int, act: int, hidden: Sequence[int], activation: str = "tanh", log_std: float = -0.3):
        super().__init__()
        self.net = mlp([obs, *hidden, act], activation)
        self.log_std = BroadcastParameter(act, log_std)

    def dist(self, obs: Tensor) -> torch.distributions.Normal:
        return torch.distributions.Normal(self.net(obs), self.log_std(obs).exp())

    def forward(self, obs: Tensor, act: Tensor) -> Tensor:
        return self.dist(obs).log_prob(act).sum(-1)

    def sample(self, obs: Tensor) -> Tensor:
        with torch.no_grad():
            return self.dist(obs).sample()


class CategoricalPolicy(nn.Module):
    """Softmax policy over ``n`` actions, logits from an MLP; ``forward`` = per-sample log-prob."""

    def __init__(self, obs: int, n: int, hidden: Sequence[int], activation: str = "tanh"):
        super().__init__()
        self.net = mlp([obs, *hidden, n], activation)

    def forward(self, obs: Tensor, act: Tensor) -> Tensor:
        return torch.log_softmax(self.net(obs), -1).gather(-1, act[:, None].long()).squeeze(-1)

    def sample(self, obs: Tensor) -> Tensor:
        with torch.no_grad():
            return torch.distributions.Categorical(logits=self.net(obs)).sample()


@dataclass
class Problem:
    """A policy, a batch of (obs, act, adv) and the dense torch.func reference."""

    policy: nn.Module
    obs: Tensor
    act: Tensor
    adv: Tensor
    old: dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.old = {k: v.detach().clone() for k, v in self.policy.named_parameters()}

    # ------------------------------------------------------------- for the backends
    def log_prob_fn(self) -> Tensor:
        return self.policy(self.obs, self.act)

    def kl_fn(self) -> Tensor:
        """Mean KL(pi_old || pi_theta) over the batch states (Gaussian policies)."""
        pol: GaussianPolicy = self.policy  # type: ignore[assignment]
        with torch.no_grad():
            old = torch.distributions.Normal(
                functional_call(pol.net, {k[4:]: v for k, v in self.old.items() if k.startswith("net.")}, (self.obs,)),
                self.old["log_std.param"].exp().expand(self.obs.shape[0], -1),
            )
        return torch.distributions.kl_divergence(old, pol.dist(self.obs)).sum(-1).mean()

    def batch(self, with_kl: bool = False) -> PolicyBatch:
        return PolicyBatch(self.policy, self.log_prob_fn, self.adv, kl_fn=self.kl_fn if with_kl else None)

    # ------------------------------------------------------------- dense reference
    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.policy.named_parameters()]

    @cached_property
    def S(self) -> Tensor:
        params = {k: v.detach() for k, v in self.policy.named_parameters()}

        def logp(p: dict[str, Tensor], o: Tensor, a: Tensor) -> Tensor:
            return functional_call(self.policy, p, (o[None], a[None]))[0]

        per = vmap(grad(logp), in_dims=(None, 0, 0))(params, self.obs, self.act)
        return torch.cat([per[n].reshape(self.obs.shape[0], -1) for n in self.names], dim=1)

    @property
    def B(self) -> int:
        return self.obs.shape[0]

    @property
    def d(self) -> int:
        return self.S.shape[1]

    @cached_property
    def F(self) -> Tensor:
        return self.S.T @ self.S / self.B

    @cached_property
    def g(self) -> Tensor:
        return self.S.T @ self.adv.to(self.S) / self.B

    def solve(self, M: Tensor, damping: float, rhs: Tensor | None = None) -> Tensor:
        eye = torch.eye(M.shape[0], dtype=M.dtype)
        return torch.linalg.solve(M + damping * eye, self.g if rhs is None else rhs)

    # ------------------------------------------- independent Kronecker factors
    def offsets(self) -> dict[str, int]:
        out, off = {}, 0
        for n, p in self.policy.named_parameters():
            out[n] = off
            off += p.numel()
        return out

    def layer_inputs(self) -> list[Tensor]:
        """Inputs of each Linear of ``policy.net`` (forward by hand), bias column appended."""
        x, out = self.obs, []
        with torch.no_grad():
            for m in self.policy.net:
                if isinstance(m, nn.Linear):
                    out.append(torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], 1))
                x = m(x)
        return out

    def kron_blocks(self) -> list[tuple[Tensor, Tensor, Tensor]]:
        """Per layer ``(A, G, flat index matrix [out, in'])`` from the reference alone.

        ``a`` comes from a hand-run forward pass; ``delta`` is the per-sample bias gradient read
        off the torch.func scores (the bias gradient of a Linear equals its output gradient).
        """
        offs, S, blocks = self.offsets(), self.S, []
        linears = [(i, m) for i, m in enumerate(self.policy.net) if isinstance(m, nn.Linear)]
        for (i, m), a in zip(linears, self.layer_inputs()):
            out, inp = m.out_features, m.in_features
            b0, w0 = offs[f"net.{i}.bias"], offs[f"net.{i}.weight"]
            delta = S[:, b0 : b0 + out]
            idx = torch.empty(out, inp + 1, dtype=torch.long)
            idx[:, :inp] = w0 + torch.arange(out * inp).view(out, inp)
            idx[:, inp] = b0 + torch.arange(out)
            blocks.append((a.T @ a / self.B, delta.T @ delta / self.B, idx))
        if isinstance(self.policy, GaussianPolicy):
            o = offs["log_std.param"]
            n = self.policy.log_std.param.numel()
            delta = S[:, o : o + n]
            one = torch.ones(1, 1, dtype=S.dtype)
            blocks.append((one, delta.T @ delta / self.B, (o + torch.arange(n))[:, None]))
        return blocks

    def kron_matrix(self, blocks: list[tuple[Tensor, Tensor, Tensor]]) -> Tensor:
        """Block-diagonal ``d x d`` K-FAC matrix: entry ((o,i),(o',i')) = G[o,o'] A[i,i']."""
        K = torch.zeros(self.d, self.d, dtype=self.S.dtype)
        for A, G, idx in blocks:
            flat = idx.reshape(-1)  # row-major (o, i') order, matching kron(G, A)
            K[flat[:, None], flat[None, :]] = torch.kron(G, A)
        return K


def make_problem(
    seed: int = 0,
    hidden: Sequence[int] = (5, 4),
    batch: int = 24,
    obs: int = 3,
    act: int = 2,
    activation: str = "tanh",
    dtype: torch.dtype = torch.float64,
    categorical: bool = False,
    adv: Tensor | None = None,
) -> Problem:
    torch.manual_seed(seed)
    policy: nn.Module = (
        CategoricalPolicy(obs, act, hidden, activation) if categorical else GaussianPolicy(obs, act, hidden, activation)
    )
    policy = policy.to(dtype)
    o = torch.randn(batch, obs, dtype=dtype)
    a = policy.sample(o)  # on-policy actions
    advantages = torch.randn(batch, dtype=dtype) if adv is None else adv
    return Problem(policy, o, a, advantages)


def new_data(problem: Problem, seed: int) -> Problem:
    """Another batch for the same policy (same parameters, new states/actions/advantages)."""
    gen = torch.Generator().manual_seed(seed)
    dtype = problem.obs.dtype
    o = torch.randn(problem.B, problem.obs.shape[1], generator=gen, dtype=dtype)
    torch.manual_seed(seed)
    a = problem.policy.sample(o)
    return Problem(problem.policy, o, a, torch.randn(problem.B, generator=gen, dtype=dtype))


def float32_twin(p64: Problem, **shape) -> Problem:
    """The same policy and batch as ``p64`` in float32 (parameters and data rounded once);
    ``shape`` are the ``make_problem`` arguments ``p64`` was made with."""
    p32 = make_problem(dtype=torch.float32, **shape)
    p32.policy.load_state_dict({k: v.float() for k, v in p64.policy.state_dict().items()})
    p32.obs, p32.act, p32.adv = p64.obs.float(), p64.act.float(), p64.adv.float()
    p32.old = {k: v.detach().clone() for k, v in p32.policy.named_parameters()}
    return p32


@pytest.fixture
def problem() -> Problem:
    return make_problem()


@pytest.fixture
def categorical_problem() -> Problem:
    return make_problem(seed=1, categorical=True, act=4)
