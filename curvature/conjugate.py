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
the same setting means the same accuracy whatever the scale of the gradient), or at the first
non-finite iterate. A non-finite iterate is returned as it is (with ``finite=False``), so that the
caller's direction is non-finite and the step is refused, instead of being hidden behind an earlier,
unconverged iterate. Memory: four vectors of the size of ``b``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


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


def conjugate_gradient(matvec: Callable[[Tensor], Tensor], b: Tensor, iters: int, rtol: float) -> CGResult:
    """Solve ``matvec(x) = b`` by CG; see the module docstring for the stopping rules."""
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
        x.add_(alpha * p)
        r.sub_(alpha * Mp)
        rr_new = torch.dot(r, r)
        used += 1
        # one sync for all three checks; x is checked too (alpha finite but p overflowing)
        if not bool(torch.isfinite(alpha) & torch.isfinite(rr_new) & torch.isfinite(x).all()):
            finite = False
            rr = rr_new
            break
        p = r + (rr_new / rr) * p
        rr = rr_new
    res = float(rr.sqrt())
    return CGResult(x, used, res, res / b_norm if b_norm > 0 else 0.0, finite)
