"""Each evaluation starts from its own start states, seeded from the run's seed and the frame count
(so a resume evaluates the same states), and logs how many episodes it averaged."""

from __future__ import annotations

import mlflow
import torch

from ngac.agents import callbacks
from ngac.agents import metrics as M


def test_every_evaluation_of_a_run_gets_its_own_seed_and_the_final_one_too():
    cb = callbacks.PeriodicEvaluation(
        None, every_frames=100, episodes=5, seed=7, total_frames=1000, stop=callbacks.StopFlag()
    )
    periodic = [cb.eval_seed(f) for f in (128, 256, 320, 960)]
    final = cb.eval_seed(1024, final=True)
    assert len({*periodic, final}) == 5
    assert periodic[0] == 7 + 1000 and cb.eval_seed(128) == periodic[0]  # a function of the frames only
    wide = callbacks.PeriodicEvaluation(
        None, every_frames=100, episodes=5000, seed=0, total_frames=1000, stop=callbacks.StopFlag()
    )
    assert wide.eval_seed(200) - wide.eval_seed(100) == 5000  # consecutive evaluations share no copy


def test_consecutive_evaluations_start_from_different_states_and_log_their_episode_count(cfg_factory, monkeypatch):
    from ngac.envs import make_env
    from ngac.run import TrainingRun

    seeds: list[int] = []
    real = callbacks.evaluate

    def recording(actor, env_cfg, train_env, *, episodes, seed):
        seeds.append(seed)
        return real(actor, env_cfg, train_env, episodes=episodes, seed=seed)

    monkeypatch.setattr(callbacks, "evaluate", recording)
    run = TrainingRun(
        cfg_factory(
            "env=pendulum", "trainer.total_frames=96", "trainer.eval_every_frames=32", "trainer.eval_episodes=2"
        )
    )
    assert run.fit().status == "FINISHED"
    assert len(seeds) == 3 and len(set(seeds)) == 3, seeds  # frames 32, 64, then the final one at 96

    def start(seed: int) -> torch.Tensor:
        env = make_env(run.cfg.env, num_envs=2, seed=seed, training=False)
        try:
            return env.reset()["observation"].clone()
        finally:
            env.close()

    assert not torch.equal(start(seeds[0]), start(seeds[1]))
    history = mlflow.MlflowClient(run.tracking_uri).get_metric_history(run.mlflow_run_id, M.EVAL_EPISODES)
    assert sorted((m.step, m.value) for m in history) == [(32, 2.0), (64, 2.0), (96, 2.0)]
