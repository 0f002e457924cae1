"""Same seed -> same rollout; env_state/load_env_state -> bitwise-identical continuation."""

from __future__ import annotations

import io

import pytest
import torch
from tests.envs.envtest_utils import load_env_cfg, random_actions, run

from ngac.envs import env_state, load_env_state, make_env

KEYS = [
    ("next", "observation"),
    ("next", "reward"),
    ("next", "done"),
    ("next", "terminated"),
    ("next", "truncated"),
    ("next", "episode_return"),
    ("next", "episode_length"),
    "observation",
]


def _stack(steps, key):
    return torch.stack([s[key] for s in steps])


def test_same_seed_same_rollout_different_seed_differs():
    cfg = load_env_cfg("hopper", num_envs=3)
    a_env, b_env, c_env = make_env(cfg, seed=7), make_env(cfg, seed=7), make_env(cfg, seed=8)
    acts = random_actions(a_env, 40, seed=0, scale=2.0)
    a, _ = run(a_env, a_env.reset(), acts)
    b, _ = run(b_env, b_env.reset(), acts)
    c, _ = run(c_env, c_env.reset(), acts)
    for k in KEYS:
        assert torch.equal(_stack(a, k), _stack(b, k)), k
    assert not torch.equal(_stack(a, ("next", "observation")), _stack(c, ("next", "observation")))
    # env i gets seed + i: the copies differ from each other
    first = a[0]["observation"]
    assert not torch.equal(first[0], first[1])


@pytest.mark.parametrize(
    "name, scale, must_reset, max_steps",
    [
        ("halfcheetah", 1.0, False, None),
        ("hopper", 3.0, True, None),
        # time limit inside the window: the TimeLimit step counters must be restored
        ("pendulum", 1.0, True, 60),
        ("cartpole", 1.0, True, None),
    ],
)
def test_exact_resume(name, scale, must_reset, max_steps):
    n = 4
    cfg = load_env_cfg(name, num_envs=n, scale_reward=True, normalize_obs=True, max_episode_steps=max_steps)
    env = make_env(cfg, seed=0)
    acts = random_actions(env, 80, seed=1, scale=scale)
    _, td = run(env, env.reset(), acts[:50])

    buf = io.BytesIO()
    torch.save(env_state(env), buf)  # must be serialisable
    buf.seek(0)
    state = torch.load(buf, weights_only=False)

    ref, _ = run(env, td, acts[50:])
    if must_reset:  # the window contains auto-resets
        assert _stack(ref, ("next", "done")).any()

    fresh = make_env(cfg, seed=123)
    run(fresh, fresh.reset(), acts[:5])  # perturb it: different seed and some steps
    load_env_state(fresh, state)
    td2 = fresh.reset()  # resume: returns the restored current observation
    for k in ("observation", "episode_return", "episode_length", "done"):
        assert torch.equal(td2[k], td[k]), k
    got, _ = run(fresh, td2, acts[50:])
    for k in KEYS:
        assert torch.equal(_stack(got, k), _stack(ref, k)), (name, k)
    # normaliser / reward-scaling / episode statistics end in the same state
    for (ka, va), (kb, vb) in zip(env.transform.state_dict().items(), fresh.transform.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka


def test_load_env_state_rejects_mismatch():
    cfg = load_env_cfg("pendulum", num_envs=2)
    state = env_state(make_env(cfg, seed=0))
    with pytest.raises(ValueError, match="num_envs=2"):
        load_env_state(make_env(cfg, num_envs=3, seed=0), state)
    with pytest.raises(ValueError, match="transforms differ"):
        load_env_state(make_env(cfg, seed=0, training=False), state)
