r"""Hybrid: Sherman-Morrison with Levenberg-Marquardt damping from the measured KL, plus CG.

Directions come from the rank-1 Sherman-Morrison solve (:mod:`.sherman_morrison`, same ``mode``
and ``fisher_vector`` options),

.. math:: d = (\lambda_t I + v v^T)^{-1} g,

except every ``cg_every``-th update (updates :math:`0, K, 2K, \dots`; ``cg_every=0`` disables),
which uses conjugate gradient on the empirical Fisher, :math:`(F + \lambda_t I)^{-1} g`
(:func:`.cg.cg_solve`, ``cg_iters`` iterations) to correct the rank-1 model's drift.

:math:`\lambda` starts at the configured ``damping`` (its value at update 0 if a schedule) and
adapts after each step from the KL the agent measured (:meth:`observe`):

.. math::

    \lambda \leftarrow \operatorname{clip}\Big(\lambda \cdot
    \begin{cases}
        \rho & \text{KL} > \kappa\,\text{KL}^*\ \text{or the step was skipped / KL not finite} \\
        1/\rho & \text{KL} < \text{KL}^* / \kappa \\
        1 & \text{otherwise}
    \end{cases},\ \lambda_{\min}, \lambda_{\max}\Big)

with :math:`\rho` = ``factor``, :math:`\kappa` = ``tolerance``, :math:`\text{KL}^*` =
``target_kl``. Larger :math:`\lambda` shortens the step (towards :math:`g/\lambda`), smaller
trusts the curvature more. O(d) per update, plus O(``cg_iters`` B d) every ``cg_every`` updates.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from torch import Tensor

from .base import PolicyBatch, check_int, check_number, register
from .cg import cg_solve
from .schedules import Schedule
from .sherman_morrison import ShermanMorrison


@register("hybrid")
class Hybrid(ShermanMorrison):
    """Sherman-Morrison with adaptive (Levenberg-Marquardt) damping and periodic CG refreshes."""

    def __init__(
        self,
        damping: float | Schedule | dict = 0.1,
        mode: Literal["batch_mean", "single_sample"] = "batch_mean",
        fisher_vector: Literal["score", "advantage_weighted"] = "score",
        target_kl: float = 0.01,
        factor: float = 1.5,
        tolerance: float = 1.5,
        min_damping: float = 1e-6,
        max_damping: float = 1e6,
        cg_every: int = 10,
        cg_iters: int = 10,
    ) -> None:
        super().__init__(damping, mode, fisher_vector)
        for key, val in (("target_kl", target_kl), ("min_damping", min_damping), ("max_damping", max_damping)):
            check_number(f"hybrid.{key}", val, lambda v: 0 < v < math.inf, "a finite number > 0")
        check_number("hybrid.factor", factor, lambda v: 1 < v < math.inf, "a finite number > 1")
        check_number("hybrid.tolerance", tolerance, lambda v: 1 <= v < math.inf, "a finite number >= 1")
        if min_damping > max_damping:
            raise ValueError(f"hybrid.min_damping={min_damping!r} must be <= max_damping={max_damping!r}")
        check_int("hybrid.cg_every", cg_every, 0, " (0 disables CG)")
        check_int("hybrid.cg_iters", cg_iters, 1)
        self.target_kl = float(target_kl)
        self.factor = float(factor)
        self.tolerance = float(tolerance)
        self.min_damping = float(min_damping)
        self.max_damping = float(max_damping)
        self.cg_every = cg_every
        self.cg_iters = cg_iters
        self.lam = self._clamp(float(self.damping(0)))
        self.cg_updates = 0

    def _clamp(self, lam: float) -> float:
        return min(max(lam, self.min_damping), self.max_damping)

    def current_damping(self) -> float:
        return self.lam

    def uses_cg(self, update: int) -> bool:
        """Whether update number ``update`` (0-based) takes the CG direction."""
        return self.cg_every > 0 and update % self.cg_every == 0

    def solve(self, batch: PolicyBatch, damping: float) -> tuple[Tensor, dict[str, float]]:
        if self.uses_cg(self.num_updates):
            self.cg_updates += 1
            vec, extras = cg_solve(batch, damping, iters=self.cg_iters, tol=0.0, fisher="empirical")
            extras["hybrid_cg"] = 1.0
            return vec, extras
        vec, extras = super().solve(batch, damping)
        extras["hybrid_cg"] = 0.0
        return vec, extras

    def observe(self, *, kl: float, applied: bool) -> None:
        """Levenberg-Marquardt update of :math:`\\lambda` from the measured KL of the last step."""
        kl = float(kl)
        if not applied or not math.isfinite(kl) or kl > self.target_kl * self.tolerance:
            self.lam *= self.factor
        elif kl < self.target_kl / self.tolerance:
            self.lam /= self.factor
        self.lam = self._clamp(self.lam)

    def advise(self, step_rule: str) -> str | None:
        if step_rule == "fixed":
            return None
        return (
            f"curvature=hybrid adapts lambda from the measured KL, but agent.step_rule={step_rule} "
            f"already rescales every step to agent.max_kl, so lambda barely moves from {self.lam:g} "
            f"(it reacts only to the KL model's error); use agent.step_rule=fixed for adaptive damping"
        )

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(lam=self.lam, cg_updates=self.cg_updates)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.lam = float(state["lam"])
        self.cg_updates = int(state["cg_updates"])
