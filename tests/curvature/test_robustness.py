"""Non-finite batches and CG stopping rules (issue 11, sections 4 and 5)."""

from __future__ import annotations

import math

import pytest
import torch

from ngac.curvature import build_curvature
from ngac.curvature.conjugate import conjugate_gradient

from .conftest import Problem, new_data
from .test_backends import ema, kfac_reference


@pytest.fixture(autouse=True)
def no_distribution_validation():
    """Let a NaN observation through torch.distributions (as a corrupted batch would be in an agent
    that does not validate), instead of a ValueError at the policy."""
    torch.distributions.Distribution.set_default_validate_args(False)
    yield
    torch.distributions.Distribution.set_default_validate_args(__debug__)  # torch's default


def poisoned(problem: Problem, seed: int) -> Problem:
    """A batch whose observations contain a NaN: every layer's factors become non-finite."""
    bad = new_data(problem, seed=seed)
    bad.obs[3, 0] = float("nan")
    return bad


def test_kfac_never_folds_a_non_finite_batch_into_its_factors(problem: Problem) -> None:
    beta, lam = 0.7, 0.2
    p3 = new_data(problem, seed=13)
    kfac = build_curvature("kfac", damping=lam, decay=beta, inverse_every=1, solve="eigen")
    kfac.direction(problem.batch())
    A_before = [a.clone() for a in kfac.A]
    bad = kfac.direction(poisoned(problem, seed=12).batch())
    assert not bad.finite and bad.extras["kfac_factors_rejected"] == 1.0
    assert all(torch.equal(a, b) for a, b in zip(kfac.A, A_before))
    assert kfac.factor_updates == 1
    # the next clean batch gives the direction of the factors of batches 1 and 3, as if 2 never happened
    d3 = kfac.direction(p3.batch())
    assert d3.finite and d3.extras["kfac_factors_rejected"] == 0.0
    ref = kfac_reference(ema(problem.kron_blocks(), p3.kron_blocks(), beta), p3, lam)
    torch.testing.assert_close(d3.vector, ref, rtol=1e-9, atol=1e-11)


def test_kfac_non_finite_first_batch_then_clean(problem: Problem) -> None:
    kfac = build_curvature("kfac", damping=0.2, solve="eigen")
    first = kfac.direction(poisoned(problem, seed=4).batch())
    assert not first.finite and kfac.factor_updates == 0 and kfac.A == []
    d = kfac.direction(problem.batch())
    torch.testing.assert_close(d.vector, kfac_reference(problem.kron_blocks(), problem, 0.2), rtol=1e-9, atol=1e-11)


def test_kfac_state_after_a_rejected_batch_round_trips(problem: Problem) -> None:
    a = build_curvature("kfac", inverse_every=2)
    a.direction(problem.batch())
    a.direction(poisoned(problem, seed=1).batch())
    b = build_curvature("kfac", inverse_every=2)
    b.load_state_dict(a.state_dict())
    nxt = new_data(problem, seed=2).batch()
    assert torch.equal(a.direction(nxt).vector, b.direction(new_data(problem, seed=2).batch()).vector)


def test_cg_tolerance_is_relative_to_the_gradient(problem: Problem) -> None:
    """The same tol stops after the same number of iterations whatever the scale of g."""
    iters = []
    for scale in (1e-6, 1.0, 1e6):
        problem.adv = problem.adv * scale
        d = build_curvature("cg", damping=0.1, iters=500, tol=1e-6).direction(problem.batch())
        problem.adv = problem.adv / scale
        r = problem.g * scale - (problem.F @ d.vector + 0.1 * d.vector)
        assert float(r.norm()) <= 1e-6 * float(problem.g.norm()) * scale * (1 + 1e-6)
        assert d.extras["cg_residual"] <= 1e-6
        iters.append(d.extras["cg_iters"])
    assert iters[0] == iters[1] == iters[2] and 1 < iters[0] < 500


def test_cg_stops_at_the_first_non_finite_iterate() -> None:
    calls = []

    def matvec(v: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return v * (float("nan") if len(calls) == 3 else 2.0) + 0.1 * v.roll(1)

    b = torch.randn(50, dtype=torch.float64)
    res = conjugate_gradient(matvec, b, iters=40, rtol=0.0)
    assert len(calls) == 3 and res.iters == 3 and not res.finite
    assert not bool(torch.isfinite(res.x).all())  # returned as is: the caller sees the failure


def test_cg_with_a_non_finite_gradient_does_no_work(problem: Problem) -> None:
    problem.adv[0] = math.inf
    d = build_curvature("cg", iters=10).direction(problem.batch())
    assert not d.finite and d.extras["cg_iters"] == 0.0


@pytest.mark.parametrize("name", ["cg", "hybrid"])
def test_nan_scores_give_a_non_finite_direction_not_an_exception(problem: Problem, name: str) -> None:
    d = build_curvature(name).direction(poisoned(problem, seed=3).batch())
    assert not d.finite


def test_cg_past_convergence_keeps_the_converged_iterate() -> None:
    """rtol=0 and far more iterations than the dimension: p^T M p underflows to 0 after convergence;
    that breakdown ends the solve with the converged x, not with inf/nan."""
    torch.manual_seed(0)
    Q = torch.randn(8, 8, dtype=torch.float64)
    M = Q @ Q.T + torch.eye(8, dtype=torch.float64)
    b = torch.randn(8, dtype=torch.float64)
    res = conjugate_gradient(lambda v: M @ v, b, iters=500, rtol=0.0)
    assert res.finite and res.iters < 500
    torch.testing.assert_close(res.x, torch.linalg.solve(M, b), rtol=1e-10, atol=1e-12)


def test_spd_inverse_falls_back_to_lu_when_cholesky_fails() -> None:
    from ngac.curvature.kfac import spd_inverse

    M = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    torch.testing.assert_close(spd_inverse(M, 0.5), torch.linalg.inv(M + 0.5 * torch.eye(2, dtype=torch.float64)))
    N = -M  # shifted matrix indefinite: Cholesky refuses, LU still inverts
    torch.testing.assert_close(spd_inverse(N, 0.5), torch.linalg.inv(N + 0.5 * torch.eye(2, dtype=torch.float64)))
