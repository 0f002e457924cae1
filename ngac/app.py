"""The Hydra application behind ``ngac train`` (run and multirun)."""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig


@hydra.main(config_path="pkg://ngac.configs", config_name="config", version_base=None)
def hydra_main(cfg: DictConfig) -> float | None:
    from ngac.agents.checkpoint import CheckpointError
    from ngac.agents.train import train
    from ngac.validate import ConfigError

    for name in ("lightning.pytorch", "lightning.fabric", "torchrl", "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        result = train(cfg)
    except (ConfigError, CheckpointError) as exc:
        print(f"ngac: error: {exc}", file=sys.stderr)
        sys.exit(2)
    return result.get("eval/episode_return")
