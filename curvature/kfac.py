r"""K-FAC (ACKTR style): a Kronecker-factored, block-diagonal Fisher with running factors.

For a layer (``nn.Linear`` with the bias folded into the last column of its input, or a
:class:`~ngac.curvature.scores.BroadcastParameter` with input :math:`a_k = 1`), the per-sample
score of the ``out x in'`` weight matrix is :math:`\delta_k a_k^T`. K-FAC approximates the layer's
Fisher block by

.. math::

    F_\ell \approx A \otimes G, \qquad A = E[a a^T]\ (in' \times in'), \qquad G = E[\delta\delta^T]\ (out \times out),

(for the column-stacking ``vec``; for the row-major flattening used by :class:`Scores` the same
block reads :math:`G \otimes A`) and ignores cross-layer blocks. ``A`` and ``G`` are exponential
moving averages over updates,

.. math:: A_t = \beta A_{t-1} + (1-\beta) \hat A_t, \qquad A_1 = \hat A_1

(``decay`` :math:`= \beta`; likewise ``G``), folded in at updates :math:`t = 0, k, 2k, \dots`
(``factor_every`` :math:`= k`, default 1: every update; larger values amortise the
:math:`O(B \sum in'^2 + out^2)` factor products, as the ``TCov`` interval of K-FAC codes). At updates
:math:`t = 0, T, 2T, \dots` (``inverse_every`` :math:`= T`) the solve is refreshed from the current factors.

``solve="eigen"``: the factors are eigendecomposed,
:math:`A = Q_A \operatorname{diag}(e_A) Q_A^T`,
:math:`G = Q_G \operatorname{diag}(e_G) Q_G^T`, and with the layer's gradient matrix :math:`V`
the damped solve is exact for the factors of the last refresh:

.. math::

    (A \otimes G + \lambda I)^{-1} \operatorname{vec}(V)
    = \operatorname{vec}\!\Big(Q_G \big[(Q_G^T V Q_A) \oslash (e_G e_A^T + \lambda)\big] Q_A^T\Big).

Its ``dFd`` (for the trust-region step) is taken under the Kronecker Fisher it was solved with,
:math:`d^T (A \otimes G) d = \sum_\ell \sum_{ij} (e_G e_A^T)_{ij} W_{ij}^2` with
:math:`W = (Q_G^T V Q_A) \oslash (e_G e_A^T + \lambda)` the direction in the eigenbasis, at no cost (not the
batch's empirical Fisher).

``solve="factored"`` (the default, as ACKTR) replaces the exact damped solve by factored Tikhonov
damping (Martens & Grosse 2015, sec. 6.3),

.. math::

    (A \otimes G + \lambda I)^{-1} \approx (A + \pi\sqrt\lambda\, I)^{-1} \otimes (G + \tfrac{\sqrt\lambda}{\pi} I)^{-1},
    \qquad \pi = \sqrt{\frac{\operatorname{tr}(A)/\dim A}{\operatorname{tr}(G)/\dim G}},

whose two inverses are refreshed instead of the eigenbases (and rebuilt from the current factors when
:math:`\lambda` changed): the solve :math:`G_\gamma^{-1} V A_\gamma^{-1}` is two matrix products per layer
instead of four, and an inverse is several times cheaper than an eigendecomposition. ``dFd`` is then
:math:`d^T (A_\gamma \otimes G_\gamma) d = \sum_\ell \langle D_\ell, V_\ell \rangle` (free; ACKTR's
:math:`\Delta\theta^T \hat F \Delta\theta`, damped). On this project's benchmark policy (d = 3e5, h = 536,
B = 1000) it is what brings K-FAC under 2x the plain gradient (see ``benchmarks/curvature_cost.py``).

A batch whose factors are not finite (a NaN or inf anywhere in :math:`\hat A, \hat G`) never enters the
running averages: the update reports ``kfac_factors_rejected = 1`` and, when no factors exist yet,
returns a non-finite direction (so the agent refuses the step); the next clean batch continues from
the factors as they were.

Time per update O(B \sum (in'^2 + out^2)) for the factors (every ``factor_every`` updates), plus
O(\sum in'^3 + out^3) per refresh, plus O(\sum in' out (in' + out)) for the solve (half that, and a
cheaper refresh, with ``factored``);
memory :math:`\sum_\ell in'^2 + out^2`, never a ``d x d`` tensor.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from .base import Curvature, PolicyBatch, check_int, check_number, register
from .schedules import Schedule
from .scores import Scores

SOLVES = ("factored", "eigen")


def spd_inverse(M: Tensor, shift: float) -> Tensor:
    """:math:`(M + \\text{shift}\\, I)^{-1}` for PSD ``M`` by Cholesky (3x faster than LU at n = 989 on CPU);
    LU where rounding made the shifted matrix numerically indefinite."""
    shifted = M + shift * torch.eye(M.shape[0], dtype=M.dtype, device=M.device)
    L, info = torch.linalg.cholesky_ex(shifted)
    if int(info) != 0:
        return torch.linalg.inv(shifted)
    return torch.cholesky_inverse(L)


@register("kfac")
class KFAC(Curvature):
    """Kronecker-factored damped Fisher solve with running factors and cached eigenbases."""

    def __init__(
        self,
        damping: float | Schedule | dict = 0.1,
        decay: float = 0.95,
        inverse_every: int = 10,
        factor_every: int = 1,
        solve: Literal["factored", "eigen"] = "factored",
        diagnose_every: int = 0,
    ) -> None:
        super().__init__(damping, diagnose_every)
        if solve not in SOLVES:
            raise ValueError(f"kfac.solve={solve!r} is not valid; choose one of {list(SOLVES)}")
        self.solve_mode = solve
        check_number("kfac.decay", decay, lambda v: 0.0 <= v < 1.0, "a number in [0, 1)")
        check_int("kfac.inverse_every", inverse_every, 1)
        check_int("kfac.factor_every", factor_every, 1)
        self.decay = float(decay)
        self.inverse_every = inverse_every
        self.factor_every = factor_every
        self.factor_updates = 0  # how many batches went into the running factors
        self.A: list[Tensor] = []
        self.G: list[Tensor] = []
        self.QA: list[Tensor] = []
        self.eA: list[Tensor] = []
        self.QG: list[Tensor] = []
        self.eG: list[Tensor] = []
        self.Ainv: list[Tensor] = []  # factored: (A + pi sqrt(lambda) I)^-1, (G + sqrt(lambda)/pi I)^-1
        self.Ginv: list[Tensor] = []
        self.inv_damping = float("nan")  # the lambda the inverses were built for

    # ---------------------------------------------------------------- factors
    def update_factors(self, factors: list[tuple[Tensor, Tensor]]) -> None:
        """Fold one batch's :math:`(\\hat A, \\hat G)` into the running averages."""
        shapes_match = len(factors) == len(self.A) and all(
            a.shape == A.shape and g.shape == G.shape for (a, g), A, G in zip(factors, self.A, self.G)
        )
        if self.factor_updates == 0 or not shapes_match:
            self.A = [a.clone() for a, _ in factors]
            self.G = [g.clone() for _, g in factors]
            self.factor_updates = 0
        else:
            beta = self.decay
            for i, (a, g) in enumerate(factors):
                self.A[i].mul_(beta).add_(a.to(self.A[i]), alpha=1.0 - beta)
                self.G[i].mul_(beta).add_(g.to(self.G[i]), alpha=1.0 - beta)
        self.factor_updates += 1

    def refresh_eigenbases(self) -> None:
        """Eigendecompose the current running factors (eigenvalues clamped at 0: they are PSD)."""
        self.QA, self.eA, self.QG, self.eG = [], [], [], []
        for A, G in zip(self.A, self.G):
            eA, QA = torch.linalg.eigh(A)
            eG, QG = torch.linalg.eigh(G)
            self.eA.append(eA.clamp_min(0.0))
            self.QA.append(QA)
            self.eG.append(eG.clamp_min(0.0))
            self.QG.append(QG)

    def refresh_inverses(self, damping: float) -> None:
        """Factored Tikhonov inverses of the current running factors for ``damping``."""
        self.Ainv, self.Ginv = [], []
        root = damping**0.5
        for A, G in zip(self.A, self.G):
            ta, tg = float(A.diagonal().mean()), float(G.diagonal().mean())
            pi = (ta / tg) ** 0.5 if ta > 0 and tg > 0 else 1.0
            self.Ainv.append(spd_inverse(A, pi * root))
            self.Ginv.append(spd_inverse(G, root / pi))
        self.inv_damping = damping

    def _layers_changed(self, scores: Scores) -> bool:
        return len(self.A) != len(scores.a) or any(
            A.shape[0] != a.shape[1] or G.shape[0] != d.shape[1]
            for A, G, a, d in zip(self.A, self.G, scores.a, scores.delta)
        )

    # ------------------------------------------------------------------ solve
    def solve(self, batch: PolicyBatch, damping: float) -> tuple[Tensor, dict[str, float]]:
        scores = batch.scores
        t = self.num_updates  # 0-based index of this update
        changed = self.factor_updates == 0 or self._layers_changed(scores)
        rejected = False
        if changed or t % self.factor_every == 0:
            factors = scores.kronecker_factors()
            rejected = not bool(torch.stack([torch.isfinite(f).all() for pair in factors for f in pair]).all())
            if not rejected:
                self.update_factors(factors)
        extras = {"kfac_factors_rejected": float(rejected)}
        if self.factor_updates == 0 or self._layers_changed(scores):  # nothing usable to solve with
            extras.update(kfac_refreshed=0.0, kfac_factor_updates=float(self.factor_updates))
            return torch.full_like(batch.grad, float("nan")), extras
        due = (changed and not rejected) or t % self.inverse_every == 0
        mats = scores.to_layers(batch.grad)
        out: list[Tensor] = []
        if self.solve_mode == "factored":
            refreshed = due or not self.Ainv or damping != self.inv_damping
            if refreshed:
                self.refresh_inverses(damping)
            dFd = mats[0].new_zeros((), dtype=self.Ainv[0].dtype)
            for V, Ainv, Ginv in zip(mats, self.Ainv, self.Ginv):
                D = Ginv @ V.to(Ginv) @ Ainv
                dFd = dFd + (D * V.to(D)).sum()
                out.append(D.to(V))
        else:
            refreshed = due or not self.QA
            if refreshed:
                self.refresh_eigenbases()
            dFd = mats[0].new_zeros((), dtype=self.QA[0].dtype)
            for V, QA, eA, QG, eG in zip(mats, self.QA, self.eA, self.QG, self.eG):
                M = eG[:, None] * eA[None, :]
                W = (QG.T @ V.to(QG) @ QA) / (M + damping)  # the direction in the eigenbasis
                dFd = dFd + (M * W * W).sum()
                out.append((QG @ W @ QA.T).to(V))
        vec = scores.to_flat(out)
        # d^T F d under the Kronecker Fisher the direction was solved with (as ACKTR's KL clip), free
        # here: the trust-region step needs no contraction of the B x d scores for it.
        extras["dFd"] = float(dFd)
        extras.update(kfac_refreshed=float(refreshed), kfac_factor_updates=float(self.factor_updates))
        return vec, extras

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(
            factor_updates=self.factor_updates,
            A=[t.clone() for t in self.A],
            G=[t.clone() for t in self.G],
            QA=[t.clone() for t in self.QA],
            eA=[t.clone() for t in self.eA],
            QG=[t.clone() for t in self.QG],
            eG=[t.clone() for t in self.eG],
            Ainv=[t.clone() for t in self.Ainv],
            Ginv=[t.clone() for t in self.Ginv],
            inv_damping=self.inv_damping,
        )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.factor_updates = int(state["factor_updates"])
        for key in ("A", "G", "QA", "eA", "QG", "eG", "Ainv", "Ginv"):
            setattr(self, key, [t.clone() for t in state[key]])
        self.inv_damping = float(state["inv_damping"])
