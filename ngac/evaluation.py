"""``ngac eval CHECKPOINT``: a saved policy, run deterministically, optionally filmed."""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

from ngac.agents.evaluate import evaluate, record_video
from ngac.agents.networks import make_actor
from ngac.envs import action_kind, env_dims

from .validate import ConfigError, check_gl_backend, read_checkpoint


def eval_checkpoint(path: str, episodes: int = 10, seed: int = 12345, video: str | None = None) -> dict[str, Any]:
    """Load a checkpoint's actor and observation statistics and run ``episodes`` episodes."""
    if video:
        check_gl_backend()
    ckpt = read_checkpoint(path, key="checkpoint")
    cfg = OmegaConf.create(ckpt["ngac"]["config"])
    obs_dim, act_dim = env_dims(cfg.env)
    actor = make_actor(
        obs_dim, act_dim, action_kind(cfg.env), cfg.agent.hidden_sizes, cfg.agent.activation, cfg.agent.init_log_std
    )
    actor.load_state_dict({k[len("actor.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("actor.")})
    data_state = ckpt.get("RolloutData") or {}
    if "env" not in data_state:
        raise ConfigError(f"checkpoint={path!r} holds no environment statistics (saved before the first batch)")
    result = evaluate(actor, cfg.env, None, episodes=episodes, seed=seed, snapshot=data_state["env"])
    if video:
        result["video"] = record_video(actor, cfg.env, data_state["env"], video, seed)
    return result
