"""``curvature=woodbury`` against the independent dense reference (float64), CG, and float32."""

from __future__ import annotations

import pytest
import torch

from ngac.curvature import build_curvature
from ngac.curvature.conjugate import conjugate_gradient

from .conftest import Problem, float32_twin, make_problem, new_data

LAMBDAS = [1e-3, 1e-1, 1.0, 10.0]


def rtol_for(problem: Problem, lam: float, F: torch.Tensor | None = None) -> float:
    """1e-10, widened only by the condition number of F + lambda I (float64 rounding times cond)."""
    top = float(torch.linalg.eigvalsh(problem.F if F is None else F).max())
    return max(1e-10, 1e-15 * (top + lam) / lam)


def assert_rel(got: torch.Tensor, ref: torch.Tensor, rtol: float) -> None:
    err = float((got - ref).norm() / ref.norm())
    assert err <= rtol, f"relative error {err:.3g} > {rtol:.3g}"


@pytest.mark.parametrize("block_from", [4, 10_000], ids=["blocks", "one-product"])
def test_gram_is_S_S_transpose(problem: Problem, block_from: int) -> None:
    K = problem.batch().scores.sample_gram(block_from=block_from)
    torch.testing.assert_close(K, problem.S @ problem.S.T, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("lam", LAMBDAS)
@pytest.mark.parametrize("batch", [1, 7, 256])
@pytest.mark.parametrize("categorical", [False, True], ids=["gaussian", "categorical"])
def test_exact_against_dense_reference(batch: int, lam: float, categorical: bool) -> None:
    p = make_problem(seed=batch, batch=batch, categorical=categorical, act=4 if categorical else 2)
    d = build_curvature("woodbury", damping=lam).direction(p.batch())
    ref = p.solve(p.F, lam)
    assert_rel(d.vector, ref, rtol_for(p, lam))
    assert d.dFd == pytest.approx(float(ref @ p.F @ ref), rel=1e-9)
    assert d.extras["rank"] == batch


def test_frozen_bias_drops_its_column_of_the_gram() -> None:
    p = make_problem(seed=3, batch=9)
    p.policy.net[0].bias.requires_grad_(False)
    keep = torch.cat([torch.full((q.numel(),), q.requires_grad) for q in p.policy.parameters()])
    S = p.S[:, keep]
    F, g = S.T @ S / p.B, S.T @ p.adv / p.B
    ref = torch.linalg.solve(F + 0.1 * torch.eye(F.shape[0], dtype=F.dtype), g)
    got = build_curvature("woodbury", damping=0.1).direction(p.batch()).vector
    assert_rel(got, ref, 1e-10)


@pytest.mark.parametrize("lam", [1e-2, 1.0])
def test_equals_cg_run_to_convergence(problem: Problem, lam: float) -> None:
    cg = build_curvature("cg", damping=lam, iters=2000, tol=1e-14).direction(problem.batch()).vector
    direct = conjugate_gradient(lambda v: problem.F @ v + lam * v, problem.g, 2000, 1e-14).x
    got = build_curvature("woodbury", damping=lam).direction(problem.batch()).vector
    assert_rel(got, cg, 1e-8)
    assert_rel(got, direct, 1e-8)


def test_cos_to_natural_is_one_at_full_rank(problem: Problem) -> None:
    d = build_curvature("woodbury", damping=0.1, diagnose_every=1).direction(problem.batch())
    assert d.extras["cos_to_natural"] == pytest.approx(1.0, abs=1e-9)
    assert d.extras["cos_to_natural_fisher"] == pytest.approx(1.0, abs=1e-9)
    sketch = build_curvature("woodbury", damping=0.1, rank=4, seed=0, diagnose_every=1).direction(problem.batch())
    assert sketch.extras["cos_to_natural"] < 0.999  # a 4-of-24 sketch departs from the exact solve


@pytest.mark.parametrize("lam", [1e-2, 1.0])
def test_sketch_is_the_dense_solve_on_the_drawn_samples(problem: Problem, lam: float) -> None:
    k = 6
    curv = build_curvature("woodbury", damping=lam, rank=k, seed=11)
    rows = torch.randperm(problem.B, generator=torch.Generator().manual_seed(11))[:k]
    Sk = problem.S[rows]
    ref = problem.solve(Sk.T @ Sk / k, lam)  # g stays the whole batch's gradient
    d = curv.direction(problem.batch())
    assert_rel(d.vector, ref, rtol_for(problem, lam, Sk.T @ Sk / k))
    assert d.dFd == pytest.approx(float(ref @ problem.F @ ref), rel=1e-9)  # under the whole batch's Fisher
    assert d.extras["rank"] == k


def test_sketch_is_seeded_resumable_and_exact_at_full_size(problem: Problem) -> None:
    batches = [problem.batch()] + [new_data(problem, s).batch() for s in (1, 2)]
    a = build_curvature("woodbury", rank=5, seed=2)
    a.direction(batches[0])
    b = build_curvature("woodbury", rank=5, seed=2)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.direction(batches[1]).vector, b.direction(batches[1]).vector)
    fresh = build_curvature("woodbury", rank=5, seed=2).direction(batches[1]).vector
    assert not torch.equal(fresh, b.direction(batches[2]).vector)
    full = build_curvature("woodbury").direction(batches[0]).vector
    assert torch.equal(build_curvature("woodbury", rank=problem.B, seed=0).direction(batches[0]).vector, full)


def test_run_seed_is_the_default_sketch_seed(problem: Problem) -> None:
    torch.manual_seed(123)
    a = build_curvature("woodbury", rank=5).direction(problem.batch()).vector
    b = build_curvature("woodbury", rank=5, seed=123).direction(problem.batch()).vector
    assert torch.equal(a, b)


def test_float32_on_the_real_actor() -> None:
    """HalfCheetah's default actor (17 -> 64 -> 64 -> 6, tanh, state-independent log-std), B = 1024."""
    shape = dict(seed=5, hidden=(64, 64), obs=17, act=6, batch=1024)
    p64 = make_problem(**shape)
    p32 = float32_twin(p64, **shape)
    for lam in [1e-3, 1e-2, 1e-1, 1.0, 10.0, 1e-5, 1e-7]:
        d64 = build_curvature("woodbury", damping=lam).direction(p64.batch()).vector
        d32 = build_curvature("woodbury", damping=lam).direction(p32.batch())
        assert d32.finite and d32.vector.dtype == torch.float32
        err = float((d32.vector.double() - d64).norm() / d64.norm())
        assert err <= (1e-5 if lam >= 1e-3 else 1e-3), f"lambda={lam}: float32 is {err:.3g} off float64"


def test_failed_factorisation_refuses_the_step(problem: Problem, monkeypatch: pytest.MonkeyPatch) -> None:
    real = torch.linalg.cholesky_ex
    monkeypatch.setattr(torch.linalg, "cholesky_ex", lambda M: (real(M)[0], torch.tensor(1)))
    d = build_curvature("woodbury").direction(problem.batch())
    assert not d.finite
    monkeypatch.setattr(torch.linalg, "cholesky_ex", real)
    problem.adv[3] = float("nan")
    assert not build_curvature("woodbury").direction(problem.batch()).finite


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"rank": 0}, "woodbury.rank=0"), ({"rank": 2.5}, "woodbury.rank=2.5"), ({"seed": -1}, "woodbury.seed=-1")],
)
def test_bad_options_are_one_line(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match) as err:
        build_curvature("woodbury", **kwargs)
    assert "\n" not in str(err.value)
