r"""The one conjugate-gradient solver (used by ``cg``, ``hybrid`` and the natural-gradient diagnostic).

Solves :math:`M x = b` for symmetric positive definite :math:`M`, given only ``matvec(v) = M v``,
from :math:`x_0 = 0`:

.. math::

    r_0 = p_0 = b,\quad
    \alpha_i = \frac{r_i^T r_i}{p_i^T M p_i},\quad
    x_{i+1} = x_i + \alpha_i p_i,\quad
    r_{i+1} = r_i - \alpha_i M p_i,\quad
    p_{i+1} = r_{i+1} + \frac{r_{i+1}^T r_{i+1}}{r_i^T r_i} p_i.

Stops after ``iters`` iterations, once :math:`|r_i| \le \text{rtol}\,|b|` (a *relative* tolerance:
the same setting means the same accuracy whatever the scale of the gradient), at a breakdown
(:math:`p_i^T M p_i = 0` with finite products: converged to rounding; the last iterate is kept), or at
the first non-finite iterate. A non-finite iterate is returned as it is (with ``finite=False``), so that the
caller's direction is non-finite and the step is refused, instead of being hidden behind an earlier,
unconverged iterate. Memory: four vectors of the size of ``b``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .scores import Scores


@dataclass
class CGResult:
    x: Tensor
    iters: int
    """Iterations done (matrix-vector products used)."""
    residual: float
    """:math:`|r|` of the recurrence at exit (absolute)."""
    relative_residual: float
    """:math:`|r| / |b|` (0 when ``b = 0``)."""
    finite: bool


def conjugate_gradient(
    matvec: Callable[[Tensor], Tensor],
    b: Tensor,
    iters: int,
    rtol: float,
    on_step: Callable[[Tensor], None] | None = None,
) -> CGResult:
    r"""Solve ``matvec(x) = b`` by CG; see the module docstring for the stopping rules.

    ``on_step(alpha)``, if given, is called after every accepted step :math:`x \mathrel{+}= \alpha p`
    (right after the ``matvec(p)`` of that step), e.g. to accumulate a linear image of ``x``.
    """
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rr = torch.dot(r, r)
    b_norm = float(rr.sqrt())
    if not torch.isfinite(rr):
        return CGResult(torch.full_like(b, float("nan")), 0, float("nan"), float("nan"), False)
    threshold = (rtol * b_norm) ** 2
    used = 0
    finite = True
    for _ in range(iters):
        if float(rr) <= threshold:
            break
        Mp = matvec(p)
        alpha = rr / torch.dot(p, Mp)
        x_new = x + alpha * p
        r_new = r - alpha * Mp
        rr_new = torch.dot(r_new, r_new)
        # one sync for every check; x is checked too (alpha finite but p overflowing)
        checks = torch.stack([torch.isfinite(Mp).all(), torch.isfinite(alpha) & torch.isfinite(rr_new)])
        checks = torch.cat([checks, torch.isfinite(x_new).all()[None]])
        mp_ok, scalars_ok, x_ok = (bool(c) for c in checks)
        if mp_ok and not scalars_ok:
            break  # breakdown (p^T M p = 0 after convergence to rounding): keep the last iterate
        used += 1
        x, r = x_new, r_new
        if on_step is not None:
            on_step(alpha)
        if not (mp_ok and scalars_ok and x_ok):
            finite = False
            rr = rr_new
            break
        p = r + (rr_new / rr) * p
        rr = rr_new
    res = float(rr.sqrt())
    return CGResult(x, used, res, res / b_norm if b_norm > 0 else 0.0, finite)


class EmpiricalFisherOperator:
    r""":math:`v \mapsto (F + \lambda I) v` with the batch's empirical Fisher
    :math:`F v = \frac1B S^T (S v)` (one :meth:`Scores.dot` and one :meth:`Scores.weighted_mean`).

    Used as ``matvec`` with ``on_step=op.step``, it accumulates the per-sample image of the CG iterate,
    :math:`S x = \sum_i \alpha_i S p_i` (``op.sx``), from products CG computes anyway, and keeps
    :math:`S b` (``op.sb``: the first search direction is :math:`b`). So :math:`x^T F x` and Fisher
    inner products with :math:`x` and :math:`b` cost no further contraction of the scores.
    """

    def __init__(self, scores: Scores, damping: float) -> None:
        self.scores = scores
        self.damping = damping
        self.sx = scores.a[0].new_zeros(scores.batch_size)
        self.sb: Tensor | None = None
        self._last: Tensor | None = None

    def __call__(self, v: Tensor) -> Tensor:
        sv = self.scores.dot(v)
        if self.sb is None:
            self.sb = sv
        self._last = sv
        return self.scores.weighted_mean(sv) + self.damping * v

    def step(self, alpha: Tensor) -> None:
        self.sx = self.sx + alpha * self._last
