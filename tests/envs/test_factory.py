"""Every config builds and steps; API shape/dtype contract; config validation."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch
from omegaconf import OmegaConf

from ngac.envs import TASKS, action_kind, env_dims, make_env, validate_env_config
from ngac.envs import _space_kind  # noqa: PLC2701 - the unsupported-space path

from tests.envs.envtest_utils import ENV_CONFIG_FILES, load_env_cfg, random_actions, run


def test_every_task_has_a_config_and_back():
    assert sorted(p.stem for p in ENV_CONFIG_FILES) == sorted(TASKS)
    for name, gid in TASKS.items():
        cfg = load_env_cfg(name)
        assert cfg.id == gid
        validate_env_config(cfg)
        for key in ("num_envs", "normalize_obs", "scale_reward", "gamma", "max_episode_steps", "clip_obs"):
            assert key in cfg, (name, key)
        assert cfg.max_episode_steps is None


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
        # gymnasium info keys are dropped
        extra = set(s["next"].keys()) - {
            "observation", "reward", "done", "terminated", "truncated", "episode_return", "episode_length"
        }
        assert not extra, extra
    assert steps[-1]["next", "episode_length"].min() >= 1
    env.close()


def test_collector_runs():
    from torchrl.collectors import Collector

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


def test_dims_and_kind():
    assert env_dims({"id": "HalfCheetah-v5"}) == (17, 6)
    assert env_dims({"id": "CartPole-v1"}) == (4, 2)
    assert env_dims({"id": "Acrobot-v1"}) == (6, 3)
    assert action_kind({"id": "Pendulum-v1"}) == "continuous"
    assert action_kind({"id": "CartPole-v1"}) == "discrete"


@pytest.mark.parametrize(
    "space", [gym.spaces.MultiDiscrete([2, 3]), gym.spaces.Dict({"a": gym.spaces.Discrete(2)})]
)
def test_unsupported_action_space(space):
    with pytest.raises(ValueError, match="unsupported action space .*supported: Box") as err:
        _space_kind(space)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "override, pattern",
    [
        ({"id": "HalfCheetah-v9"}, r"HalfCheetah-v9.*valid choices: .*HalfCheetah-v5"),
        ({"id": 3}, r"env.id=3 must be a string"),
        ({"num_envs": 0}, r"num_envs=0 .*>= 1"),
        ({"num_envs": 2.5}, r"num_envs=2.5"),
        ({"num_envs": True}, r"num_envs=True"),
        ({"normalize_obs": "yes"}, r"normalize_obs='yes'.*true, false"),
        ({"scale_reward": 1}, r"scale_reward=1\b"),
        ({"gamma": 1.5}, r"gamma=1.5.*\(0, 1\]"),
        ({"max_episode_steps": 0}, r"max_episode_steps=0"),
        ({"clip_obs": -1.0}, r"clip_obs=-1.0"),
    ],
)
def test_validate_errors(override, pattern, monkeypatch):
    made = []
    monkeypatch.setattr(gym, "make", lambda *a, **k: made.append(a) or pytest.fail("env created"))
    cfg = OmegaConf.to_container(load_env_cfg("halfcheetah"))
    cfg.update(override)
    with pytest.raises(ValueError, match=pattern) as err:
        validate_env_config(cfg)
    assert "\n" not in str(err.value)
    assert not made


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
