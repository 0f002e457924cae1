"""The transforms' values: normalised observations, reward scaling against hand-computed returns, episode statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tensordict import TensorDict
from torchrl.envs.transforms import RewardSum, StepCounter

from ngac.envs import EpisodeStats, ObsNorm, RewardScale, env_state, load_env_state, make_env
from tests.envs.envtest_utils import load_env_cfg, random_actions, run


def _norm(env) -> ObsNorm:
    return next(t for t in env.transform if isinstance(t, ObsNorm))


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


# ----------------------------------------------------------------------------- RewardScale


def _scale(rs: RewardScale, rewards, dones) -> list[torch.Tensor]:
    """Feed scripted [T, N] rewards and done flags through ``rs``; the scaled rewards, [N] per step."""
    out = []
    for r, d in zip(rewards, dones):
        n = len(r)
        nxt = TensorDict(
            {"reward": torch.tensor(r, dtype=torch.float32).reshape(n, 1), "done": torch.tensor(d).reshape(n, 1)},
            batch_size=[n],
        )
        out.append(rs._step(TensorDict({}, batch_size=[n]), nxt)["reward"].reshape(n).clone())
    return out


def test_reward_scale_two_steps_by_hand():
    """N=2, gamma=0.5, prior (mean 0, var 1, count 1e-4); env 1 finishes on the first step.

    Step 1: G = (1, 3), pooled with the prior: count 2.0001, mean 4/2.0001,
            var = (1e-4 * 1 + 1^2 + 3^2)/2.0001 - mean^2; reward / sqrt(var + 1e-8); G_1 <- 0 (done).
    Step 2: G = (0.5 * 1 + 2, 0.5 * 0 - 1) = (2.5, -1): count 4.0001, mean (4 + 1.5)/4.0001,
            var = (10.0001 + 2.5^2 + 1^2)/4.0001 - mean^2.
    """
    rs = RewardScale(2, gamma=0.5)
    s1, s2 = _scale(rs, [[1.0, 3.0], [2.0, -1.0]], [[False, True], [False, False]])
    var1 = 10.0001 / 2.0001 - (4 / 2.0001) ** 2
    var2 = 17.2501 / 4.0001 - (5.5 / 4.0001) ** 2
    torch.testing.assert_close(s1, torch.tensor([1.0, 3.0]) / np.sqrt(var1 + 1e-8), rtol=1e-6, atol=0)
    torch.testing.assert_close(s2, torch.tensor([2.0, -1.0]) / np.sqrt(var2 + 1e-8), rtol=1e-6, atol=0)
    assert rs.ret.tolist() == [2.5, -1.0]
    assert rs.count.item() == pytest.approx(4.0001, rel=1e-12)
    assert rs.ret_mean.item() == pytest.approx(5.5 / 4.0001, rel=1e-12)
    assert rs.ret_var.item() == pytest.approx(var2, rel=1e-12)


def test_reward_scale_long_run_against_pooled_moments():
    """Over 200 steps with random episode ends: G is the discounted return since the last done, and the
    variance is that of every G so far pooled with the prior, in closed form."""
    rng = np.random.default_rng(0)
    n, steps, gamma = 3, 200, 0.9
    rewards = rng.normal(0.5, 2.0, (steps, n)).astype(np.float32)
    dones = rng.random((steps, n)) < 0.05
    rs = RewardScale(n, gamma=gamma)
    scaled = torch.stack(_scale(rs, rewards.tolist(), dones.tolist())).numpy()
    g = np.zeros(n)
    seen = []
    for t in range(steps):
        g = gamma * g + rewards[t].astype(np.float64)
        seen.append(g.copy())
        m = n * (t + 1)
        total = 1e-4 + m
        mean = np.sum(seen) / total
        var = (1e-4 * 1.0 + np.sum(np.square(seen))) / total - mean**2
        expected = np.clip(rewards[t] / np.sqrt(var + 1e-8), -10, 10)
        np.testing.assert_allclose(scaled[t], expected, rtol=1e-5, atol=1e-6, err_msg=str(t))
        g[dones[t]] = 0.0
    np.testing.assert_allclose(rs.ret.numpy(), g, rtol=1e-12)


def test_reward_scale_clip_freeze_and_nonfinite():
    rs = RewardScale(2, gamma=1.0)
    _scale(rs, [[1e-3, 1e-3]] * 50, [[True, True]] * 50)  # G = 1e-3 throughout: a tiny variance
    rs.freeze()
    frozen = {k: v.clone() for k, v in rs.state_dict().items() if k != "ret"}
    (s,) = _scale(rs, [[1.0, -1.0]], [[False, False]])
    assert s.tolist() == [10.0, -10.0]  # 1 / sqrt(var) is in the hundreds: clipped
    (f,) = _scale(rs, [[1e-4, 0.0]], [[False, False]])
    assert all(torch.equal(rs.state_dict()[k], v) for k, v in frozen.items())  # statistics frozen
    assert rs.ret.tolist() == pytest.approx([1.0 + 1e-4, -1.0], rel=1e-6)  # the return still accumulates
    assert f[0].item() == pytest.approx(1e-4 / np.sqrt(frozen["ret_var"].item() + 1e-8), rel=1e-5)
    (nan,) = _scale(rs.unfreeze(), [[float("nan"), 1.0]], [[False, False]])
    assert torch.isnan(nan[0]) and torch.isfinite(nan[1])  # passes through, stays out of G and the variance
    assert torch.isfinite(rs.ret).all() and torch.isfinite(rs.ret_var)


# ----------------------------------------------------------------------------- episode statistics


def _torchrl_stats_env(cfg, seed):
    """make_env with TorchRL's RewardSum + StepCounter in place of EpisodeStats (same keys, same place)."""
    env = make_env(cfg, seed=seed)
    idx = next(i for i, t in enumerate(env.transform) if isinstance(t, EpisodeStats))
    env.transform.pop(idx)
    env.insert_transform(idx, StepCounter(step_count_key="episode_length"))
    env.insert_transform(idx, RewardSum(in_keys=["reward"], out_keys=["episode_return"]))
    return env


def test_torchrl_reward_sum_and_step_counter_lose_the_statistics_on_resume():
    """Why EpisodeStats stays: RewardSum/StepCounter match it while stepping, but they keep their totals in
    the tensordict, so the no-op reset after load_env_state (a full reset) zeroes them; EpisodeStats keeps
    them in buffers that the snapshot restores. RewardSum also sums in float32 (EpisodeStats in float64)."""
    cfg = load_env_cfg("pendulum", num_envs=4, max_episode_steps=60)
    ours, theirs = make_env(cfg, seed=0), _torchrl_stats_env(cfg, seed=0)
    acts = random_actions(ours, 80, seed=1)
    a, td_a = run(ours, ours.reset(), acts[:50])
    b, td_b = run(theirs, theirs.reset(), acts[:50])
    for k in ("episode_return", "episode_length"):
        torch.testing.assert_close(td_b[k], td_a[k], rtol=1e-5, atol=1e-3)
    assert td_b["episode_length"].min() == 50

    for env, td in ((ours, td_a), (theirs, td_b)):
        state = env_state(env)
        ref, _ = run(env, td, acts[50:])
        fresh = make_env(cfg, seed=9) if env is ours else _torchrl_stats_env(cfg, seed=9)
        load_env_state(fresh, state)
        td2 = fresh.reset()
        got, _ = run(fresh, td2, acts[50:])
        same = [torch.equal(g["next", "episode_length"], r["next", "episode_length"]) for g, r in zip(got, ref)]
        assert torch.equal(td2["observation"], td["observation"])  # the simulators resume either way
        if env is ours:
            assert torch.equal(td2["episode_length"], td["episode_length"]) and all(same)
        else:
            assert not td2["episode_length"].any() and not td2["episode_return"].any()
            assert not any(same[:10])  # 50 steps lost until the episodes end at step 60
