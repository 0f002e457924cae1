r"""How close a backend's direction is to the damped natural gradient of the same batch.

Every ``diagnose_every`` updates, :meth:`Curvature.direction` solves

.. math:: (F + \lambda I)\, x = g, \qquad F = \frac1B \sum_k s_k s_k^T

(the empirical Fisher of the batch, from the captured scores; :math:`\lambda` is the backend's damping
at this update) by conjugate gradient to the relative tolerance :data:`RTOL` (at most
:data:`MAX_ITERS` Fisher-vector products), and compares the backend's direction :math:`d` with
:math:`x`:

.. math::

    \text{cos\_to\_natural} = \frac{d \cdot x}{|d|\,|x|}, \qquad
    \text{cos\_to\_natural\_fisher} = \frac{d^T F x}{\sqrt{d^T F d}\,\sqrt{x^T F x}}.

The second is the cosine in the Fisher inner product, the geometry the step rules measure steps in.
Also reported: ``diagnose_iters`` and ``diagnose_residual`` (:math:`|r|/|g|` at exit), so that an
unconverged solve is visible. Cost: up to ``2 * MAX_ITERS + 1`` contractions of the ``B x d`` scores.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .conjugate import EmpiricalFisherOperator, conjugate_gradient

if TYPE_CHECKING:
    from .base import PolicyBatch

RTOL = 1e-6
MAX_ITERS = 200


def natural_gradient_diagnostics(batch: PolicyBatch, vec: Tensor, damping: float) -> dict[str, float]:
    """The diagnostic metrics for direction ``vec`` on ``batch`` (see the module docstring)."""
    nan = float("nan")
    out = {"cos_to_natural": nan, "cos_to_natural_fisher": nan, "diagnose_iters": 0.0, "diagnose_residual": nan}
    scores = batch.scores
    g = batch.grad
    if not (bool(torch.isfinite(vec).all()) and bool(torch.isfinite(g).all())):
        return out
    op = EmpiricalFisherOperator(scores, damping)
    res = conjugate_gradient(op, g, MAX_ITERS, RTOL, on_step=op.step)
    out["diagnose_iters"] = float(res.iters)
    out["diagnose_residual"] = res.relative_residual
    if not res.finite:
        return out
    x = res.x
    sd, sx = scores.dot(vec), op.sx  # S x accumulated by CG
    dFd, dFx, xFx = (float(t) for t in scores.batch_mean(torch.stack([sd * sd, sd * sx, sx * sx], dim=1)))
    dx, d_norm, x_norm = (float(t) for t in torch.stack([torch.dot(vec, x), vec.norm(), x.norm()]))
    if d_norm > 0 and x_norm > 0:
        out["cos_to_natural"] = dx / (d_norm * x_norm)
    if dFd > 0 and xFx > 0:
        out["cos_to_natural_fisher"] = dFx / (dFd * xFx) ** 0.5
    return out
