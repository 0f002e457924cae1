"""The hybrid (issue 11, section 3): reduction-ratio damping, CG re-fit, schedules refused, lambda moves."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.optimize import minimize_scalar
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from ngac.curvature import build_curvature
from ngac.curvature.damping_fit import CANDIDATES

from .conftest import Problem, make_problem, new_data

TOL = dict(rtol=1e-10, atol=1e-12)


def sm_dense(p: Problem, mode: str, lam: float) -> torch.Tensor:
    """Sherman-Morrison (fisher_vector=score) from the dense reference alone."""
    S, A = p.S, p.adv
    if mode == "batch_mean":
        v = S.mean(0)
        return p.solve(torch.outer(v, v), lam)
    return (S * (A / (lam + S.pow(2).sum(1)))[:, None]).mean(0)


def fisher_dist(p: Problem, a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b) @ p.F @ (a - b))


@pytest.mark.parametrize("mode", ["batch_mean", "single_sample"])
def test_cg_solve_refits_lambda_for_the_updates_after_it(problem: Problem, mode: str) -> None:
    """The CG result must inform later updates: after a CG update, lambda is the damping at which the
    Sherman-Morrison direction best matches the CG direction in the Fisher norm. Discarding the CG
    result (lambda unchanged) fails the first assertion."""
    lam0 = 0.3
    h = build_curvature("hybrid", damping=lam0, mode=mode, cg_every=3, cg_iters=4 * problem.d)
    d0 = h.direction(problem.batch())
    x = problem.solve(problem.F, lam0)
    torch.testing.assert_close(d0.vector, x, rtol=1e-7, atol=1e-9)  # update 0: converged CG
    lam1 = h.current_damping()
    if mode == "batch_mean":  # continuous minimiser of the Fisher distance, independently
        res = minimize_scalar(
            lambda t: fisher_dist(problem, sm_dense(problem, mode, math.exp(t)), x),
            bounds=(math.log(1e-6), math.log(1e6)),
            method="bounded",
            options={"xatol": 1e-8},
        )
        best = math.exp(res.x)
        assert lam1 == pytest.approx(best, rel=0.02)
    else:  # the best of the candidates lam0 * 10^(j/2)
        cands = [lam0 * 10 ** (j / 2) for j in range(-(CANDIDATES // 2), CANDIDATES // 2 + 1)]
        best = min(cands, key=lambda m: fisher_dist(problem, sm_dense(problem, mode, m), x))
        assert lam1 == pytest.approx(best, rel=1e-12)
    assert abs(math.log(lam1 / lam0)) > math.log(1.5)  # the refit really moved lambda
    assert fisher_dist(problem, sm_dense(problem, mode, lam1), x) < fisher_dist(
        problem, sm_dense(problem, mode, lam0), x
    )
    assert d0.extras["hybrid_fit_lambda"] == pytest.approx(lam1)
    # the next (Sherman-Morrison) update uses the fitted damping, on its own batch
    p2 = new_data(problem, seed=7)
    d1 = h.direction(p2.batch())
    assert d1.damping == lam1 and d1.extras["hybrid_cg"] == 0.0
    torch.testing.assert_close(d1.vector, sm_dense(p2, mode, lam1), **TOL)


def test_cg_disabled_is_sherman_morrison(problem: Problem) -> None:
    h = build_curvature("hybrid", damping=0.3, cg_every=0)
    for _ in range(3):
        d = h.direction(problem.batch())
        assert d.extras["hybrid_cg"] == 0.0
        torch.testing.assert_close(d.vector, sm_dense(problem, "batch_mean", 0.3), **TOL)


def predicted_gain(p: Problem, vec: torch.Tensor, eta: float) -> float:
    return eta * float(p.g @ vec) - 0.5 * eta**2 * float(vec @ p.F @ vec)


@pytest.mark.parametrize(
    "rho,applied,change",
    [(0.9, True, -1), (0.5, True, 0), (0.1, True, +1), (-2.0, True, +1), (0.9, False, +1)],
)
def test_reduction_ratio_rule(problem: Problem, rho: float, applied: bool, change: int) -> None:
    h = build_curvature("hybrid", damping=0.3, cg_every=0, factor=2.0)
    d = h.direction(problem.batch())
    eta, kl = 0.05, 0.003
    gain = kl + rho * predicted_gain(problem, d.vector, eta)  # rho = (gain - kl) / predicted
    h.observe(kl=kl, applied=applied, eta=eta if applied else math.nan, surrogate_gain=gain if applied else math.nan)
    assert h.current_damping() == pytest.approx(0.3 * 2.0**change)
    logged = h.direction(problem.batch()).extras["hybrid_rho"]
    assert (logged == pytest.approx(rho)) if applied else math.isnan(logged)


def test_no_predicted_gain_raises_lambda_and_bounds_hold(problem: Problem) -> None:
    h = build_curvature("hybrid", damping=0.3, cg_every=0, factor=2.0, min_damping=0.1, max_damping=0.5)
    d = h.direction(problem.batch())
    eta = 10 * float(problem.g @ d.vector) / float(d.vector @ problem.F @ d.vector)  # far past the model's maximum
    assert predicted_gain(problem, d.vector, eta) < 0
    h.observe(kl=0.1, applied=True, eta=eta, surrogate_gain=0.5)
    assert h.current_damping() == pytest.approx(0.5)  # raised, clipped at max_damping
    for _ in range(4):
        d = h.direction(problem.batch())
        h.observe(kl=0.0, applied=True, eta=1e-3, surrogate_gain=predicted_gain(problem, d.vector, 1e-3))
    assert h.current_damping() == pytest.approx(0.1)  # rho = 1: lowered, clipped at min_damping


@pytest.mark.parametrize(
    "damping",
    [
        {"schedule": "exponential", "start": 1.0, "end": 0.01, "steps": 10},
        {"schedule": "linear", "start": 1.0, "end": 0.5, "steps": 3},
    ],
)
def test_damping_schedule_is_refused_in_one_line(damping: dict) -> None:
    with pytest.raises(ValueError) as err:
        build_curvature("hybrid", damping=damping)
    msg = str(err.value)
    assert "hybrid.damping" in msg and "schedule" in msg and "sherman_morrison" in msg and "\n" not in msg


def test_constant_damping_mapping_is_a_number() -> None:
    assert build_curvature("hybrid", damping={"schedule": "constant", "start": 0.2}).current_damping() == 0.2


def surrogate(p: Problem, logp_old: torch.Tensor) -> float:
    return float(((p.log_prob_fn() - logp_old).exp() * p.adv).mean())


@pytest.mark.parametrize("step_rule", ["trust_region", "fixed"])
def test_lambda_moves_under_every_step_rule(step_rule: str) -> None:
    """A small training loop with the agent's step rules: lambda must take more than one value, and
    move between CG re-fits too (the reduction ratio acts under the trust region)."""
    p = make_problem(seed=1, hidden=(8, 8), batch=64)
    h = build_curvature("hybrid")  # defaults: cg_every=10
    params = list(p.policy.parameters())
    lams, moved_between_fits = [], 0
    for t in range(21):
        q = new_data(p, seed=100 + t)
        q.adv = q.adv - q.adv.mean()
        d = h.direction(q.batch(with_kl=True))
        lams.append(d.damping)
        eta = math.sqrt(2 * 0.01 / d.dFd) if step_rule == "trust_region" else 0.01
        with torch.no_grad():
            logp_old = q.log_prob_fn()
            before = surrogate(q, logp_old)
            old = parameters_to_vector(params).clone()
            vector_to_parameters(old + eta * d.vector, params)
            kl, gain = float(q.kl_fn()), surrogate(q, logp_old) - before
        h.observe(kl=kl, applied=True, eta=eta, surrogate_gain=gain)
        if not h.uses_cg(t) and h.current_damping() != d.damping:
            moved_between_fits += 1
    assert len(set(lams)) > 1
    assert moved_between_fits >= 5
