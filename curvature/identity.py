r"""Identity: the plain policy gradient (the paper's "AC" baseline).

.. math:: d = g = \frac1B \sum_k A_k \nabla_\theta \log\pi_\theta(a_k|o_k)

``damping`` is accepted for a uniform interface and reported, but does not scale the step.
"""

from __future__ import annotations

from torch import Tensor

from .base import Curvature, PolicyBatch, register


@register("identity")
class Identity(Curvature):
    def __init__(self, damping: float | dict = 1.0, diagnose_every: int = 0) -> None:
        super().__init__(damping, diagnose_every)

    def solve(self, batch: PolicyBatch, damping: float) -> tuple[Tensor, dict[str, float]]:
        return batch.grad.clone(), {}
