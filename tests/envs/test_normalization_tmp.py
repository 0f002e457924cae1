"""Observation normalisation: updates while training, frozen in eval, stats syncable."""

from __future__ import annotations

import torch
from tests.envs.envtest_utils import load_env_cfg, random_actions, run

from ngac.envs import ObsNorm, RewardScale, make_env, set_training, sync_normalization


def _norm(env):
    return next(t for t in env.transform if isinstance(t, ObsNorm))


def test_stats_update_in_training_and_freeze_in_eval():
    cfg = load_env_cfg("halfcheetah", num_envs=4)
    train = make_env(cfg, seed=0)
    acts = random_actions(train, 20, seed=0)
    n = _norm(train)
    before = {k: v.clone() for k, v in n.state_dict().items()}
    run(train, train.reset(), acts)
    after = n.state_dict()
    assert not torch.equal(before["mean"], after["mean"])
    assert not torch.equal(before["var"], after["var"])
    assert after["count"] > before["count"]
    assert set(after) >= {"mean", "var", "count"}

    ev = make_env(cfg, seed=1, training=False)
    sync_normalization(train, ev)
    e = _norm(ev)
    assert e.frozen
    assert all(torch.equal(e.state_dict()[k], after[k]) for k in ("mean", "var", "count"))
    frozen = {k: v.clone() for k, v in e.state_dict().items()}
    run(ev, ev.reset(), acts)
    assert all(torch.equal(e.state_dict()[k], frozen[k]) for k in frozen)
    # no reward scaling in the eval env
    assert not any(isinstance(t, RewardScale) for t in ev.transform)

    set_training(ev, True)
    run(ev, ev.reset(), acts[:3])
    assert not torch.equal(e.state_dict()["mean"], frozen["mean"])


def test_normalized_obs_value():
    """Frozen normalised observation == clip((raw - mean) / sqrt(var + 1e-8), +-clip_obs)."""
    cfg = load_env_cfg("hopper", num_envs=3)
    ev = make_env(cfg, seed=4, training=False)
    raw_env = make_env(load_env_cfg("hopper", num_envs=3, normalize_obs=False), seed=4, training=False)
    n = _norm(ev)
    n.mean.copy_(torch.linspace(-1, 1, n.mean.numel(), dtype=torch.float64))
    n.var.copy_(torch.linspace(0.01, 4, n.var.numel(), dtype=torch.float64))
    acts = random_actions(ev, 10, seed=2)
    a, _ = run(ev, ev.reset(), acts)
    b, _ = run(raw_env, raw_env.reset(), acts)
    for s, r in zip(a, b):
        # raw_env casts to float32; recompute from the float32 raw value within float32 tolerance
        exp = ((r["next", "observation"].double() - n.mean) / torch.sqrt(n.var + 1e-8)).clamp(-10, 10).float()
        torch.testing.assert_close(s["next", "observation"], exp, rtol=1e-5, atol=1e-5)
