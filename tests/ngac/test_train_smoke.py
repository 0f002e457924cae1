"""Every env config and every curvature backend trains end to end at a tiny budget."""

from __future__ import annotations

import math

import mlflow
import pytest

from ngac.cli import group_options
from ngac.curvature import REGISTRY
from ngac.run import TrainingRun

ENVS = group_options("env")
BACKENDS = group_options("curvature")


def _run(cfg):
    trainer = TrainingRun(cfg)
    final = trainer.fit().final
    return trainer, final


def test_configs_present():
    assert {"halfcheetah", "hopper", "pendulum", "cartpole", "acrobot"} <= set(ENVS)
    assert set(BACKENDS) == set(REGISTRY)  # one config file per registered backend, and no other


@pytest.mark.parametrize("env", ENVS)
def test_every_env_trains(cfg_factory, env):
    cfg = cfg_factory(f"env={env}", "env.max_episode_steps=50")
    trainer, final = _run(cfg)
    assert trainer.model.frames == 64
    assert trainer.model.updates == 2
    assert math.isfinite(final["eval/episode_return"])
    assert (trainer.ckpt_dir / "last.ckpt").is_file()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("step_rule", ["fixed", "trust_region", "line_search"])
def test_every_backend_and_step_rule_trains(cfg_factory, backend, step_rule):
    cfg = cfg_factory(
        "env=pendulum", f"curvature={backend}", f"agent.step_rule={step_rule}", "env.max_episode_steps=20"
    )
    trainer, final = _run(cfg)
    client = mlflow.MlflowClient(trainer.tracking_uri)
    run = client.get_run(trainer.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["backend"] == backend
    assert run.data.tags["env"] == "Pendulum-v1"
    assert run.data.params["curvature.name"] == backend
    for key in (
        "charts/episode_return",
        "charts/sps",
        "losses/value_loss",
        "losses/approx_kl",
        "losses/explained_variance",
        "curvature/lambda",
        "curvature/direction_norm",
        "curvature/direction_ms",
        "eval/episode_return",
    ):
        assert client.get_metric_history(run.info.run_id, key), key
    history = client.get_metric_history(run.info.run_id, "curvature/direction_norm")
    assert [m.step for m in history] == [32, 64]
    # The wall-clock breakdown of each batch: phases are positive and the critic is part of the update.
    perf = {
        k: [m.value for m in client.get_metric_history(run.info.run_id, f"perf/{k}")]
        for k in ("collect_ms", "gae_ms", "critic_ms", "update_ms")
    }
    assert all(len(v) == 2 and min(v) > 0 for v in perf.values()), perf
    assert all(c <= u for c, u in zip(perf["critic_ms"], perf["update_ms"]))
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "config.yaml" in artifacts and "checkpoints" in artifacts


@pytest.mark.parametrize("algo", ["trpo", "ppo"])
def test_named_algorithms_train(cfg_factory, algo):
    cfg = cfg_factory("env=pendulum", f"algo={algo}", "env.max_episode_steps=20", "agent.frames_per_batch=32")
    trainer, final = _run(cfg)
    client = mlflow.MlflowClient(trainer.tracking_uri)
    tags = client.get_run(trainer.mlflow_run_id).data.tags
    assert tags["algo"] == algo
    run_info = client.get_run(trainer.mlflow_run_id)
    assert run_info.info.run_name == f"{algo}-Pendulum-v1-s0"
    if algo == "ppo":  # a PPO run never builds, validates or checkpoints a curvature
        import torch

        assert not hasattr(trainer.model, "curvature") and "backend" not in tags
        assert not any(k.startswith("curvature.") for k in run_info.data.params)
        ckpt = torch.load(trainer.ckpt_dir / "last.ckpt", weights_only=False)
        assert "curvature" not in ckpt["ngac"]["agent_state"] and "curvature" not in ckpt["ngac"]["config"]
    assert client.get_metric_history(trainer.mlflow_run_id, "losses/value_loss")
    assert math.isfinite(final["eval/episode_return"])


def test_experiment_configs_compose():
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    seeds = ",".join(str(s) for s in range(10))  # 10 seeds: enough for interval estimates
    expected = {
        "damping": {"curvature.damping": "0.01,0.1,1,10", "seed": seeds},
        "sm_mode": {"curvature.mode": "batch_mean,single_sample", "seed": seeds},
        "fisher_vector": {"curvature.fisher_vector": "score,advantage_weighted", "seed": seeds},
        "backends": {"env": "halfcheetah,hopper,swimmer", "seed": seeds},
    }
    assert set(expected) <= set(group_options("experiment"))
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="ngac.configs", version_base=None):
        for name, params in expected.items():
            cfg = compose("config", overrides=[f"experiment={name}"], return_hydra_config=True)
            assert params.items() <= dict(cfg.hydra.sweeper.params).items()
            assert cfg.logger.experiment_name == name
            if name == "backends":  # every registered backend, plus the two named algorithms
                assert set(cfg.hydra.sweeper.params.algo.split(",")) == set(REGISTRY) | {"trpo", "ppo"}
    GlobalHydra.instance().clear()


def test_separate_collector_copy_matches_shared_actor(cfg_factory, monkeypatch):
    """The GPU layout (updates on the module's device, the collector acting with a CPU copy that is
    refreshed after each update), run on the CPU: it must train exactly like the shared actor."""
    import torch

    from ngac.agents import data

    cfg = cfg_factory("env=pendulum", "trainer.total_frames=96", "seed=3")
    shared, _ = _run(cfg)
    assert shared.data.collect_actor is shared.model.actor

    monkeypatch.setattr(data, "acts_on_copy", lambda agent: True)
    copied, _ = _run(cfg_factory("env=pendulum", "trainer.total_frames=96", "seed=3"))
    assert copied.data.collect_actor is not copied.model.actor
    for (name, a), b, c in zip(
        copied.model.actor.state_dict().items(),
        copied.data.collect_actor.state_dict().values(),
        shared.model.actor.state_dict().values(),
    ):
        torch.testing.assert_close(b, a, rtol=0, atol=0, msg=f"collector copy of {name} is stale")
        torch.testing.assert_close(a, c, rtol=0, atol=0, msg=f"{name} differs from the shared-actor run")


@pytest.mark.parametrize("step_rule", ["trust_region", "fixed"])
def test_hybrid_on_its_defaults_warns_about_nothing_and_its_lambda_moves(cfg_factory, recwarn, step_rule):
    """Issue 11: the hybrid's damping adapts under every step rule (20k frames of Pendulum)."""
    cfg = cfg_factory("env=pendulum", "curvature=hybrid", f"agent.step_rule={step_rule}", "env.num_envs=16",
                      "agent.frames_per_batch=1024", "agent.critic.minibatch_size=256", "trainer.total_frames=20480")  # fmt: skip
    run, _ = _run(cfg)
    advice = [w for w in recwarn if issubclass(w.category, UserWarning) and "curvature" in str(w.message)]
    assert not advice, [str(w.message) for w in advice]
    client = mlflow.MlflowClient(run.tracking_uri)
    lam = {round(m.value, 12) for m in client.get_metric_history(run.mlflow_run_id, "curvature/lambda")}
    assert len(lam) > 1, lam
