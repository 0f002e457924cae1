"""episode_return / episode_length and observations against hand-stepped gymnasium envs."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from tests.envs.envtest_utils import load_env_cfg, random_actions, run

from ngac.envs import make_env


def _reference(env_id, n, seed, actions, continuous):
    """Step n plain gymnasium envs by hand (auto-reset on done) with the same seeds/actions."""
    envs = []
    for i in range(n):
        e = gym.make(env_id)
        if continuous:
            e = gym.wrappers.ClipAction(e)
        envs.append(e)
    obs = [e.reset(seed=seed + i)[0] for i, e in enumerate(envs)]
    first_obs = np.stack(obs)
    ret = np.zeros(n)
    length = np.zeros(n, dtype=np.int64)
    rows = []
    for a in actions.numpy():
        row = {"next_obs": [], "reward": [], "done": [], "term": [], "ret": [], "len": [], "root_obs": []}
        for i, e in enumerate(envs):
            o2, r, term, trunc, _ = e.step(a[i])
            ret[i] += r
            length[i] += 1
            row["next_obs"].append(o2)
            row["reward"].append(r)
            row["done"].append(term or trunc)
            row["term"].append(term)
            row["ret"].append(ret[i])
            row["len"].append(length[i])
            if term or trunc:
                o2, _ = e.reset()
                ret[i] = 0.0
                length[i] = 0
            row["root_obs"].append(o2)
        rows.append({k: np.array(v) for k, v in row.items()})
    return first_obs, rows


@pytest.mark.parametrize(
    "name, scale, scale_reward",
    [("cartpole", 1.0, False), ("inverted_pendulum", 3.0, True)],
)
def test_matches_hand_stepped_gymnasium(name, scale, scale_reward):
    n, seed, T = 3, 11, 60
    cfg = load_env_cfg(name, normalize_obs=False, scale_reward=scale_reward, num_envs=n)
    env = make_env(cfg, seed=seed)
    actions = random_actions(env, T, seed=3, scale=scale)
    td0 = env.reset()
    steps, _ = run(env, td0, actions)
    first_obs, ref = _reference(cfg.id, n, seed, actions, continuous=name != "cartpole")

    assert torch.equal(td0["observation"], torch.as_tensor(first_obs, dtype=torch.float32))
    dones = np.stack([r["done"] for r in ref])
    # the window must contain finished episodes, and at least one env with two of them
    assert dones.any() and (dones.sum(0) >= 2).any()
    for t, (s, r) in enumerate(zip(steps, ref)):
        assert s["next", "done"].squeeze(-1).tolist() == r["done"].tolist(), t
        assert s["next", "terminated"].squeeze(-1).tolist() == r["term"].tolist(), t
        # true next observation, also on the auto-reset step
        assert torch.equal(s["next", "observation"], torch.as_tensor(r["next_obs"], dtype=torch.float32)), t
        # the root observation of step t+1 is the reset observation where done
        if t + 1 < T:
            root = steps[t + 1]["observation"]
            assert torch.equal(root, torch.as_tensor(r["root_obs"], dtype=torch.float32)), t
        torch.testing.assert_close(
            s["next", "episode_return"].squeeze(-1), torch.as_tensor(r["ret"], dtype=torch.float32), rtol=1e-6, atol=1e-5
        )
        assert s["next", "episode_length"].squeeze(-1).tolist() == r["len"].tolist(), t
    raw = torch.as_tensor(np.stack([r["reward"] for r in ref]), dtype=torch.float32)
    got = torch.stack([s["next", "reward"].squeeze(-1) for s in steps])
    if scale_reward:
        # the reward was scaled (same sign, different size), the episode return was not
        assert not torch.allclose(got, raw)
        assert torch.equal(got > 0, raw > 0)
    else:
        assert torch.equal(got, raw)


def test_eval_env_reward_unscaled():
    cfg = load_env_cfg("pendulum", num_envs=2, scale_reward=True)
    train = make_env(cfg, seed=0)
    ev = make_env(cfg, seed=0, training=False)
    acts = random_actions(train, 5, seed=0)
    a, _ = run(train, train.reset(), acts)
    b, _ = run(ev, ev.reset(), acts)
    # same trajectory, raw reward in eval, scaled in training; same episode return
    assert not torch.equal(a[-1]["next", "reward"], b[-1]["next", "reward"])
    assert torch.equal(a[-1]["next", "episode_return"], b[-1]["next", "episode_return"])
    torch.testing.assert_close(
        b[-1]["next", "episode_return"], sum(s["next", "reward"] for s in b), rtol=1e-6, atol=1e-5
    )
