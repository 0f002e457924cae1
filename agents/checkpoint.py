"""Checkpoints that hold everything needed to continue a run exactly.

A checkpoint is one ``torch.save`` file, written atomically (temporary file, then rename), so a
kill during the write leaves the previous checkpoint intact. It holds the policy, critic and
optimiser, the curvature state, the environment state (physics, RNGs, normaliser statistics),
the collector's carrier (the current observation of every environment), every RNG, the frame
counter, the resolved config and the MLflow run id.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

FORMAT = "ngac-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, truncated, corrupted or from another run."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, "version": VERSION, **payload}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and sanity-check a checkpoint; every failure is one ``CheckpointError`` line."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"resume={str(path)!r}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"resume={str(path)!r}: truncated or corrupted checkpoint ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"resume={str(path)!r}: not an ngac checkpoint")
    if ckpt.get("version") != VERSION:
        raise CheckpointError(f"resume={str(path)!r}: checkpoint version {ckpt.get('version')}, this ngac reads {VERSION}")
    return ckpt


# Settings a run cannot change when it resumes: the networks, the environments' shape and
# normalisation, the algorithm.
MUST_MATCH = (
    "agent.name",
    "agent.hidden_sizes",
    "agent.activation",
    "agent.critic.hidden_sizes",
    "env.num_envs",
    "env.normalize_obs",
    "env.scale_reward",
)


def check_compatible(ckpt: dict[str, Any], cfg: Any, path: str | Path) -> None:
    """Raise a one-line ``CheckpointError`` if ``cfg`` cannot continue ``ckpt``."""
    from omegaconf import OmegaConf

    task, backend = cfg.env.id, cfg.curvature.name
    if ckpt["task"] != task:
        raise CheckpointError(
            f"resume={str(path)!r} is a checkpoint of task {ckpt['task']!r}, not env.id={task!r}; "
            f"resume with the checkpoint's env"
        )
    if ckpt["backend"] != backend:
        raise CheckpointError(
            f"resume={str(path)!r} is a checkpoint of curvature {ckpt['backend']!r}, not {backend!r}; "
            f"resume with the checkpoint's curvature"
        )
    saved = OmegaConf.create(ckpt["config"])
    for key in MUST_MATCH:
        was, now = OmegaConf.select(saved, key), OmegaConf.select(cfg, key)
        if OmegaConf.is_config(was):
            was = OmegaConf.to_container(was)
        if OmegaConf.is_config(now):
            now = OmegaConf.to_container(now)
        if was != now:
            raise CheckpointError(
                f"resume={str(path)!r} was trained with {key}={was!r}, not {now!r}; resume with {key}={was!r}"
            )
