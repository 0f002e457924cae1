"""Same seed -> same rollout; env_state/load_env_state -> bitwise-identical continuation; load_normalization."""

from __future__ import annotations

import io

import pytest
import torch

from ngac.envs import ObsNorm, env_state, load_env_state, load_normalization, make_env, vector_env
from tests.envs.envtest_utils import load_env_cfg, random_actions, run

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


def test_resume_into_env_that_just_auto_reset_some_envs():
    """The env restored into ended its last step with some (not all) envs auto-resetting: TorchRL's
    VecGymEnvTransform remembers that step, and must not replay it into the restored state."""
    n = 4
    cfg = load_env_cfg("cartpole", num_envs=n)
    env = make_env(cfg, seed=0)
    acts = random_actions(env, 60, seed=1)
    _, td = run(env, env.reset(), acts[:30])
    state = env_state(env)
    ref, _ = run(env, td, acts[30:])

    fresh = make_env(cfg, seed=5)
    t, ftd, extra = 0, fresh.reset(), random_actions(fresh, 500, seed=2)
    while True:  # step until the last step ended some episodes but not all
        steps, ftd = run(fresh, ftd, extra[t : t + 1])
        done = steps[-1]["next", "done"]
        t += 1
        if done.any() and not done.all():
            break
    load_env_state(fresh, state)
    td2 = fresh.reset()
    assert vector_env(fresh).last_reset == "resume"
    for k in ("observation", "episode_return", "episode_length", "done"):
        assert torch.equal(td2[k], td[k]), k
    got, _ = run(fresh, td2, acts[30:])
    for k in KEYS:
        assert torch.equal(_stack(got, k), _stack(ref, k)), k


def test_load_normalization_loads_frozen_observation_statistics():
    cfg = load_env_cfg("hopper", num_envs=2)
    train = make_env(cfg, seed=0)
    run(train, train.reset(), random_actions(train, 10, seed=0))
    state = env_state(train)
    ev = make_env(cfg, num_envs=3, seed=1, training=False)  # another size: only the statistics carry over
    load_normalization(ev, state)
    norm = next(t for t in ev.transform if isinstance(t, ObsNorm))
    src = next(t for t in train.transform if isinstance(t, ObsNorm))
    assert norm.frozen
    for k in ("mean", "var", "count"):
        assert torch.equal(norm.state_dict()[k], src.state_dict()[k]), k
    no_norm = {**state, "transforms": {k: v for k, v in state["transforms"].items() if not k.endswith("ObsNorm")}}
    with pytest.raises(ValueError, match="no observation statistics"):
        load_normalization(ev, no_norm)
