"""Every backend against the independent dense reference (float64)."""

from __future__ import annotations

import math

import pytest
import torch

from ngac.curvature import build_curvature
from ngac.curvature.cg import fisher_vector_product
from ngac.curvature.conjugate import conjugate_gradient

from .conftest import Problem, new_data
from .test_scores import gaussian_analytic_fisher

TOL = dict(rtol=1e-10, atol=1e-12)
LAMBDAS = [1e-2, 0.3, 5.0]


def test_identity_is_the_gradient(problem: Problem) -> None:
    d = build_curvature("identity").direction(problem.batch())
    torch.testing.assert_close(d.vector, problem.g, **TOL)
    assert d.dFd == pytest.approx(float(problem.g @ problem.F @ problem.g), rel=1e-10)
    assert d.finite and d.norm == pytest.approx(float(problem.g.norm()))


@pytest.mark.parametrize("lam", LAMBDAS)
@pytest.mark.parametrize("fisher_vector", ["score", "advantage_weighted"])
def test_sherman_morrison_batch_mean(problem: Problem, lam: float, fisher_vector: str) -> None:
    S, _A = problem.S, problem.adv
    v = S.mean(0) if fisher_vector == "score" else problem.g
    ref = problem.solve(torch.outer(v, v), lam)
    d = build_curvature("sherman_morrison", damping=lam, mode="batch_mean", fisher_vector=fisher_vector)
    torch.testing.assert_close(d.direction(problem.batch()).vector, ref, **TOL)


@pytest.mark.parametrize("lam", LAMBDAS)
@pytest.mark.parametrize("fisher_vector", ["score", "advantage_weighted"])
def test_sherman_morrison_single_sample(problem: Problem, lam: float, fisher_vector: str) -> None:
    S, A = problem.S, problem.adv
    sols = []
    for k in range(problem.B):
        v = S[k] if fisher_vector == "score" else A[k] * S[k]
        sols.append(problem.solve(torch.outer(v, v), lam, rhs=A[k] * S[k]))
    ref = torch.stack(sols).mean(0)
    d = build_curvature("sherman_morrison", damping=lam, mode="single_sample", fisher_vector=fisher_vector)
    torch.testing.assert_close(d.direction(problem.batch()).vector, ref, **TOL)


@pytest.mark.parametrize("lam", LAMBDAS)
def test_diagonal(problem: Problem, lam: float) -> None:
    ref = problem.solve(torch.diag(problem.F.diagonal()), lam)
    torch.testing.assert_close(build_curvature("diagonal", damping=lam).direction(problem.batch()).vector, ref, **TOL)


# ------------------------------------------------------------------------------------- K-FAC
def kfac_reference(blocks: list, problem: Problem, lam: float) -> torch.Tensor:
    return problem.solve(problem.kron_matrix(blocks), lam)


def ema(b1: list, b2: list, beta: float) -> list:
    return [(beta * A1 + (1 - beta) * A2, beta * G1 + (1 - beta) * G2, i1) for (A1, G1, i1), (A2, G2, _) in zip(b1, b2)]


@pytest.mark.parametrize("lam", LAMBDAS)
def test_kfac_single_batch(problem: Problem, lam: float) -> None:
    ref = kfac_reference(problem.kron_blocks(), problem, lam)
    got = build_curvature("kfac", damping=lam, solve="eigen").direction(problem.batch()).vector
    torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-11)


def factored_matrix(problem: Problem, blocks: list, lam: float) -> torch.Tensor:
    """Block-diagonal (A + pi sqrt(lam) I) (x) (G + sqrt(lam)/pi I), pi from the traces, from the reference."""
    damped = []
    for A, G, idx in blocks:
        pi = math.sqrt((float(A.trace()) / A.shape[0]) / (float(G.trace()) / G.shape[0]))
        eye_a, eye_g = torch.eye(A.shape[0], dtype=A.dtype), torch.eye(G.shape[0], dtype=G.dtype)
        damped.append((A + pi * math.sqrt(lam) * eye_a, G + math.sqrt(lam) / pi * eye_g, idx))
    return problem.kron_matrix(damped)


@pytest.mark.parametrize("lam", LAMBDAS)
def test_kfac_factored_tikhonov(problem: Problem, lam: float) -> None:
    K = factored_matrix(problem, problem.kron_blocks(), lam)
    d = build_curvature("kfac", damping=lam).direction(problem.batch())  # solve="factored" is the default
    torch.testing.assert_close(d.vector, problem.solve(K, 0.0), rtol=1e-9, atol=1e-11)
    assert d.dFd == pytest.approx(float(d.vector @ K @ d.vector), rel=1e-10)  # ACKTR's damped d^T F d
    exact = kfac_reference(problem.kron_blocks(), problem, lam)
    assert (d.vector - exact).abs().max() > 1e-6 * exact.abs().max()  # a different approximation


def test_kfac_factored_ema_and_damping_schedule(problem: Problem) -> None:
    """Inverses follow the refresh schedule, and are rebuilt when the damping changes."""
    beta = 0.6
    p2, p3 = new_data(problem, seed=12), new_data(problem, seed=13)
    sched = {"schedule": "linear", "start": 0.4, "end": 0.2, "steps": 1}  # 0.4 at update 0, then 0.2
    kfac = build_curvature("kfac", damping=sched, decay=beta, inverse_every=10)
    d1, d2, d3 = (kfac.direction(q.batch()) for q in (problem, p2, p3))
    b1, b2 = problem.kron_blocks(), p2.kron_blocks()
    assert [d.extras["kfac_refreshed"] for d in (d1, d2, d3)] == [1.0, 1.0, 0.0]
    torch.testing.assert_close(d1.vector, problem.solve(factored_matrix(problem, b1, 0.4), 0.0), rtol=1e-9, atol=1e-11)
    # update 2: lambda changed, so rebuilt from the current (EMA of batches 1, 2) factors
    K2 = factored_matrix(p2, ema(b1, b2, beta), 0.2)
    torch.testing.assert_close(d2.vector, p2.solve(K2, 0.0), rtol=1e-9, atol=1e-11)
    # update 3: same lambda, not due: the inverses of update 2
    torch.testing.assert_close(d3.vector, p3.solve(K2, 0.0), rtol=1e-9, atol=1e-11)


def test_kfac_is_not_the_full_fisher(problem: Problem) -> None:
    """Guard: the test above would be vacuous if the Kronecker model equalled F."""
    K = problem.kron_matrix(problem.kron_blocks())
    assert (K - problem.F).abs().max() > 1e-3 * problem.F.abs().max()


def test_kfac_ema_over_two_batches(problem: Problem) -> None:
    beta, lam = 0.7, 0.2
    second = new_data(problem, seed=11)
    kfac = build_curvature("kfac", damping=lam, decay=beta, inverse_every=1, solve="eigen")
    kfac.direction(problem.batch())
    got = kfac.direction(second.batch()).vector
    ref = kfac_reference(ema(problem.kron_blocks(), second.kron_blocks(), beta), second, lam)
    torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-11)


def test_kfac_eigen_refresh_only_every_n(problem: Problem) -> None:
    beta, lam = 0.6, 0.2
    p2, p3 = new_data(problem, seed=12), new_data(problem, seed=13)
    kfac = build_curvature("kfac", damping=lam, decay=beta, inverse_every=2, solve="eigen")
    d1 = kfac.direction(problem.batch())
    d2 = kfac.direction(p2.batch())
    d3 = kfac.direction(p3.batch())
    assert [d.extras["kfac_refreshed"] for d in (d1, d2, d3)] == [1.0, 0.0, 1.0]
    b1, b2, b3 = problem.kron_blocks(), p2.kron_blocks(), p3.kron_blocks()
    # update 2: factors updated but the eigenbasis is still that of batch 1
    torch.testing.assert_close(d2.vector, kfac_reference(b1, p2, lam), rtol=1e-9, atol=1e-11)
    fresh = kfac_reference(ema(b1, b2, beta), p2, lam)
    assert (d2.vector - fresh).abs().max() > 1e-6
    # update 3: refreshed with the EMA of all three batches
    torch.testing.assert_close(
        d3.vector, kfac_reference(ema(ema(b1, b2, beta), b3, beta), p3, lam), rtol=1e-9, atol=1e-11
    )


def test_kfac_factor_every(problem: Problem) -> None:
    beta, lam = 0.6, 0.2
    p2, p3 = new_data(problem, seed=12), new_data(problem, seed=13)
    kfac = build_curvature("kfac", damping=lam, decay=beta, inverse_every=1, factor_every=2, solve="eigen")
    kfac.direction(problem.batch())
    d2 = kfac.direction(p2.batch())  # factors of batch 1 only (batch 2 skipped), refreshed
    d3 = kfac.direction(p3.batch())  # EMA of batches 1 and 3
    b1, b3 = problem.kron_blocks(), p3.kron_blocks()
    torch.testing.assert_close(d2.vector, kfac_reference(b1, p2, lam), rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(d3.vector, kfac_reference(ema(b1, b3, beta), p3, lam), rtol=1e-9, atol=1e-11)
    assert kfac.factor_updates == 2


# ------------------------------------------------------------------------------------------ CG
@pytest.mark.parametrize("lam", LAMBDAS)
def test_cg_empirical_matches_dense_solve(problem: Problem, lam: float) -> None:
    ref = problem.solve(problem.F, lam)
    cg = build_curvature("cg", damping=lam, iters=4 * problem.d, tol=1e-13)
    d = cg.direction(problem.batch())
    torch.testing.assert_close(d.vector, ref, rtol=1e-7, atol=1e-9)
    assert d.extras["cg_residual"] <= 1e-13 and d.extras["cg_iters"] <= 4 * problem.d  # relative to |g|


def test_cg_few_iterations_report_residual(problem: Problem) -> None:
    cg = build_curvature("cg", damping=0.01, iters=2, tol=0.0)
    d = cg.direction(problem.batch())
    assert d.extras["cg_iters"] == 2.0
    # the reported residual is the true residual of the returned x, relative to |g|
    r = problem.g - (problem.F @ d.vector + 0.01 * d.vector)
    assert d.extras["cg_residual"] == pytest.approx(float(r.norm() / problem.g.norm()), rel=1e-6)
    assert d.extras["cg_residual"] > 1e-8


def test_conjugate_gradient_on_random_spd() -> None:
    torch.manual_seed(0)
    Q = torch.randn(30, 30, dtype=torch.float64)
    M = Q @ Q.T + 0.5 * torch.eye(30, dtype=torch.float64)
    b = torch.randn(30, dtype=torch.float64)
    res = conjugate_gradient(lambda v: M @ v, b, 200, 1e-12)
    torch.testing.assert_close(res.x, torch.linalg.solve(M, b), rtol=1e-8, atol=1e-10)
    assert res.iters <= 200 and res.relative_residual <= 1e-12 and res.finite
    assert res.residual == pytest.approx(res.relative_residual * float(b.norm()))


def test_kl_hessian_vector_product_is_the_analytic_gaussian_fisher(problem: Problem) -> None:
    F = gaussian_analytic_fisher(problem)
    fvp = fisher_vector_product(problem.batch(with_kl=True), "kl_hessian")
    torch.manual_seed(1)
    for _ in range(3):
        v = torch.randn(problem.d, dtype=torch.float64)
        torch.testing.assert_close(fvp(v), F @ v, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("lam", [0.05, 1.0])
def test_cg_kl_hessian_matches_dense_solve(problem: Problem, lam: float) -> None:
    F = gaussian_analytic_fisher(problem)
    cg = build_curvature("cg", damping=lam, iters=4 * problem.d, tol=1e-13, fisher="kl_hessian")
    got = cg.direction(problem.batch(with_kl=True)).vector
    torch.testing.assert_close(got, problem.solve(F, lam), rtol=1e-7, atol=1e-9)


def test_cg_kl_hessian_without_kl_fn_raises(problem: Problem) -> None:
    with pytest.raises(ValueError, match="kl_fn"):
        build_curvature("cg", fisher="kl_hessian").direction(problem.batch())


def test_categorical_policy_all_backends(categorical_problem: Problem) -> None:
    p, lam = categorical_problem, 0.2
    pairs = {
        "identity": p.g,
        "diagonal": p.solve(torch.diag(p.F.diagonal()), lam),
        "kfac": kfac_reference(p.kron_blocks(), p, lam),
        "cg": p.solve(p.F, lam),
    }
    for name, ref in pairs.items():
        kw = {"iters": 4 * p.d, "tol": 1e-13} if name == "cg" else {"solve": "eigen"} if name == "kfac" else {}
        got = build_curvature(name, damping=lam, **kw).direction(p.batch()).vector
        torch.testing.assert_close(got, ref, rtol=1e-7, atol=1e-9)


def test_kfac_reports_dFd_under_its_kronecker_fisher(problem: Problem) -> None:
    """The trust-region step measures a K-FAC direction with the Kronecker Fisher it was solved with."""
    K = problem.kron_matrix(problem.kron_blocks())
    d = build_curvature("kfac", damping=0.2, solve="eigen").direction(problem.batch())
    assert d.dFd == pytest.approx(float(d.vector @ K @ d.vector), rel=1e-10)
    assert abs(d.dFd - float(d.vector @ problem.F @ d.vector)) > 1e-6 * d.dFd  # not the empirical one
