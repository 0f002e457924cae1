"""Direction metrics every backend reports, and the natural-gradient diagnostic (issue 11, section 2)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from ngac.curvature import build_curvature
from ngac.curvature import diagnostics as D

from .conftest import Problem, float32_twin, make_problem, new_data

SPECS: list[dict[str, Any]] = [
    {"name": "identity", "damping": 0.2},
    {"name": "sherman_morrison", "damping": 0.2},
    {"name": "sherman_morrison", "damping": 0.2, "mode": "single_sample"},
    {"name": "diagonal", "damping": 0.2},
    {"name": "kfac", "damping": 0.2},
    {"name": "cg", "damping": 0.2, "iters": 3},
    {"name": "cg", "damping": 0.2, "iters": 3, "fisher": "kl_hessian"},
    {"name": "hybrid", "damping": 0.2, "cg_every": 2, "cg_iters": 3},
]
IDS = ["-".join(str(v) for v in s.values()) for s in SPECS]


def cos(a: torch.Tensor, b: torch.Tensor, M: torch.Tensor | None = None) -> float:
    M = torch.eye(a.numel(), dtype=a.dtype) if M is None else M
    return float(a @ M @ b / torch.sqrt((a @ M @ a) * (b @ M @ b)))


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_every_backend_reports_direction_metrics(problem: Problem, spec: dict[str, Any]) -> None:
    d = build_curvature(**spec).direction(problem.batch(with_kl=True))
    m = d.metrics()
    for key in ("lambda", "direction_norm", "dFd", "direction_ms", "cos_to_gradient"):
        assert key in m
    assert "update_ms" not in m  # a direction's time and a whole update's time have different names
    assert m["direction_ms"] > 0
    assert m["cos_to_gradient"] == pytest.approx(cos(d.vector, problem.g), rel=1e-10)
    assert not any(k.startswith(("cos_to_natural", "diagnose")) for k in m)  # diagnose_every=0: off


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_diagnostic_matches_dense_natural_gradient(problem: Problem, spec: dict[str, Any]) -> None:
    c = build_curvature(**spec, diagnose_every=1)
    for t in range(2):  # a stateful backend's second update too
        batch = (problem if t == 0 else new_data(problem, seed=5)).batch(with_kl=True)
        p = problem if t == 0 else new_data(problem, seed=5)
        d = c.direction(batch)
        x = p.solve(p.F, d.damping)  # dense float64 (F + lambda I)^-1 g on the same batch
        m = d.metrics()
        # CG stops at |r| <= RTOL |g|: the cosines are that accurate, not to rounding
        assert m["cos_to_natural"] == pytest.approx(cos(d.vector, x), abs=10 * D.RTOL)
        assert m["cos_to_natural_fisher"] == pytest.approx(cos(d.vector, x, p.F), abs=10 * D.RTOL)
        assert m["diagnose_residual"] <= D.RTOL and 1 <= m["diagnose_iters"] <= D.MAX_ITERS
        assert m["diagnose_ms"] > 0


def test_diagnostic_tells_backends_apart(problem: Problem) -> None:
    """Converged CG is the natural gradient (cosine 1); the plain gradient is not."""
    cg = build_curvature("cg", damping=0.05, iters=200, tol=1e-12, diagnose_every=1).direction(problem.batch())
    ident = build_curvature("identity", damping=0.05, diagnose_every=1).direction(problem.batch())
    assert cg.extras["cos_to_natural"] == pytest.approx(1.0, abs=1e-9)
    assert cg.extras["cos_to_natural_fisher"] == pytest.approx(1.0, abs=1e-9)
    assert ident.extras["cos_to_natural_fisher"] < 0.99


def test_diagnose_every_n_updates() -> None:
    p = make_problem(seed=3)
    c = build_curvature("diagonal", diagnose_every=3)
    flags = ["cos_to_natural" in c.direction(new_data(p, seed=s).batch()).metrics() for s in range(7)]
    assert flags == [True, False, False, True, False, False, True]


def test_diagnostic_of_a_non_finite_direction_is_nan(problem: Problem) -> None:
    problem.adv[0] = float("nan")
    d = build_curvature("identity", diagnose_every=1).direction(problem.batch())
    assert not d.finite
    assert d.extras["cos_to_natural"] != d.extras["cos_to_natural"]  # nan, and no exception


def test_diagnostic_stops_at_the_tight_relative_tolerance_in_float32() -> None:
    """The actor's dtype: the solve still reaches RTOL relative to |g| on a well-posed batch."""
    p64 = make_problem(seed=2, hidden=(16, 16), batch=256)
    p = float32_twin(p64, seed=2, hidden=(16, 16), batch=256)
    d = build_curvature("sherman_morrison", damping=0.1, diagnose_every=1).direction(p.batch())
    assert d.extras["diagnose_residual"] <= D.RTOL
    x = p64.solve(p64.F, 0.1)
    assert d.extras["cos_to_natural"] == pytest.approx(cos(d.vector.double(), x), abs=1e-4)
