"""Helpers for the environment-layer tests (imported by the test modules)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import OmegaConf

ENV_CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "env"
ENV_CONFIG_FILES = sorted(ENV_CONFIG_DIR.glob("*.yaml"))

# GymWrapper logs its spec check at INFO level on every construction.
logging.getLogger("torchrl").setLevel(logging.WARNING)


def load_env_cfg(name: str, **overrides):
    cfg = OmegaConf.load(ENV_CONFIG_DIR / f"{name}.yaml")
    for k, v in overrides.items():
        cfg[k] = v
    return cfg


def random_actions(env, steps: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    """[steps, *action_shape] actions drawn from a private generator.

    Continuous actions are N(0, scale^2): with scale > 1 many fall outside the bounds,
    which exercises ClipAction.
    """
    g = torch.Generator().manual_seed(seed)
    spec = env.action_spec
    if spec.dtype in (torch.int64, torch.int32):
        n = int(spec.space.n)
        return torch.randint(0, n, (steps, *spec.shape), generator=g)
    return scale * torch.randn((steps, *spec.shape), generator=g)


def run(env, td, actions):
    """Step ``env`` with the given actions; returns (list of step tds, last root td)."""
    out = []
    for a in actions:
        td = td.clone()
        td["action"] = a
        td, td_next = env.step_and_maybe_reset(td)
        out.append(td)
        td = td_next
    return out, td
