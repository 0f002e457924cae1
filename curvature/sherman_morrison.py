r"""Rank-1 Sherman-Morrison (SMAC): the damped rank-1 Fisher inverted in closed form.

With :math:`Z = \lambda I + v v^T`, split :math:`g` into its component along :math:`v` and the rest,
:math:`g = \alpha v + g_\perp` with :math:`\alpha = v \cdot g / |v|^2`, :math:`g_\perp = g - \alpha v`:

.. math::

    Z^{-1} g = \frac{g_\perp}{\lambda} + \frac{\alpha\, v}{\lambda + |v|^2},

O(d) time and memory. This equals the textbook :math:`g/\lambda - v (v\cdot g)/(\lambda^2 + \lambda|v|^2)`
but does not cancel: when :math:`g \parallel v` the textbook form subtracts two vectors of size
:math:`|g|/\lambda` to get one of size :math:`|g|/(\lambda + |v|^2)`, losing a factor
:math:`|v|^2/\lambda` of float32 digits; here :math:`g_\perp` is then (near) zero and nothing cancels.

Two ablation axes (the paper is ambiguous on both):

``mode="batch_mean"``
    one :math:`Z` with :math:`v` from the batch mean: :math:`v = \bar s = \frac1B\sum_k s_k`
    (``fisher_vector="score"``) or :math:`v = \frac1B\sum_k A_k s_k = g`
    (``fisher_vector="advantage_weighted"``). For ``score``, :math:`g = \bar A \bar s + w` with
    :math:`w = \frac1B\sum_k (A_k - \bar A) s_k` comes from the same single contraction as
    :math:`\bar s`, and the split is applied to :math:`w`, so the part of :math:`g` that is parallel
    to :math:`\bar s` by construction (all of it for a batch of one) is never subtracted. Since
    :math:`E[s] = 0`, :math:`\bar s` is small and the score variant tends to :math:`g/\lambda`.
    With ``advantage_weighted``, :math:`v = g` and the direction is :math:`g/(\lambda + |g|^2)`,
    parallel to :math:`g`: under a step rule that sets the length itself (``trust_region``,
    ``line_search``) that is the identity backend, and :meth:`ShermanMorrison.advise` says so.

``mode="single_sample"``
    one :math:`Z_k` per sample and the directions :math:`Z_k^{-1} g_k`, :math:`g_k = A_k s_k`,
    averaged. Sherman-Morrison collapses each to a per-sample reweighting of the score,

    .. math::

        v = s_k:\; Z_k^{-1} g_k = \frac{A_k s_k}{\lambda + |s_k|^2}, \qquad
        v = A_k s_k:\; Z_k^{-1} g_k = \frac{A_k s_k}{\lambda + A_k^2 |s_k|^2},

    so the direction is a weighted policy gradient that needs only the per-sample score norms
    (one backward pass, no ``B x d`` matrix).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from .base import LENGTH_FREE_STEP_RULES, Curvature, PolicyBatch, register

MODES = ("batch_mean", "single_sample")
FISHER_VECTORS = ("score", "advantage_weighted")


@dataclass
class RankOneSplit:
    r"""A right-hand side written as :math:`g = p + c\,q` with :math:`p \perp q`, so that

    .. math:: (\lambda I + q q^T)^{-1} g = \frac{p}{\lambda} + \frac{c\, q}{\lambda + |q|^2}.
    """

    p: Tensor
    q: Tensor
    c: Tensor
    qq: Tensor
    alpha: Tensor
    r""":math:`\alpha = q \cdot g_0 / |q|^2` for the split vector :math:`g_0 = g - \text{offset}\, q` (``c = alpha + offset``)."""
    offset: Tensor | float = 0.0

    def solve(self, damping: float) -> Tensor:
        return self.p / damping + (self.c / (damping + self.qq)) * self.q


def rank_one_split(g: Tensor, v: Tensor, offset: Tensor | float = 0.0) -> RankOneSplit:
    r"""Split :math:`g + \text{offset}\cdot v` along :math:`v`: :math:`p = g - \alpha v`,
    :math:`c = \alpha + \text{offset}`, :math:`\alpha = v \cdot g/|v|^2` (0 when :math:`v = 0`).

    When ``v`` is ``g`` (the same values), :math:`\alpha = 1` and :math:`p = 0` exactly.
    """
    vv = torch.dot(v, v)
    vg = torch.dot(v, g)
    alpha = torch.where(vv > 0, vg / vv, torch.zeros_like(vv))
    return RankOneSplit(g - alpha * v, v, alpha + offset, vv, alpha, offset)


def sherman_morrison_solve(g: Tensor, v: Tensor, damping: float) -> Tensor:
    r""":math:`(\lambda I + v v^T)^{-1} g` in O(d), without cancellation (see the module docstring)."""
    return rank_one_split(g, v).solve(damping)


def batch_mean_split(batch: PolicyBatch, fisher_vector: str) -> RankOneSplit:
    """The batch-mean right-hand side ``g`` split along ``v`` (score: the mean score; else g)."""
    if fisher_vector == "score":
        s_bar, w, a_bar = batch.mean_score_split
        return rank_one_split(w, s_bar, a_bar)
    g = batch.grad
    return rank_one_split(g, g)


def single_sample_weights(batch: PolicyBatch, fisher_vector: str, damping: Tensor | float) -> Tensor:
    r"""Per-sample weights :math:`A_k / (\lambda + q_k)` (``damping`` may be a ``[m]`` tensor: ``[B, m]``)."""
    scores = batch.scores
    adv = batch.advantages.detach().to(scores.a[0].dtype)
    sq = scores.sq_norms()
    if fisher_vector == "advantage_weighted":
        sq = adv.pow(2) * sq
    if isinstance(damping, Tensor):
        return adv[:, None] / (damping[None, :] + sq[:, None])
    return adv / (damping + sq)


@register("sherman_morrison")
class ShermanMorrison(Curvature):
    def __init__(
        self,
        damping: float | dict = 0.1,
        mode: Literal["batch_mean", "single_sample"] = "batch_mean",
        fisher_vector: Literal["score", "advantage_weighted"] = "score",
        diagnose_every: int = 0,
    ) -> None:
        super().__init__(damping, diagnose_every)
        if mode not in MODES:
            raise ValueError(f"{self.name}.mode={mode!r} is not valid; choose one of {list(MODES)}")
        if fisher_vector not in FISHER_VECTORS:
            raise ValueError(
                f"{self.name}.fisher_vector={fisher_vector!r} is not valid; choose one of {list(FISHER_VECTORS)}"
            )
        self.mode = mode
        self.fisher_vector = fisher_vector

    def solve(self, batch: PolicyBatch, damping: float) -> tuple[Tensor, dict[str, float]]:
        if self.mode == "batch_mean":
            split = batch_mean_split(batch, self.fisher_vector)
            return split.solve(damping), {"v_norm": float(split.qq.sqrt())}
        scores = batch.scores
        weights = single_sample_weights(batch, self.fisher_vector, damping)
        return scores.weighted_mean(weights), {}

    def advise(self, step_rule: str) -> str | None:
        if (
            self.mode == "batch_mean"
            and self.fisher_vector == "advantage_weighted"
            and step_rule in LENGTH_FREE_STEP_RULES
        ):
            return (
                f"curvature={self.name} with mode=batch_mean and fisher_vector=advantage_weighted gives g/(lambda+|g|^2), "
                f"parallel to g, and agent.step_rule={step_rule} sets the step length itself: this run is "
                f"curvature=identity up to scale; use fisher_vector=score, mode=single_sample or agent.step_rule=fixed"
            )
        return None
