r"""Rank-1 Sherman-Morrison (SMAC): the damped rank-1 Fisher inverted in closed form.

With :math:`Z = \lambda I + v v^T`,

.. math::

    Z^{-1} g = \frac{g}{\lambda} - \frac{v\,(v \cdot g)}{\lambda^2 + \lambda |v|^2},

O(d) time and memory. Two ablation axes (the paper is ambiguous on both):

``mode="batch_mean"``
    one :math:`Z` with :math:`v` from the batch mean: :math:`v = \bar s = \frac1B\sum_k s_k`
    (``fisher_vector="score"``) or :math:`v = \frac1B\sum_k A_k s_k = g`
    (``fisher_vector="advantage_weighted"``). Since :math:`E[s] = 0`, :math:`\bar s` is small and
    the score variant tends to :math:`g/\lambda`.

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

from typing import Literal

import torch
from torch import Tensor

from .base import Curvature, PolicyBatch, register

MODES = ("batch_mean", "single_sample")
FISHER_VECTORS = ("score", "advantage_weighted")


def sherman_morrison_solve(g: Tensor, v: Tensor, damping: float) -> Tensor:
    r""":math:`(\lambda I + v v^T)^{-1} g` in O(d)."""
    lam = damping
    return g / lam - v * (torch.dot(v, g) / (lam * lam + lam * torch.dot(v, v)))


@register("sherman_morrison")
class ShermanMorrison(Curvature):
    def __init__(
        self,
        damping: float | dict = 0.1,
        mode: Literal["batch_mean", "single_sample"] = "batch_mean",
        fisher_vector: Literal["score", "advantage_weighted"] = "score",
    ) -> None:
        super().__init__(damping)
        if mode not in MODES:
            raise ValueError(f"sherman_morrison.mode={mode!r} is not valid; choose one of {list(MODES)}")
        if fisher_vector not in FISHER_VECTORS:
            raise ValueError(
                f"sherman_morrison.fisher_vector={fisher_vector!r} is not valid; choose one of {list(FISHER_VECTORS)}"
            )
        self.mode = mode
        self.fisher_vector = fisher_vector

    def solve(self, batch: PolicyBatch, damping: float) -> tuple[Tensor, dict[str, float]]:
        scores = batch.scores
        adv = batch.advantages.detach().to(scores.a[0].dtype)
        if self.mode == "batch_mean":
            v = scores.mean() if self.fisher_vector == "score" else batch.grad
            return sherman_morrison_solve(batch.grad, v, damping), {"v_norm": float(v.norm())}
        sq = scores.sq_norms()
        if self.fisher_vector == "advantage_weighted":
            sq = adv.pow(2) * sq
        weights = adv / (damping + sq)
        return scores.weighted_sum(weights / adv.shape[0]), {"score_sq_norm_mean": float(sq.mean())}
