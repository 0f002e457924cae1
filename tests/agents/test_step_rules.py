"""The step rules set the size of every natural-gradient update: checked on hand-computable problems."""

from __future__ import annotations

import math

import pytest
import torch

from ngac.agents.step_rules import take_step


def _params(*values: float) -> list[torch.Tensor]:
    return [torch.tensor(list(values), dtype=torch.float64)]


def _quadratic(params: list[torch.Tensor], origin: torch.Tensor):
    """KL = 0.5 |theta - origin|^2 (Fisher = I), surrogate = sum(theta - origin)."""

    def kl_fn() -> torch.Tensor:
        return 0.5 * (params[0] - origin).square().sum()

    def surrogate_fn() -> torch.Tensor:
        return (params[0] - origin).sum()

    return kl_fn, surrogate_fn


def test_fixed_applies_the_learning_rate():
    params = _params(1.0, 2.0)
    kl_fn, surr = _quadratic(params, params[0].clone())
    d = torch.tensor([3.0, -1.0], dtype=torch.float64)
    result = take_step("fixed", params, d, dFd=10.0, lr=0.1, max_kl=0.01, kl_fn=kl_fn, surrogate_fn=surr)
    assert result.applied and result.eta == 0.1
    torch.testing.assert_close(params[0], torch.tensor([1.3, 1.9], dtype=torch.float64))
    assert result.kl == pytest.approx(0.5 * (0.09 + 0.01))
    assert result.surrogate_gain == pytest.approx(0.3 - 0.1)


def test_trust_region_eta_is_the_kl_radius_by_hand():
    # eta = sqrt(2 delta / d^T F d); with F = I, d = (3, 4): d^T F d = 25, delta = 0.02 -> eta = sqrt(0.04 / 25) = 0.04
    params = _params(0.0, 0.0)
    kl_fn, surr = _quadratic(params, params[0].clone())
    d = torch.tensor([3.0, 4.0], dtype=torch.float64)
    result = take_step("trust_region", params, d, dFd=25.0, lr=123.0, max_kl=0.02, kl_fn=kl_fn, surrogate_fn=surr)
    assert result.applied
    assert result.eta == pytest.approx(0.04, rel=1e-12)
    torch.testing.assert_close(params[0], torch.tensor([0.12, 0.16], dtype=torch.float64))
    assert result.kl == pytest.approx(0.02, rel=1e-12), (
        "the quadratic KL model is exact here: the step lands on the radius"
    )


def test_line_search_backtracks_until_kl_and_gain_are_acceptable():
    # The true KL is 4x the quadratic model, so the full step overshoots 1.5 * max_kl: one halving.
    params = _params(0.0)
    origin = params[0].clone()

    def kl_fn() -> torch.Tensor:
        return 2.0 * (params[0] - origin).square().sum()

    def surrogate_fn() -> torch.Tensor:
        return (params[0] - origin).sum()

    d = torch.tensor([1.0], dtype=torch.float64)
    result = take_step("line_search", params, d, dFd=1.0, lr=1.0, max_kl=0.01, kl_fn=kl_fn, surrogate_fn=surrogate_fn)
    eta0 = math.sqrt(2 * 0.01 / 1.0)
    assert result.applied and result.backtracks == 1
    assert result.eta == pytest.approx(eta0 / 2)
    assert result.kl == pytest.approx(2 * (eta0 / 2) ** 2) and result.kl <= 1.5 * 0.01


def test_line_search_restores_the_parameters_when_nothing_improves():
    params = _params(1.0, -1.0)
    before = params[0].clone()
    kl_fn, _ = _quadratic(params, before)

    def worse() -> torch.Tensor:  # every step along d lowers the surrogate
        return -(params[0] - before).sum()

    d = torch.tensor([1.0, 1.0], dtype=torch.float64)
    result = take_step("line_search", params, d, dFd=2.0, lr=1.0, max_kl=0.01, kl_fn=kl_fn, surrogate_fn=worse,
                       max_backtracks=3, shrink=0.5)  # fmt: skip
    assert not result.applied and result.backtracks == 3
    assert "line search" in result.reason
    assert torch.equal(params[0], before)


@pytest.mark.parametrize("rule", ["fixed", "trust_region", "line_search"])
def test_a_non_finite_direction_is_never_applied(rule):
    params = _params(1.0, 2.0)
    before = params[0].clone()
    kl_fn, surr = _quadratic(params, before)
    d = torch.tensor([float("nan"), 1.0], dtype=torch.float64)
    result = take_step(rule, params, d, dFd=1.0, lr=0.1, max_kl=0.01, kl_fn=kl_fn, surrogate_fn=surr)
    assert not result.applied and torch.equal(params[0], before)


@pytest.mark.parametrize("dFd", [0.0, -1.0, float("nan"), float("inf")])
def test_trust_region_refuses_a_degenerate_curvature(dFd):
    params = _params(1.0)
    before = params[0].clone()
    kl_fn, surr = _quadratic(params, before)
    result = take_step("trust_region", params, torch.ones(1, dtype=torch.float64), dFd=dFd, lr=0.1, max_kl=0.01,
                       kl_fn=kl_fn, surrogate_fn=surr)  # fmt: skip
    assert not result.applied and torch.equal(params[0], before)
