r"""Woodbury: the batch's exact damped natural gradient in closed form.

The empirical Fisher of a batch of :math:`B` samples has rank at most :math:`B`:
:math:`F = S^T S / B` with :math:`S` the ``B x d`` per-sample scores. Its damped inverse therefore
needs only a ``B x B`` system, never a ``d x d`` one (the Sherman-Morrison-Woodbury identity):

.. math::

    (F + \lambda I)^{-1} g = \frac1\lambda \Big(g - S^T (\lambda B\, I + S S^T)^{-1} S g\Big).

The Gram :math:`K = S S^T` comes from the per-layer inputs :math:`a` and output gradients
:math:`\delta` that :class:`.Scores` captures, :math:`K = \sum_\text{layers} (a a^T) \odot (\delta \delta^T)`
(:meth:`.Scores.sample_gram`), so :math:`S` is never formed.

**Full rank** (``rank: null``, the default). The policy gradient itself lies in the row space of
:math:`S`, :math:`g = S^T A / B`, and the push-through identity
:math:`(S^T S / B + \lambda I)^{-1} S^T = S^T (S S^T / B + \lambda I)^{-1}` gives the form that is
used, with no subtraction at all:

.. math::

    d = (F + \lambda I)^{-1} g = S^T u, \qquad u = (K + \lambda B\, I)^{-1} A,

a weighted sum of the per-sample scores (FNGD, arXiv 2403.03473, writes the same solve this way).
It is exact for the batch's empirical Fisher, and :math:`d^T F d = |K u|^2 / B` comes from the same
Gram. Rank-1 Sherman-Morrison (``curvature=sherman_morrison``) is the special case of one sample.

**Sketch** (``rank: k < B``). :math:`k` samples are drawn without replacement, seeded (``seed``, or the
run's seed when null; the generator's state is in the checkpoint), and :math:`F_k = S_k^T S_k / k`
replaces :math:`F`. The gradient :math:`g` is still the whole batch's, so the subtractive form above is
used with :math:`S_k`, :math:`K_k = S_k S_k^T` and :math:`\lambda k`. ``dFd`` is then measured under the
whole batch's empirical Fisher (one more contraction), which the step rules use to set the step length.

**Numerics.** The Gram is formed and factorised (Cholesky) in the policy's dtype; the contractions with
:math:`S` run in float64. In float32, :data:`REFINE_STEPS` rounds of iterative refinement, whose residual
uses :math:`K u = S (S^T u)` in float64, recover float64 accuracy. Where the system is too ill-conditioned
for that (:math:`\epsilon_{32}\,\mathrm{tr} K > 0.05\,\lambda B`, e.g. :math:`\lambda \le 10^{-4}` on the
HalfCheetah actor) the Gram is formed and factorised in float64 instead, at about twice the cost. The
direction is returned in the policy's dtype. A failed factorisation (non-finite or not positive definite input) gives a non-finite direction,
so the agent refuses the step; it never raises.

**Data parallel.** With ``PolicyBatch.all_gather`` the Gram spans every rank's samples, so each rank
computes the direction of the concatenated batch; a sketch uses rank 0's draw on every rank.

Cost: O(B^2 (in + out)) per layer for the Gram, O(B^3) for the factorisation, two O(B d)
contractions. Memory: the identity backend's plus O(B^2).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .base import Curvature, PolicyBatch, check_int, register
from .schedules import Schedule
from .scores import Scores

#: At most this many refinement steps after a float32 factorisation (each: two O(B d) float64 contractions).
REFINE_STEPS = 3
#: ... stopping once the residual is this small relative to the right-hand side.
REFINE_RTOL = 1e-10
#: The float32 Gram and factorisation are used when eps32 * trace(K) / (lambda B), a bound on the
#: refinement's contraction factor, is at most this; otherwise both are done in float64.
FLOAT32_BOUND = 0.05


def factor(K: Tensor, shift: float) -> Tensor | None:
    r"""Cholesky factor of :math:`K + \text{shift}\, I` in ``K``'s dtype, or None when it fails."""
    L, info = torch.linalg.cholesky_ex(K + shift * torch.eye(K.shape[0], dtype=K.dtype, device=K.device))
    return L if int(info) == 0 else None


def solve_with(L: Tensor, rhs: Tensor) -> Tensor:
    """``(L L^T)^{-1} rhs`` in ``L``'s dtype, returned in ``rhs``'s."""
    return torch.cholesky_solve(rhs.to(L.dtype)[:, None], L)[:, 0].to(rhs.dtype)


def in_float64(scores: Scores, rows: Tensor | None = None) -> Scores:
    """``scores`` (optionally only ``rows``) with its per-layer ``(a, delta)`` in float64."""

    def cast(t: Tensor) -> Tensor:
        return (t if rows is None else t[rows]).to(torch.float64)

    return scores.replace([cast(a) for a in scores.a], [cast(d) for d in scores.delta])


def gram_factor(scores: Scores, s64: Scores, shift: float) -> tuple[Tensor, Tensor | None]:
    """The Gram and the Cholesky factor of its damped form: in the working precision where refinement
    against the float64 scores recovers float64 accuracy (see the module docstring), else in float64."""
    K = scores.sample_gram()
    if K.dtype != torch.float64 and torch.finfo(K.dtype).eps * float(K.diagonal().sum()) > FLOAT32_BOUND * shift:
        K = s64.sample_gram()
    return K, factor(K, shift)


def refined_solve(L: Tensor, s64: Scores, shift: float, rhs: Tensor) -> tuple[Tensor, Tensor]:
    r"""``(u, S^T u)`` for :math:`u = (S S^T + \text{shift}\, I)^{-1}` rhs: the factor's solve, then (for a
    factor below float64) up to :data:`REFINE_STEPS` rounds of iterative refinement whose residual uses
    :math:`S S^T u = S (S^T u)` in float64, until the residual is below :data:`REFINE_RTOL` of ``rhs``."""
    u = solve_with(L, rhs)
    w = s64.weighted_sum(u)
    if L.dtype == torch.float64:
        return u, w
    scale = float(rhs.norm())
    for _ in range(REFINE_STEPS):
        r = rhs - s64.dot(w) - shift * u
        if not float(r.norm()) > REFINE_RTOL * scale:  # converged (or non-finite: nothing to refine)
            break
        u = u + solve_with(L, r)
        w = s64.weighted_sum(u)
    return u, w


@register("woodbury")
class Woodbury(Curvature):
    """Exact damped empirical-Fisher solve through the ``B x B`` Gram (or a ``rank``-sample sketch)."""

    def __init__(
        self,
        damping: float | Schedule | dict = 0.1,
        rank: int | None = None,
        seed: int | None = None,
        diagnose_every: int = 0,
    ) -> None:
        super().__init__(damping, diagnose_every)
        if rank is not None:
            check_int(f"{self.name}.rank", rank, 1, " (null: the whole batch, the exact solve)")
        if seed is not None:
            check_int(f"{self.name}.seed", seed, 0, " (null: the run's seed)")
        self.rank = rank
        self.seed = seed
        self.generator = torch.Generator().manual_seed(torch.initial_seed() if seed is None else seed)

    def solve(self, batch: PolicyBatch, damping: float) -> tuple[Tensor, dict[str, float]]:
        scores, adv = batch.scores, batch.advantages.detach()
        if batch.all_gather is not None:
            scores = scores.replace(
                [batch.all_gather(a) for a in scores.a], [batch.all_gather(d) for d in scores.delta]
            )
            adv = batch.all_gather(adv)
        n = scores.batch_size
        dtype = scores.a[0].dtype
        nan = torch.full((scores.dim,), float("nan"), dtype=dtype, device=adv.device)
        if self.rank is None or self.rank >= n:
            s64 = in_float64(scores)
            K, L = gram_factor(scores, s64, damping * n)
            if L is None:
                return nan, {"rank": float(n), "dFd": float("nan")}
            u, d = refined_solve(L, s64, damping * n, adv.to(torch.float64))
            Sd = K @ u.to(K.dtype)  # S d = S S^T u
            return d.to(dtype), {"rank": float(n), "dFd": float(Sd @ Sd) / n}
        rows = self._draw(n, batch).to(adv.device)
        sk = scores.replace([a[rows] for a in scores.a], [d[rows] for d in scores.delta])
        sk64 = in_float64(sk)
        _, L = gram_factor(sk, sk64, damping * self.rank)
        if L is None:
            return nan, {"rank": float(self.rank)}
        g = batch.grad.to(torch.float64)
        _, w = refined_solve(L, sk64, damping * self.rank, sk64.dot(g))
        return ((g - w) / damping).to(dtype), {"rank": float(self.rank)}

    def _draw(self, n: int, batch: PolicyBatch) -> Tensor:
        """``rank`` distinct sample indices out of ``n``, sorted; every rank takes rank 0's draw."""
        rows = torch.randperm(n, generator=self.generator)[: self.rank].sort().values
        if batch.all_gather is not None:
            rows = batch.all_gather(rows.to(batch.advantages.device))[: self.rank].cpu()
        return rows

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.generator.set_state(state["generator"])
