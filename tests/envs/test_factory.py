"""make_env: every config builds and steps, the output contract, hand-stepped gymnasium as reference, training mode."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torchrl.collectors import Collector
from torchrl.envs import GymEnv

from ngac.envs import ObsNorm, RewardScale, action_kind, env_dims, make_env, set_training, sync_normalization
from tests.envs.envtest_utils import load_env_cfg, random_actions, run

_KEYS_NEXT = {"observation", "reward", "done", "terminated", "truncated", "episode_return", "episode_length"}


def test_builds_and_steps(env_name):
    cfg = load_env_cfg(env_name)
    n = 3
    env = make_env(cfg, num_envs=n, seed=1)
    obs_dim, act = env_dims(cfg)
    kind = action_kind(cfg)
    assert kind == ("discrete" if env_name in ("cartpole", "acrobot") else "continuous")
    td = env.reset()
    assert td["observation"].shape == (n, obs_dim)
    assert td["observation"].dtype == torch.float32
    for key, dtype in (("episode_return", torch.float32), ("episode_length", torch.int64)):
        assert td[key].shape == (n, 1) and td[key].dtype == dtype and not td[key].any()
    steps, _ = run(env, td, random_actions(env, 4, seed=0))
    for s in steps:
        assert s.batch_size == (n,)
        if kind == "discrete":
            assert s["action"].shape == (n,) and s["action"].dtype == torch.int64
            assert int(s["action"].max()) < act
        else:
            assert s["action"].shape == (n, act) and s["action"].dtype == torch.float32
        assert s["next", "observation"].shape == (n, obs_dim)
        assert s["next", "observation"].dtype == torch.float32
        assert torch.isfinite(s["next", "observation"]).all()
        assert s["next", "reward"].shape == (n, 1) and s["next", "reward"].dtype == torch.float32
        for k in ("done", "terminated", "truncated"):
            assert s["next", k].shape == (n, 1) and s["next", k].dtype == torch.bool
        assert s["next", "episode_return"].shape == (n, 1)
        assert s["next", "episode_return"].dtype == torch.float32
        assert s["next", "episode_length"].shape == (n, 1)
        assert s["next", "episode_length"].dtype == torch.int64
        extra = set(s["next"].keys()) - _KEYS_NEXT  # gymnasium info keys are dropped
        assert not extra, extra
    assert steps[-1]["next", "episode_length"].min() >= 1
    env.close()


def _reference(env_id, n, seed, actions, continuous, max_episode_steps=None):
    """Step n plain gymnasium envs by hand (auto-reset on done) with the same seeds/actions."""
    kwargs = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
    envs = []
    for _ in range(n):
        e = gym.make(env_id, **kwargs)
        envs.append(gym.wrappers.ClipAction(e) if continuous else e)
    first_obs = np.stack([e.reset(seed=seed + i)[0] for i, e in enumerate(envs)])
    ret = np.zeros(n)
    length = np.zeros(n, dtype=np.int64)
    rows = []
    for a in actions.numpy():
        row = {"next_obs": [], "reward": [], "done": [], "term": [], "ret": [], "len": [], "root_obs": []}
        for i, e in enumerate(envs):
            o2, r, term, trunc, _ = e.step(a[i])
            ret[i] += r
            length[i] += 1
            for k, v in (("next_obs", o2), ("reward", r), ("done", term or trunc), ("term", term)):
                row[k].append(v)
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
    "name, scale, scale_reward, max_steps",
    [
        ("cartpole", 1.0, False, None),
        ("inverted_pendulum", 3.0, True, None),
        # every env truncates on the same step: TorchRL's full reset after it must not reset them again
        ("pendulum", 1.0, True, 7),
    ],
)
def test_matches_hand_stepped_gymnasium(name, scale, scale_reward, max_steps):
    n, seed, T = 3, 11, 60
    cfg = load_env_cfg(name, normalize_obs=False, scale_reward=scale_reward, num_envs=n, max_episode_steps=max_steps)
    env = make_env(cfg, seed=seed)
    actions = random_actions(env, T, seed=3, scale=scale)
    td0 = env.reset()
    steps, _ = run(env, td0, actions)
    first_obs, ref = _reference(cfg.id, n, seed, actions, continuous=name != "cartpole", max_episode_steps=max_steps)

    assert torch.equal(td0["observation"], torch.as_tensor(first_obs, dtype=torch.float32))
    dones = np.stack([r["done"] for r in ref])
    # the window must contain finished episodes, and at least one env with two of them
    assert dones.any() and (dones.sum(0) >= 2).any()
    if max_steps is not None:
        assert dones.all(1).sum() >= 2
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
            s["next", "episode_return"].squeeze(-1),
            torch.as_tensor(r["ret"], dtype=torch.float32),
            rtol=1e-6,
            atol=1e-5,
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


def test_collector_runs():
    cfg = load_env_cfg("inverted_pendulum", num_envs=4)
    env = make_env(cfg, seed=0)
    collector = Collector(env, policy=None, frames_per_batch=4 * 20, total_frames=4 * 40)
    batches = list(collector)
    collector.shutdown()
    assert len(batches) == 2
    b = batches[0]
    assert b.batch_size == (4, 20)
    assert b["next", "episode_return"].shape == (4, 20, 1)
    # random actions on InvertedPendulum end episodes quickly: the collector saw resets
    assert b["next", "done"].any()


def test_make_env_rejects_bad_num_envs_override():
    with pytest.raises(ValueError, match="num_envs=0"):
        make_env(load_env_cfg("pendulum"), num_envs=0)


def test_max_episode_steps_respected():
    cfg = load_env_cfg("pendulum", max_episode_steps=7, num_envs=2)
    env = make_env(cfg, seed=0)
    steps, _ = run(env, env.reset(), random_actions(env, 8, seed=0))
    trunc = torch.stack([s["next", "truncated"] for s in steps]).squeeze(-1)
    assert trunc[6].all() and not trunc[:6].any() and not trunc[7].any()
    assert steps[6]["next", "episode_length"].squeeze(-1).tolist() == [7, 7]
    assert steps[7]["next", "episode_length"].squeeze(-1).tolist() == [1, 1]


def _norm(env) -> ObsNorm:
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


def test_sync_normalization_rejects_foreign_env():

    with pytest.raises(ValueError, match="ObsNorm transform missing"):
        sync_normalization(make_env(load_env_cfg("pendulum", num_envs=1)), GymEnv("Pendulum-v1"))
