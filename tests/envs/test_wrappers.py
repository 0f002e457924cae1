"""The gymnasium side: the resumable vector env's reset kinds, action clipping, the accessor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchrl.envs import GymEnv

from ngac.envs import make_env, vector_env
from ngac.envs.wrappers import ClipAction, DropInfo, ResumableSyncVectorEnv, single_factory, wrapper_chain
from tests.envs.envtest_utils import load_env_cfg, random_actions, run


def test_vector_env_accessor():
    env = make_env(load_env_cfg("pendulum", num_envs=3), seed=0)
    vec = vector_env(env)
    assert isinstance(vec, ResumableSyncVectorEnv) and vec.num_envs == 3
    assert [type(e) for e in vec.envs] == [DropInfo] * 3
    assert isinstance(vec.envs[0].env, ClipAction)
    with pytest.raises(ValueError, match="expected an env from ngac.envs.make_env, got"):
        vector_env(GymEnv("Pendulum-v1"))


def test_reset_kinds_and_seeding():
    cfg = load_env_cfg("pendulum", num_envs=2, max_episode_steps=3, normalize_obs=False)
    env = make_env(cfg, seed=4)
    vec = vector_env(env)
    td = env.reset()
    assert vec.last_reset == "real"
    # env i is seeded with seed + i at the first reset
    expected = [single_factory("Pendulum-v1", 3, True)().reset(seed=4 + i)[0] for i in range(2)]
    assert np.array_equal(vec.observations, np.stack(expected))
    steps, td = run(env, td, random_actions(env, 3, seed=0))
    assert steps[-1]["next", "truncated"].all()
    assert vec.last_reset == "autoreset"  # TorchRL's full reset after every env finished: no second reset
    assert torch.equal(td["observation"], torch.as_tensor(vec.observations, dtype=torch.float32))
    env.reset()
    assert vec.last_reset == "real"  # an explicit reset of a running env is real


def test_clip_action_clips_to_the_bounds():
    thunk = single_factory("Pendulum-v1", None, continuous=True)
    env = thunk()
    chain = wrapper_chain(env)
    assert chain[0] is env and chain[-1] is env.unwrapped
    clip = next(w for w in chain if isinstance(w, ClipAction))
    assert np.array_equal(clip.action(np.array([5.0])), np.array([2.0]))
    assert np.array_equal(clip.action(np.array([-0.5])), np.array([-0.5]))
    env.reset(seed=0)
    assert env.step(np.array([3.0]))[4] == {}  # DropInfo
