"""Learning, checked by a policy that learns (slow; run with `python -m pytest -m slow`)."""

from __future__ import annotations

import pytest

from ngac.run import TrainingRun

BUDGET_FRAMES = 61_440  # 60 updates of 1024 frames (16 envs x 64 steps)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sherman_morrison_solves_inverted_pendulum(cfg_factory, seed):
    cfg = cfg_factory(
        "env=inverted_pendulum",
        "curvature=sherman_morrison",
        f"seed={seed}",
        "env.num_envs=16",
        "agent.frames_per_batch=1024",
        "agent.critic.minibatch_size=256",
        "agent.critic.epochs=5",
        f"trainer.total_frames={BUDGET_FRAMES}",
        "trainer.eval_every_frames=1000000",
        "trainer.eval_episodes=10",
        "trainer.checkpoint_every_frames=1000000",
    )
    final = TrainingRun(cfg).fit().final
    assert final["eval/episode_return"] >= 900, final
