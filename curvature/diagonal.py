r"""Diagonal: the damped diagonal of the empirical Fisher.

.. math::

    d = (\operatorname{diag} F + \lambda)^{-1} g, \qquad
    \operatorname{diag} F = \frac1B \sum_k s_k \odot s_k,

where each layer's diagonal comes from the captured inputs and output gradients,
:math:`\frac1B (\delta^2)^T (a^2)`, in one backward pass. O(d) memory.
"""

from __future__ import annotations

from torch import Tensor

from .base import Curvature, PolicyBatch, register


@register("diagonal")
class Diagonal(Curvature):
    def __init__(self, damping: float | dict = 0.1, diagnose_every: int = 0) -> None:
        super().__init__(damping, diagnose_every)

    def solve(self, batch: PolicyBatch, damping: float) -> tuple[Tensor, dict[str, float]]:
        diag = batch.scores.diagonal()
        return batch.grad / (diag + damping), {"fisher_diag_mean": float(diag.mean())}
