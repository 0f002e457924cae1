r"""Conjugate gradient on Fisher-vector products: the TRPO / NPG direction ("AC-CG").

Solves :math:`(F + \lambda I)\,x = g` by conjugate gradient from :math:`x_0 = 0`
(:func:`.conjugate.conjugate_gradient`), stopping after ``iters`` iterations, once
:math:`|r_i| \le` ``tol`` :math:`\cdot |g|` (``tol`` is *relative* to the gradient's norm), or at the
first non-finite iterate (returned as is, so the step is refused). ``cg_iters`` and
``cg_residual`` (:math:`|r|/|g|` at exit) are logged. Two Fisher-vector products:

``fisher="empirical"``
    :math:`F v = \frac1B \sum_k s_k (s_k \cdot v)` from the captured per-layer inputs and output
    gradients (:meth:`Scores.fisher_vector_product`): exact for the batch's empirical Fisher, no
    extra backward pass, O(B d) per product.

``fisher="kl_hessian"``
    :math:`F v = \nabla_\theta \big(\nabla_\theta \overline{KL}(\pi_{old} \| \pi_\theta) \cdot v\big)`
    at :math:`\theta = \theta_{old}` by double backward of ``batch.kl_fn()`` (the exact Fisher of
    the policy at the batch states, the TRPO product). Needs ``batch.kl_fn``.

Memory O(d) (a few vectors); never a ``d x d`` tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from .base import Curvature, PolicyBatch, check_int, check_number, register
from .conjugate import CGResult, EmpiricalFisherOperator, conjugate_gradient
from .schedules import Schedule

FISHERS = ("empirical", "kl_hessian")


def validate_cg_options(prefix: str, iters: int, tol: float, fisher: str = "empirical") -> None:
    """One-line ``ValueError`` for unusable CG options."""
    check_int(f"{prefix}.iters", iters, 1)
    check_number(f"{prefix}.tol", tol, lambda v: 0.0 <= v < 1.0, "a number in [0, 1) (relative to |g|)")
    if fisher not in FISHERS:
        raise ValueError(f"{prefix}.fisher={fisher!r} is not valid; choose one of {list(FISHERS)}")


def fisher_vector_product(batch: PolicyBatch, fisher: str) -> Callable[[Tensor], Tensor]:
    """The Fisher-vector product ``v -> F v`` of ``batch`` (without damping)."""
    if fisher == "empirical":
        return batch.scores.fisher_vector_product
    if fisher != "kl_hessian":
        raise ValueError(f"fisher={fisher!r} is not valid; choose one of {list(FISHERS)}")
    if batch.kl_fn is None:
        raise ValueError("fisher='kl_hessian' needs PolicyBatch.kl_fn (mean KL to the behaviour policy); it is None")
    params = list(batch.params or [])
    with torch.enable_grad():
        kl = batch.kl_fn()
        grads = torch.autograd.grad(kl, params, create_graph=True)
        flat_grad = torch.cat([g.reshape(-1) for g in grads])

    def fvp(v: Tensor) -> Tensor:
        with torch.enable_grad():
            hv = torch.autograd.grad(torch.dot(flat_grad, v.to(flat_grad)), params, retain_graph=True)
        return batch.scores.reduce(torch.cat([h.reshape(-1) for h in hv]).detach().to(v))

    return fvp


@dataclass
class EmpiricalSolve:
    """CG on the damped empirical Fisher, with the per-sample images of ``x`` and ``g`` it yields."""

    result: CGResult
    sx: Tensor
    """:math:`S x`, shape ``[B]`` (local)."""
    sg: Tensor | None
    """:math:`S g` (None when CG did no iteration)."""


def empirical_solve(batch: PolicyBatch, damping: float, iters: int, tol: float) -> EmpiricalSolve:
    r"""CG on :math:`(F + \lambda I) x = g` with the batch's empirical Fisher (``tol`` relative)."""
    op = EmpiricalFisherOperator(batch.scores, damping)
    res = conjugate_gradient(op, batch.grad, iters, tol, on_step=op.step)
    return EmpiricalSolve(res, op.sx, op.sb)


def cg_solve(
    batch: PolicyBatch, damping: float, *, iters: int = 10, tol: float = 1e-10, fisher: str = "empirical"
) -> tuple[Tensor, dict[str, float]]:
    r"""CG on :math:`(F + \lambda I) x = g` for ``batch`` (``tol`` relative); returns ``(x, diagnostics)``.

    Both report ``dFd`` under the Fisher they solved with: TRPO's :math:`x^T H x` for the KL Hessian (one
    more product), :math:`\frac1B |S x|^2` from the image CG accumulated for the empirical Fisher.
    """
    if fisher == "empirical":
        solve = empirical_solve(batch, damping, iters, tol)
        res = solve.result
        dFd = float(batch.scores.batch_mean(solve.sx * solve.sx)) if res.finite else float("nan")
    else:
        fvp = fisher_vector_product(batch, fisher)
        res = conjugate_gradient(lambda v: fvp(v) + damping * v, batch.grad, iters, tol)
        dFd = float(torch.dot(res.x, fvp(res.x))) if res.finite else float("nan")
    return res.x, {"cg_iters": float(res.iters), "cg_residual": res.relative_residual, "dFd": dFd}


@register("cg")
class ConjugateGradient(Curvature):
    """Damped Fisher solve by conjugate gradient (empirical or KL-Hessian Fisher-vector products)."""

    def __init__(
        self,
        damping: float | Schedule | dict = 0.1,
        iters: int = 10,
        tol: float = 1e-10,
        fisher: Literal["empirical", "kl_hessian"] = "empirical",
        diagnose_every: int = 0,
    ) -> None:
        super().__init__(damping, diagnose_every)
        validate_cg_options("cg", iters, tol, fisher)
        self.iters = iters
        self.tol = float(tol)
        self.fisher = fisher

    def solve(self, batch: PolicyBatch, damping: float) -> tuple[Tensor, dict[str, float]]:
        return cg_solve(batch, damping, iters=self.iters, tol=self.tol, fisher=self.fisher)
