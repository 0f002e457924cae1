"""Hypothesis: random small MLPs, batch sizes and lambdas; every backend equals its dense formula."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ngac.curvature import build_curvature

from .conftest import ACTIVATIONS, make_problem

problems = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 10_000),
        "hidden": st.lists(st.integers(1, 6), min_size=0, max_size=3),
        "batch": st.integers(1, 12),
        "obs": st.integers(1, 4),
        "act": st.integers(1, 3),
        "activation": st.sampled_from(sorted(ACTIVATIONS)),
        "categorical": st.booleans(),
    }
)
lambdas = st.floats(1e-2, 10.0)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=problems, lam=lambdas)
def test_backends_match_dense_reference(cfg: dict, lam: float) -> None:
    if cfg["categorical"]:
        cfg["act"] += 1  # at least two actions
    p = make_problem(**cfg)
    S, A, _B = p.S, p.adv, p.B
    torch.testing.assert_close(p.batch().scores.dense(), S, rtol=1e-10, atol=1e-12)
    tol = dict(rtol=1e-8, atol=1e-10 * (1.0 + float(p.g.abs().max()) / lam))

    def run(name: str, **kw) -> torch.Tensor:
        return build_curvature(name, damping=lam, **kw).direction(p.batch()).vector

    torch.testing.assert_close(run("identity"), p.g, **tol)
    torch.testing.assert_close(run("diagonal"), p.solve(torch.diag(p.F.diagonal()), lam), **tol)
    v = S.mean(0)
    torch.testing.assert_close(run("sherman_morrison"), p.solve(torch.outer(v, v), lam), **tol)
    sq = S.pow(2).sum(1)
    single = (S * (A / (lam + sq))[:, None]).mean(0)
    torch.testing.assert_close(run("sherman_morrison", mode="single_sample"), single, **tol)
    torch.testing.assert_close(run("kfac", solve="eigen"), p.solve(p.kron_matrix(p.kron_blocks()), lam), **tol)
    torch.testing.assert_close(
        run("cg", iters=4 * p.d, tol=1e-14),
        p.solve(p.F, lam),
        rtol=1e-6,
        atol=1e-8 * (1 + float(p.g.abs().max()) / lam),
    )
