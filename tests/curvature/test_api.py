"""Registry, options, schedules, state_dict round trips, float32, CUDA, and no d x d tensors."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from ngac.curvature import REGISTRY, Schedule, as_schedule, build_curvature, options

from .conftest import Problem, make_problem, new_data

ALL = sorted(REGISTRY)
SPECS: list[dict[str, Any]] = [
    {"name": "identity"},
    {"name": "sherman_morrison", "mode": "batch_mean"},
    {"name": "sherman_morrison", "mode": "single_sample", "fisher_vector": "advantage_weighted"},
    {"name": "diagonal"},
    {"name": "kfac", "decay": 0.8, "inverse_every": 2},
    {"name": "kfac", "decay": 0.8, "inverse_every": 3, "factor_every": 2},
    {"name": "kfac", "decay": 0.8, "inverse_every": 2, "solve": "eigen"},
    {"name": "cg", "iters": 5},
    {"name": "cg", "iters": 5, "fisher": "kl_hessian"},
    {"name": "hybrid", "cg_every": 2, "cg_iters": 5},
    {"name": "hybrid", "mode": "single_sample", "cg_every": 3},
    {"name": "woodbury"},
    {"name": "woodbury", "rank": 7, "seed": 1},
]


def spec_id(spec: dict[str, Any]) -> str:
    return "-".join(str(v) for v in spec.values())


def test_all_backends_registered() -> None:
    assert {"identity", "sherman_morrison", "diagonal", "kfac", "cg", "hybrid", "woodbury"} <= set(REGISTRY)
    assert {spec["name"] for spec in SPECS} == set(REGISTRY), "every backend needs a row in SPECS"


def test_unknown_backend_lists_valid_names() -> None:
    with pytest.raises(ValueError) as err:
        build_curvature("nope")
    for name in ALL:
        assert name in str(err.value)


@pytest.mark.parametrize("name", ALL)
def test_unknown_option_names_valid_options(name: str) -> None:
    with pytest.raises(ValueError) as err:
        build_curvature(name, not_an_option=1)
    for opt in options(name):
        assert opt in str(err.value)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize(
    "bad",
    [
        0.0,
        -1.0,
        math.inf,
        math.nan,
        True,
        "x",
        {"schedule": "bogus"},
        {"schedule": "linear", "start": 1.0, "end": -0.1, "steps": 5},
        {"schedule": "linear", "start": 1.0, "end": 0.1, "steps": 0},
        {"schedule": "linear", "start": 1.0, "stop": 0.1},
    ],
)
def test_bad_damping_rejected_at_construction(name: str, bad: Any) -> None:
    with pytest.raises(ValueError, match="damping"):
        build_curvature(name, damping=bad)


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("sherman_morrison", {"mode": "bogus"}),
        ("sherman_morrison", {"fisher_vector": "bogus"}),
        ("kfac", {"decay": 1.0}),
        ("kfac", {"decay": -0.1}),
        ("kfac", {"inverse_every": 0}),
        ("kfac", {"factor_every": 0}),
        ("kfac", {"solve": "cholesky"}),
        ("cg", {"iters": 0}),
        ("cg", {"tol": -1.0}),
        ("cg", {"tol": 1.0}),
        ("identity", {"diagnose_every": -1}),
        ("kfac", {"diagnose_every": 1.5}),
        ("cg", {"fisher": "bogus"}),
        ("hybrid", {"factor": 1.0}),
        ("hybrid", {"rho_low": 0.8}),
        ("hybrid", {"rho_high": float("nan")}),
        ("hybrid", {"min_damping": 2.0, "max_damping": 1.0}),
        ("hybrid", {"damping": {"schedule": "linear", "start": 1.0, "end": 0.1, "steps": 5}}),
        ("hybrid", {"cg_every": -1}),
        ("hybrid", {"cg_iters": 0}),
        ("hybrid", {"mode": "bogus"}),
    ],
)
def test_bad_options_rejected(name: str, kwargs: dict[str, Any]) -> None:
    key = next(iter(kwargs))
    with pytest.raises(ValueError, match=key.split("_")[0]):
        build_curvature(name, **kwargs)


def test_choice_errors_name_valid_choices() -> None:
    with pytest.raises(ValueError, match="empirical.*kl_hessian"):
        build_curvature("cg", fisher="bogus")
    with pytest.raises(ValueError, match="batch_mean.*single_sample"):
        build_curvature("hybrid", mode="bogus")


def test_schedule_values() -> None:
    lin = as_schedule({"schedule": "linear", "start": 1.0, "end": 0.5, "steps": 10}, "x")
    assert lin(0) == 1.0 and lin(5) == pytest.approx(0.75) and lin(10) == 0.5 and lin(99) == 0.5
    exp = as_schedule({"schedule": "exponential", "start": 1.0, "end": 0.01, "steps": 500}, "x")
    assert exp(250) == pytest.approx(0.1) and exp(1000) == pytest.approx(0.01)
    cos = as_schedule({"schedule": "cosine", "start": 1.0, "end": 0.0 + 1e-3, "steps": 4}, "x")
    assert cos(2) == pytest.approx((1.0 + 1e-3) / 2) and cos(4) == pytest.approx(1e-3)
    assert as_schedule(0.3, "x") == Schedule("constant", 0.3, 0.3, 1)
    assert as_schedule(0.3, "x")(10**6) == 0.3


def test_scheduled_damping_is_used_per_update(problem: Problem) -> None:
    c = build_curvature("diagonal", damping={"schedule": "linear", "start": 1.0, "end": 0.5, "steps": 2})
    lams = [c.direction(problem.batch()).damping for _ in range(4)]
    assert lams == pytest.approx([1.0, 0.75, 0.5, 0.5])


def test_configs_match_constructor_defaults() -> None:
    import inspect
    from pathlib import Path

    import yaml

    folder = Path(__file__).resolve().parents[2] / "configs" / "curvature"
    for name in ALL:
        cfg = yaml.safe_load((folder / f"{name}.yaml").read_text())
        assert cfg.pop("name") == name
        sig = inspect.signature(REGISTRY[name].__init__)
        assert cfg == {k: p.default for k, p in sig.parameters.items() if k != "self"}
        build_curvature(name, **cfg)


# ---------------------------------------------------------------------------- state round trip
@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_state_dict_round_trip(spec: dict[str, Any]) -> None:
    p = make_problem(seed=2)
    batches = [new_data(p, seed=s) for s in range(4)]
    a = build_curvature(**spec)
    for i, b in enumerate(batches[:3]):
        a.direction(b.batch(with_kl=True))
        nan = float("nan")
        a.observe(kl=[0.5, 0.0, 0.012][i], applied=i != 2, eta=[0.1, 1.0, nan][i], surrogate_gain=[0.2, 0.01, nan][i])
    state = a.state_dict()
    b = build_curvature(**spec)
    b.load_state_dict(state)
    # mutating the live object must not change the saved state
    expected = a.direction(batches[3].batch(with_kl=True)).vector
    got = b.direction(batches[3].batch(with_kl=True)).vector
    assert torch.equal(expected, got)
    assert a.state_dict().keys() == state.keys() and a.num_updates == b.num_updates == 4
    fresh = build_curvature(**spec).direction(batches[3].batch(with_kl=True)).vector
    if spec["name"] in {"kfac", "hybrid"}:  # stateful: resuming differs from starting afresh
        assert not torch.equal(fresh, got)


def test_kfac_state_is_tensors_and_copied(problem: Problem) -> None:
    k = build_curvature("kfac", solve="eigen")
    k.direction(problem.batch())
    state = k.state_dict()
    for key in ("A", "G", "QA", "eA", "QG", "eG"):
        assert all(isinstance(t, torch.Tensor) for t in state[key]) and len(state[key]) == 4
    before = state["A"][0].clone()
    k.direction(new_data(problem, 3).batch())
    assert torch.equal(state["A"][0], before)


# ------------------------------------------------------------------------ dtype / device / size
@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_float32_runs_and_agrees_with_float64(spec: dict[str, Any]) -> None:
    p64 = make_problem(seed=4)
    p32 = make_problem(seed=4, dtype=torch.float32)
    p32.obs.copy_(p64.obs.float())
    p32.act.copy_(p64.act.float())
    p32.adv.copy_(p64.adv.float())
    d32 = build_curvature(**spec).direction(p32.batch(with_kl=True))
    d64 = build_curvature(**spec).direction(p64.batch(with_kl=True))
    assert d32.vector.dtype == torch.float32 and d32.finite
    # truncated CG (hybrid's refresh at update 0, tol=0) amplifies float32 rounding: looser there
    scale = 1e-2 if spec["name"] == "hybrid" else 1e-4
    torch.testing.assert_close(d32.vector.double(), d64.vector, rtol=1e-3, atol=scale * float(d64.vector.abs().max()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_cuda_matches_cpu(spec: dict[str, Any]) -> None:
    p = make_problem(seed=6)
    cpu = build_curvature(**spec).direction(p.batch(with_kl=True)).vector
    p.policy.cuda()
    p.obs, p.act, p.adv = p.obs.cuda(), p.act.cuda(), p.adv.cuda()
    p.old = {k: v.cuda() for k, v in p.old.items()}
    gpu = build_curvature(**spec).direction(p.batch(with_kl=True)).vector
    assert gpu.is_cuda
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-8, atol=1e-10)


def test_no_backend_allocates_d_by_d() -> None:
    """d ~ 3e5: a d x d float32 tensor would be ~360 GB, so merely finishing proves there is none.
    Any torch.linalg.solve/inv on a d-sized system is also refused outright."""
    p = make_problem(seed=8, hidden=(536, 536), obs=17, act=6, batch=16, dtype=torch.float32)
    d = sum(q.numel() for q in p.policy.parameters())
    assert d > 290_000
    real_solve, real_inv = torch.linalg.solve, torch.linalg.inv

    def guarded(fn):
        def inner(A, *args, **kwargs):
            assert A.shape[-1] < 10_000, "dense solve on a parameter-sized system"
            return fn(A, *args, **kwargs)

        return inner

    torch.linalg.solve, torch.linalg.inv = guarded(real_solve), guarded(real_inv)
    try:
        for spec in SPECS:
            out = build_curvature(**spec).direction(p.batch(with_kl=True))
            assert out.finite and out.vector.shape == (d,)
    finally:
        torch.linalg.solve, torch.linalg.inv = real_solve, real_inv


def test_inplace_activation_after_linear_is_refused():
    """An in-place op on a Linear output would silently corrupt delta; it must raise instead."""
    import pytest
    import torch
    from torch import nn

    from ngac.curvature import Scores

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(inplace=True), nn.Linear(4, 2))
    x = torch.randn(5, 3)
    with pytest.raises(ValueError, match="in place"):
        Scores.capture(net, lambda: torch.log_softmax(net(x), -1)[:, 0])


def test_cg_on_the_kl_hessian_reports_dFd_under_that_fisher():
    """TRPO's step size needs x^T H x with the KL Hessian, not the empirical Fisher."""
    import torch
    from torch import nn

    from ngac.curvature import BroadcastParameter, PolicyBatch, build_curvature

    torch.manual_seed(0)
    torch.set_default_dtype(torch.float64)
    try:
        net, log_std = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)), BroadcastParameter(2, -0.2)
        policy = nn.ModuleDict({"net": net, "log_std": log_std})
        obs, act, adv = torch.randn(40, 3), torch.randn(40, 2), torch.randn(40)
        with torch.no_grad():
            mu0, ls0 = net(obs), log_std(net(obs))
        old = torch.distributions.Independent(torch.distributions.Normal(mu0, ls0.exp()), 1)

        def dist():
            mu = net(obs)
            return torch.distributions.Independent(torch.distributions.Normal(mu, log_std(mu).exp()), 1)

        batch = PolicyBatch(
            policy,
            lambda: dist().log_prob(act),
            adv,
            kl_fn=lambda: torch.distributions.kl_divergence(old, dist()).mean(),
        )
        d = build_curvature("cg", damping=0.1, iters=50, fisher="kl_hessian").direction(batch)
        params = list(policy.parameters())
        grad = torch.autograd.grad(torch.distributions.kl_divergence(old, dist()).mean(), params, create_graph=True)
        flat = torch.cat([g.reshape(-1) for g in grad])
        hv = torch.autograd.grad(flat @ d.vector, params)
        expected = float(d.vector @ torch.cat([h.reshape(-1) for h in hv]))
        assert abs(d.dFd - expected) <= 1e-10 * max(1.0, abs(expected))
        assert abs(d.dFd - float(batch.scores.quadratic(d.vector))) > 1e-6  # not the empirical one
    finally:
        torch.set_default_dtype(torch.float32)


IDENTITY_UP_TO_SCALE = [
    {"name": "sherman_morrison", "mode": "batch_mean", "fisher_vector": "advantage_weighted"},
    {"name": "hybrid", "mode": "batch_mean", "fisher_vector": "advantage_weighted"},
]


@pytest.mark.parametrize("spec", SPECS + IDENTITY_UP_TO_SCALE, ids=spec_id)
@pytest.mark.parametrize("step_rule", ["fixed", "trust_region", "line_search"])
def test_advice_exactly_where_a_configuration_is_identity_up_to_scale(spec: dict[str, Any], step_rule: str) -> None:
    note = build_curvature(**spec).advise(step_rule)
    if spec in IDENTITY_UP_TO_SCALE and step_rule != "fixed":
        assert note is not None and step_rule in note and "identity up to scale" in note and "\n" not in note
    else:
        assert note is None


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("step_rule", ["fixed", "trust_region", "line_search"])
def test_defaults_advise_nothing(name: str, step_rule: str) -> None:
    """`ngac train curvature=<name>` on its defaults (the hybrid included) warns about nothing."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert build_curvature(name).advise(step_rule) is None


@pytest.mark.parametrize("fisher_vector", ["score", "advantage_weighted"])
def test_advantage_weighted_batch_mean_is_parallel_to_g(problem: Problem, fisher_vector: str) -> None:
    """The fact the advice rests on: v = g makes the direction g / (lambda + |g|^2)."""
    d = build_curvature("sherman_morrison", damping=0.3, fisher_vector=fisher_vector).direction(problem.batch())
    g = problem.g
    if fisher_vector == "advantage_weighted":
        torch.testing.assert_close(d.vector, g / (0.3 + g @ g), rtol=1e-12, atol=0)
        assert d.cos_to_gradient == pytest.approx(1.0, abs=1e-12)
    else:
        assert d.cos_to_gradient < 1.0 - 1e-6
