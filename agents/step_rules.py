r"""How far to move along a curvature direction: ``theta <- theta + eta * d``.

``fixed``
    :math:`\eta` is the configured learning rate (a constant or a schedule): the paper's rule.
``trust_region``
    :math:`\eta = \sqrt{2\delta / d^T F d}`, the NPG step that puts the quadratic KL model at the
    radius :math:`\delta` (``max_kl``).
``line_search``
    the trust-region step, then backtracking (``eta <- shrink * eta``) until the measured KL is
    within ``1.5 * max_kl`` and the surrogate improves. With ``curvature=cg`` this is TRPO.

Every rule refuses a non-finite step: the parameters are restored and the update is reported
as skipped.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn.utils import parameters_to_vector, vector_to_parameters

STEP_RULES = ("fixed", "trust_region", "line_search")


@dataclass
class StepResult:
    applied: bool
    eta: float
    kl: float
    surrogate_gain: float
    backtracks: int
    reason: str = ""


def take_step(
    rule: str,
    params: list[Tensor],
    direction: Tensor,
    dFd: float,
    *,
    lr: float,
    max_kl: float,
    kl_fn: Callable[[], Tensor],
    surrogate_fn: Callable[[], Tensor],
    max_backtracks: int = 10,
    shrink: float = 0.5,
) -> StepResult:
    """Apply ``theta + eta * direction`` under ``rule``; never leaves non-finite parameters."""
    old = parameters_to_vector(params).detach().clone()
    if not bool(torch.isfinite(direction).all()):
        return StepResult(False, float("nan"), float("nan"), float("nan"), 0, "non-finite direction")
    if rule == "fixed":
        eta = lr
    else:
        if not (math.isfinite(dFd) and dFd > 0):
            return StepResult(False, float("nan"), float("nan"), float("nan"), 0, f"d^T F d = {dFd}")
        eta = math.sqrt(2.0 * max_kl / dFd)
    with torch.no_grad():
        surr0 = float(surrogate_fn())
        tries = max_backtracks + 1 if rule == "line_search" else 1
        for attempt in range(tries):
            vector_to_parameters(old + eta * direction, params)
            new = parameters_to_vector(params)
            kl = float(kl_fn())
            gain = float(surrogate_fn()) - surr0
            finite = bool(torch.isfinite(new).all()) and math.isfinite(kl) and math.isfinite(gain)
            if finite and (rule != "line_search" or (kl <= 1.5 * max_kl and gain > 0)):
                return StepResult(True, eta, kl, gain, attempt)
            if attempt + 1 < tries:
                eta *= shrink
        vector_to_parameters(old, params)
    reason = "non-finite parameters after the step" if not finite else "line search found no acceptable step"
    return StepResult(False, eta, kl if math.isfinite(kl) else float("nan"), gain, tries - 1, reason)
