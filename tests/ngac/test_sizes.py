"""Sizes checked against the budget and the machine in one line, before any run exists."""

from __future__ import annotations

import pytest

from ngac.cli import main
from ngac.sizes import check_sizes
from ngac.validate import ConfigError

DIMS = (3, 1)  # Pendulum


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (["trainer.eval_episodes=200000"], ["trainer.eval_episodes=200000 is too many", "at most 1000"]),
        (["env.num_envs=100000", "agent.frames_per_batch=100000"], ["env.num_envs=100000 is too many"]),
        (["trainer.total_frames=16"], ["agent.frames_per_batch=32 exceeds trainer.total_frames=16", "at most 16"]),
    ],
)
def test_sizes_that_cannot_run_are_one_line(cfg_factory, overrides, words):
    with pytest.raises(ConfigError) as info:
        check_sizes(cfg_factory("env=pendulum", *overrides), *DIMS)
    assert "\n" not in str(info.value) and all(w in str(info.value) for w in words), str(info.value)


def test_a_batch_beyond_the_memory_is_one_line(cfg_factory):
    cfg = cfg_factory(
        "env=pendulum", "agent.frames_per_batch=1048576", "env.num_envs=1024", "trainer.total_frames=2097152"
    )
    with pytest.raises(ConfigError, match=r"needs about .* GiB for Pendulum-v1 .* more than half of the 1.0 GiB"):
        check_sizes(cfg, *DIMS, memory=2**30)


def test_sizes_that_run_unexpectedly_are_explained(cfg_factory):
    cfg = cfg_factory(
        "env=pendulum", "trainer.total_frames=80", "agent.hidden_sizes=[]", "agent.critic.minibatch_size=64"
    )
    notes = check_sizes(cfg, *DIMS)
    assert notes == [
        "trainer.total_frames=80 is not a multiple of the 32 frames of one update: 96 frames will run",
        "agent.hidden_sizes=[]: the policy is linear in the observation (no hidden layer)",
        "agent.critic.minibatch_size=64 is larger than agent.frames_per_batch=32: each epoch is one full-batch step",
    ]
    assert check_sizes(cfg_factory("env=pendulum"), *DIMS) == []


def test_a_run_says_how_many_frames_run_and_trains_exactly_that(cfg_factory, capsys):
    from ngac.run import TrainingRun

    run = TrainingRun(cfg_factory("env=pendulum", "trainer.total_frames=40"))
    assert "trainer.total_frames=40 is not a multiple of the 32 frames of one update: 64 frames will run" in (
        capsys.readouterr().err
    )
    assert run.fit().status == "FINISHED" and run.model.frames == 64


def test_eval_refuses_a_million_episodes_in_one_line(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "any.ckpt"), "--episodes", "1000000"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "ngac: error: --episodes=1000000 is too many: evaluation steps one environment copy per episode in one "
        "process; use at most 1000"
    )
