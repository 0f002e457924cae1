"""A non-finite direction, loss or parameter is never applied; a broken environment stops the run."""

from __future__ import annotations

import warnings

import gymnasium as gym
import mlflow
import numpy as np
import pytest
import torch

from ngac.agents import nac
from ngac.agents.data import NonFiniteEnvironmentError
from ngac.run import TrainingRun


class _BrokenPendulum(gym.Wrapper):
    """Pendulum whose observation or reward turns non-finite after ``after`` steps."""

    def __init__(self, what: str = "obs", after: int = 10, value: float = float("nan")):
        super().__init__(gym.make("Pendulum-v1", max_episode_steps=50))
        self.what, self.after, self.value, self.t = what, after, value, 0

    def step(self, action):
        obs, reward, term, trunc, info = self.env.step(action)
        self.t += 1
        if self.t > self.after:
            if self.what == "obs":
                obs = np.full_like(obs, self.value)
            else:
                reward = self.value
        return obs, reward, term, trunc, info


for _name, _kw in {
    "NaNObs": {"what": "obs"},
    "InfObs": {"what": "obs", "value": float("inf")},
    "NaNReward": {"what": "reward"},
}.items():
    if f"ngac-test/{_name}-v0" not in gym.envs.registry:
        gym.register(f"ngac-test/{_name}-v0", entry_point=lambda _kw=_kw, **k: _BrokenPendulum(**_kw))


def _params(model):
    return [p.detach().clone() for p in model.actor.parameters()]


@pytest.mark.parametrize("poison", [float("nan"), float("inf")])
@pytest.mark.parametrize("backend", ["sherman_morrison", "kfac", "cg", "hybrid"])
def test_nonfinite_advantages_are_never_applied(cfg_factory, monkeypatch, poison, backend):
    original = nac.NaturalGradientAgent._update_actor

    def poisoned(self, obs_td, action, adv):
        adv = adv.clone()
        adv[3] = poison
        return original(self, obs_td, action, adv)

    monkeypatch.setattr(nac.NaturalGradientAgent, "_update_actor", poisoned)
    trainer = TrainingRun(cfg_factory("env=pendulum", f"curvature={backend}", "trainer.total_frames=96"))
    trainer._build = _wrap_build(trainer)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit()
    model = trainer.model
    assert model.skipped_updates == model.updates == 3
    assert all(torch.equal(a, b) for a, b in zip(trainer.initial_params, _params(model)))
    assert any("skipped" in str(w.message) for w in caught)
    client = mlflow.MlflowClient(trainer.tracking_uri)
    skipped = client.get_metric_history(trainer.mlflow_run_id, "charts/skipped_updates")
    assert [m.value for m in sorted(skipped, key=lambda m: m.step)] == [1.0, 2.0, 3.0]


def _wrap_build(trainer):
    build = trainer._build

    def wrapped(stop):
        built = build(stop)
        trainer.initial_params = _params(built[1])
        return built

    return wrapped


def test_hybrid_raises_damping_after_a_skipped_update(cfg_factory, monkeypatch):
    original = nac.NaturalGradientAgent._update_actor
    calls = {"n": 0}

    def poison_first(self, obs_td, action, adv):
        calls["n"] += 1
        if calls["n"] == 1:
            adv = torch.full_like(adv, float("nan"))
        return original(self, obs_td, action, adv)

    monkeypatch.setattr(nac.NaturalGradientAgent, "_update_actor", poison_first)
    trainer = TrainingRun(
        cfg_factory("env=pendulum", "curvature=hybrid", "curvature.damping=0.1", "trainer.total_frames=64")
    )
    trainer.fit()
    client = mlflow.MlflowClient(trainer.tracking_uri)
    lam = [
        m.value
        for m in sorted(client.get_metric_history(trainer.mlflow_run_id, "curvature/lambda"), key=lambda m: m.step)
    ]
    assert lam[0] == pytest.approx(0.1)
    assert lam[1] > lam[0], lam


@pytest.mark.parametrize("task", ["ngac-test/NaNObs-v0", "ngac-test/InfObs-v0"])
def test_environment_that_keeps_emitting_nonfinite_observations_stops_the_run(cfg_factory, task):
    trainer = TrainingRun(
        cfg_factory("env=pendulum", f"env.id={task}", "trainer.total_frames=640", "trainer.max_bad_batches=3")
    )
    with pytest.raises(NonFiniteEnvironmentError) as info:
        trainer.fit()
    message = str(info.value)
    assert task in message and "3 consecutive batches" in message and "frame" in message
    assert "\n" not in message
    client = mlflow.MlflowClient(trainer.tracking_uri)
    assert client.get_run(trainer.mlflow_run_id).info.status == "FAILED"
    for p in trainer.model.actor.parameters():
        assert torch.isfinite(p).all()


def test_nonfinite_rewards_skip_the_batch_and_keep_statistics_finite(cfg_factory):
    trainer = TrainingRun(
        cfg_factory(
            "env=pendulum", "env.id=ngac-test/NaNReward-v0", "trainer.total_frames=64", "trainer.max_bad_batches=100"
        )
    )
    with pytest.warns(UserWarning, match="non-finite"):
        trainer.fit()
    assert trainer.model.updates == 0  # every batch after step 10 carries a NaN reward
    for p in trainer.model.parameters():
        assert torch.isfinite(p).all()
    from ngac.envs import env_state

    for key, buffers in env_state(trainer.data.env)["transforms"].items():
        if "EpisodeStats" in key:  # the running episode's own return is honestly NaN
            continue
        for name, value in buffers.items():
            assert torch.isfinite(torch.as_tensor(value)).all(), (key, name)


def test_exploding_update_norms_warn(cfg_factory):
    from omegaconf import OmegaConf

    cfg = cfg_factory("env=pendulum")
    model = nac.NaturalGradientAgent(
        OmegaConf.to_container(cfg.agent), OmegaConf.to_container(cfg.curvature), 3, 1, "continuous"
    )
    for norm in [1.0, 1.1, 0.9, 1.0, 1.05]:
        model._warn_on_exploding_norm(norm)
    with pytest.warns(RuntimeWarning, match="damping may be too small"):
        model._warn_on_exploding_norm(1e4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model._warn_on_exploding_norm(1.2)
