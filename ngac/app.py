"""The Hydra application behind ``ngac train`` (run and multirun)."""

from __future__ import annotations

import logging
import re
import sys
import warnings

import hydra
from omegaconf import DictConfig


@hydra.main(config_path="pkg://ngac.configs", config_name="config", version_base=None)
def hydra_main(cfg: DictConfig) -> float | None:
    from ngac.agents.checkpoint import CheckpointError
    from ngac.agents.train import Trainer
    from ngac.validate import ConfigError

    for pattern in ("You are using the `dataloader_iter`", "Found `dataloader_iter`", "`isinstance(treespec, LeafSpec)`"):
        warnings.filterwarnings("ignore", message=f".*{re.escape(pattern)}")
    for name in ("lightning.pytorch", "lightning.fabric", "torchrl", "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        trainer = Trainer(cfg)
        result = trainer.fit()
    except (ConfigError, CheckpointError) as exc:
        print(f"ngac: error: {exc}", file=sys.stderr)
        sys.exit(2)
    if trainer.stop_signal is not None:
        print(f"stopped by signal {trainer.stop_signal}: checkpoint {trainer.ckpt_dir / 'last.ckpt'}", file=sys.stderr)
        sys.exit(128 + int(trainer.stop_signal))
    return result.get("eval/episode_return")
