"""The task table and the env-config validation (which builds no environment)."""

from __future__ import annotations

import gymnasium as gym
import pytest
from omegaconf import OmegaConf

from ngac.envs import TASKS, validate_env_config
from ngac.envs.tasks import DEFAULTS, cfg_values
from tests.envs.envtest_utils import ENV_CONFIG_FILES, load_env_cfg


def test_every_task_has_a_config_and_back():
    assert sorted(p.stem for p in ENV_CONFIG_FILES) == sorted(TASKS)
    for name, gid in TASKS.items():
        cfg = load_env_cfg(name)
        assert cfg.id == gid
        validate_env_config(cfg)
        for key in DEFAULTS:
            assert key in cfg, (name, key)
        assert cfg.max_episode_steps is None


def test_defaults_fill_missing_keys():
    assert cfg_values({"id": "Pendulum-v1"}) == {"id": "Pendulum-v1", **DEFAULTS}
    assert cfg_values({"id": "Pendulum-v1", "num_envs": 3})["num_envs"] == 3


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
        ({"gamma": 0.0}, r"gamma=0.0.*\(0, 1\]"),
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


def test_validate_none():
    with pytest.raises(ValueError, match="env config is None"):
        validate_env_config(None)
