"""Scores (one-backward per-sample quantities) against the torch.func dense reference, and the
analytic Fisher of Gaussian and categorical policies against E[s s^T]."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call, jacrev, vmap

from ngac.curvature import Scores

from .conftest import Problem, make_problem

TOL = dict(rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("categorical", [False, True])
def test_dense_matches_torch_func(categorical: bool) -> None:
    p = make_problem(seed=3, categorical=categorical, act=4 if categorical else 2)
    S = p.batch().scores.dense()
    assert S.shape == (p.B, p.d)
    torch.testing.assert_close(S, p.S, **TOL)


def test_every_scores_method_matches_reference(problem: Problem) -> None:
    sc = problem.batch().scores
    S, B = problem.S, problem.B
    c = torch.randn(B, dtype=S.dtype)
    v = torch.randn(problem.d, dtype=S.dtype)
    torch.testing.assert_close(sc.weighted_sum(c), S.T @ c, **TOL)
    torch.testing.assert_close(sc.mean(), S.mean(0), **TOL)
    torch.testing.assert_close(sc.dot(v), S @ v, **TOL)
    torch.testing.assert_close(sc.fisher_vector_product(v), problem.F @ v, **TOL)
    torch.testing.assert_close(sc.quadratic(v), v @ problem.F @ v, **TOL)
    torch.testing.assert_close(sc.sq_norms(), S.pow(2).sum(1), **TOL)
    torch.testing.assert_close(sc.diagonal(), problem.F.diagonal(), **TOL)
    torch.testing.assert_close(problem.batch().grad, problem.g, **TOL)
    # layout helpers are inverse to each other and to_params matches parameter shapes
    torch.testing.assert_close(sc.to_flat(sc.to_layers(v)), v, rtol=0, atol=0)
    shapes = [tuple(t.shape) for t in sc.to_params(v)]
    assert shapes == [tuple(q.shape) for q in problem.policy.parameters()]


def test_kronecker_factors_match_independent_factors(problem: Problem) -> None:
    got = problem.batch().scores.kronecker_factors()
    ref = problem.kron_blocks()
    assert len(got) == len(ref)
    for (A, G), (Ar, Gr, _) in zip(got, ref):
        torch.testing.assert_close(A, Ar, **TOL)
        torch.testing.assert_close(G, Gr, **TOL)


def test_hooks_are_gone_after_capture(problem: Problem) -> None:
    sc = problem.batch().scores
    n_inputs = [a.data_ptr() for a in sc.a]
    for m in problem.policy.modules():
        assert len(m._forward_hooks) == 0
    problem.policy(problem.obs, problem.act)  # a rollout-like forward after capture
    assert [a.data_ptr() for a in sc.a] == n_inputs
    for m in problem.policy.modules():
        assert len(m._forward_hooks) == 0


def test_hooks_are_removed_when_log_prob_fn_raises(problem: Problem) -> None:
    def bad() -> torch.Tensor:
        problem.policy(problem.obs, problem.act)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        Scores.capture(problem.policy, bad)
    assert all(len(m._forward_hooks) == 0 for m in problem.policy.modules())


def test_unsupported_module_and_double_call_are_rejected() -> None:
    class Conv(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv1d(1, 1, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x[:, None, :]).sum((1, 2))

    pol = Conv()
    with pytest.raises(TypeError):
        Scores.capture(pol, lambda: pol(torch.randn(4, 3)))
    lin = torch.nn.Linear(3, 3)
    with pytest.raises(ValueError, match="called 2 times"):
        Scores.capture(lin, lambda: lin(lin(torch.randn(4, 3))).sum(1))


def gaussian_analytic_fisher(p: Problem) -> torch.Tensor:
    r"""Exact Fisher averaged over the batch states: ``J_mu^T diag(sigma^-2) J_mu`` (mean net),
    ``2 I`` on the state-independent log-std, no cross terms."""
    pol = p.policy
    net_params = {k: v.detach() for k, v in pol.net.named_parameters()}
    names = list(net_params)
    jac = vmap(jacrev(lambda prm, o: functional_call(pol.net, prm, (o[None],))[0]), in_dims=(None, 0))(
        net_params, p.obs
    )
    J = torch.cat([jac[n].reshape(p.B, jac[n].shape[1], -1) for n in names], dim=2)  # [B, act, d_mu]
    inv_var = (-2 * pol.log_std.param.detach()).exp()
    F_mu = torch.einsum("bai,a,baj->ij", J, inv_var, J) / p.B
    n_std = pol.log_std.param.numel()
    F = torch.zeros(p.d, p.d, dtype=F_mu.dtype)
    F[: F_mu.shape[0], : F_mu.shape[0]] = F_mu
    F[F_mu.shape[0] :, F_mu.shape[0] :] = 2.0 * torch.eye(n_std, dtype=F_mu.dtype)
    assert F_mu.shape[0] + n_std == p.d  # log-std is the last parameter
    return F


def test_gaussian_analytic_fisher_equals_expected_score_outer_product() -> None:
    base = make_problem(seed=5, hidden=(4,), batch=3, obs=2, act=2)
    F = gaussian_analytic_fisher(base)
    # Monte Carlo E_a[s s^T] at the same 3 states, many actions each (score from the reference)
    n = 40_000
    obs = base.obs.repeat_interleave(n, 0)
    torch.manual_seed(0)
    mc = Problem(base.policy, obs, base.policy.sample(obs), torch.zeros(obs.shape[0], dtype=obs.dtype))
    F_mc = mc.F
    scale = F.abs().max()
    assert (F_mc - F).abs().max() < 0.03 * scale
    # and the mean/log-std cross block is zero in the analytic form, ~0 by MC
    k = F.shape[0] - 2
    assert F[:k, k:].abs().max() == 0
    assert F_mc[:k, k:].abs().max() < 0.03 * scale


def test_categorical_fisher_exact_expectation() -> None:
    p = make_problem(seed=7, hidden=(3,), batch=4, obs=2, act=3, categorical=True)
    net = p.policy.net
    params = {k: v.detach() for k, v in net.named_parameters()}
    names = list(params)
    jac = vmap(jacrev(lambda prm, o: functional_call(net, prm, (o[None],))[0]), in_dims=(None, 0))(params, p.obs)
    J = torch.cat([jac[n].reshape(p.B, jac[n].shape[1], -1) for n in names], dim=2)  # [B, n, d]
    probs = torch.softmax(net(p.obs), -1).detach()
    cov = torch.diag_embed(probs) - probs[:, :, None] * probs[:, None, :]
    F_analytic = torch.einsum("bki,bkl,blj->ij", J, cov, J) / p.B
    # exact expectation over actions: sum_a p(a|o) s_a s_a^T, scores from Scores (subject under test)
    F_exact = torch.zeros_like(F_analytic)
    for a in range(3):
        act = torch.full((p.B,), a)
        q = Problem(p.policy, p.obs, act, torch.zeros(p.B, dtype=p.obs.dtype))
        S = q.batch().scores.dense()
        F_exact += torch.einsum("b,bi,bj->ij", probs[:, a], S, S) / p.B
    torch.testing.assert_close(F_exact, F_analytic, rtol=1e-10, atol=1e-12)
