"""Space probing: dimensions and kinds, unsupported spaces, at most one probe env per task."""

from __future__ import annotations

import gymnasium as gym
import pytest

from ngac.envs import action_kind, env_dims, make_env
from ngac.envs.spaces import check_obs_space, clear_space_cache, probe_spaces, space_kind
from tests.envs.envtest_utils import load_env_cfg


def test_dims_and_kind():
    assert env_dims({"id": "HalfCheetah-v5"}) == (17, 6)
    assert env_dims({"id": "CartPole-v1"}) == (4, 2)
    assert env_dims({"id": "Acrobot-v1"}) == (6, 3)
    assert action_kind({"id": "Pendulum-v1"}) == "continuous"
    assert action_kind({"id": "CartPole-v1"}) == "discrete"


@pytest.mark.parametrize("space", [gym.spaces.MultiDiscrete([2, 3]), gym.spaces.Dict({"a": gym.spaces.Discrete(2)})])
def test_unsupported_action_space(space):
    with pytest.raises(ValueError, match="unsupported action space .*supported: Box") as err:
        space_kind(space)
    assert "\n" not in str(err.value)


def test_unsupported_observation_space():
    with pytest.raises(ValueError, match="unsupported observation space .*supported: Box with 1-D shape"):
        check_obs_space(gym.spaces.Box(0, 1, (2, 3)))


def _count_makes(monkeypatch) -> list[str]:
    made: list[str] = []
    real = gym.make

    def counting(env_id, *args, **kwargs):
        made.append(env_id)
        return real(env_id, *args, **kwargs)

    monkeypatch.setattr(gym, "make", counting)
    return made


def test_make_env_dims_kind_build_one_probe(monkeypatch):
    """make_env + env_dims + action_kind: the N copies and at most one probe env (cold cache), none warm."""
    clear_space_cache()
    made = _count_makes(monkeypatch)
    cfg = load_env_cfg("hopper", num_envs=2)
    make_env(cfg, seed=0)
    assert env_dims(cfg) == (11, 3)
    assert action_kind(cfg) == "continuous"
    assert made == ["Hopper-v5"] * 3  # one probe + two copies
    made.clear()
    make_env(cfg, seed=1)
    env_dims(cfg)
    action_kind(cfg)
    assert made == ["Hopper-v5"] * 2


def test_reregistered_id_is_probed_again(monkeypatch):
    env_id = "ngac-test/Probe-v0"
    monkeypatch.setitem(
        gym.envs.registry, env_id, gym.envs.registration.EnvSpec(env_id, gym.spec("CartPole-v1").entry_point)
    )
    clear_space_cache()
    assert space_kind(probe_spaces(env_id)[1]) == "discrete"
    monkeypatch.setitem(
        gym.envs.registry, env_id, gym.envs.registration.EnvSpec(env_id, gym.spec("Pendulum-v1").entry_point)
    )
    assert space_kind(probe_spaces(env_id)[1]) == "continuous"
