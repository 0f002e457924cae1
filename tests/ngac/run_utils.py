"""Compose the real ``ngac train`` config with tiny budgets, for tests that run training."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf


def make_cfg(tmp_path: Path, *overrides: str) -> DictConfig:
    """Compose the real `ngac train` config with tiny-budget defaults for tests."""
    tiny = [
        "env.num_envs=2",
        "agent.frames_per_batch=32",
        "trainer.total_frames=64",
        "trainer.eval_episodes=1",
        "trainer.eval_every_frames=1000000",
        "trainer.checkpoint_every_frames=32",
        "trainer.progress_bar=false",
        f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
        f"out_dir={tmp_path}/run",
    ]
    ppo = any(o in ("algo=ppo", "agent=ppo") for o in overrides)
    tiny += (
        ["agent.minibatch_size=16", "agent.epochs=1"]
        if ppo
        else ["agent.critic.minibatch_size=16", "agent.critic.epochs=1"]
    )
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="ngac.configs", version_base=None):
        cfg = compose("config", overrides=tiny + list(overrides))
    GlobalHydra.instance().clear()
    OmegaConf.set_struct(cfg, False)
    return cfg
