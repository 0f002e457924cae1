"""``env.workers=K``: K processes step exactly what one process steps; snapshots reach every worker."""

from __future__ import annotations

import io

import pytest
import torch

from ngac.envs import env_state, load_env_state, make_env, validate_env_config
from ngac.envs.parallel import VectorParts, is_parallel
from tests.envs.envtest_utils import load_env_cfg, random_actions, run

from .test_snapshot import KEYS, _stack


@pytest.fixture
def closing():
    envs = []
    yield envs.append
    for env in envs:
        if not env.is_closed:
            env.close()


@pytest.mark.parametrize(
    "name, scale, max_steps",
    [
        ("hopper", 3.0, None),  # early terminations: partial resets in some workers only
        ("pendulum", 1.0, 30),  # synchronised time limits: every env of every worker auto-resets at once
    ],
)
def test_two_workers_step_bitwise_like_one_process(closing, name, scale, max_steps):
    cfg = load_env_cfg(name, num_envs=4, max_episode_steps=max_steps)
    one = make_env(cfg, seed=3)
    two = make_env({**cfg, "workers": 2}, seed=3)
    closing(two)
    assert is_parallel(two) and not is_parallel(one)
    assert VectorParts(two).workers == 2 and two.batch_size == one.batch_size == torch.Size([4])
    acts = random_actions(one, 70, seed=0, scale=scale)
    a, _ = run(one, one.reset(), acts)
    b, _ = run(two, two.reset(), acts)
    assert _stack(a, ("next", "done")).any()
    for k in KEYS:
        assert torch.equal(_stack(a, k), _stack(b, k)), k


def test_exact_resume_with_two_workers(closing):
    cfg = {**load_env_cfg("hopper", num_envs=4), "workers": 2}
    env = make_env(cfg, seed=0)
    closing(env)
    acts = random_actions(env, 60, seed=1, scale=3.0)
    _, td = run(env, env.reset(), acts[:40])
    buf = io.BytesIO()
    torch.save(env_state(env), buf)  # serialisable, with every worker's share
    buf.seek(0)
    state = torch.load(buf, weights_only=False)
    assert state["workers"] == 2 and [p["num_envs"] for p in state["parts"]] == [2, 2]
    ref, _ = run(env, td, acts[40:])

    fresh = make_env(cfg, seed=99)
    closing(fresh)
    run(fresh, fresh.reset(), acts[:3])  # stepped already: the workers' auto-reset memory must be renewed
    load_env_state(fresh, state)
    td2 = fresh.reset()
    for k in ("observation", "episode_return", "episode_length", "done"):
        assert torch.equal(td2[k], td[k]), k
    got, _ = run(fresh, td2, acts[40:])
    for k in KEYS:
        assert torch.equal(_stack(got, k), _stack(ref, k)), k


def test_snapshot_refuses_another_worker_count_and_reads_the_old_layout(closing):
    cfg = load_env_cfg("pendulum", num_envs=4)
    two = make_env({**cfg, "workers": 2}, seed=0)
    closing(two)
    two.reset()
    with pytest.raises(ValueError, match="env.workers=2, env has 1"):
        load_env_state(make_env(cfg, seed=0), env_state(two))
    # a snapshot written before env.workers existed (one process, no "parts") still loads
    one = make_env(cfg, seed=0)
    first = one.reset()
    new = env_state(one)
    old = {"num_envs": 4, "transforms": new["transforms"], **{k: new["parts"][0][k] for k in ("envs", "vector")}}
    again = make_env(cfg, seed=5)
    load_env_state(again, old)
    assert torch.equal(again.reset()["observation"], first["observation"])


@pytest.mark.parametrize(
    "workers, match",
    [
        (0, r"env.workers=0 is invalid; valid choices: an integer >= 1"),
        ("2", r"env.workers='2' is invalid"),
        (3, r"env.workers=3 does not divide env.num_envs=4; valid choices: 1, 2, 4"),
    ],
)
def test_bad_worker_counts_are_one_line_errors(workers, match):
    with pytest.raises(ValueError, match=match) as info:
        validate_env_config({"id": "Pendulum-v1", "num_envs": 4, "workers": workers})
    assert "\n" not in str(info.value)
