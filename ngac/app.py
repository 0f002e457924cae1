"""The Hydra application behind ``ngac train`` (run and multirun)."""

from __future__ import annotations

import logging
import re
import sys
import warnings

import hydra
from omegaconf import DictConfig

from ngac.agents import metrics as M
from ngac.envs.parallel import EnvWorkerError

from .checkpoint_io import CheckpointWriteError
from .ddp import RankError
from .run import TrainingRun
from .validate import ConfigError

#: failures after the run exists that are reported in one line (the run is FAILED, its last checkpoint kept)
RUN_ERRORS = (EnvWorkerError, RankError, CheckpointWriteError)

QUIET_WARNINGS = (
    "You are using the `dataloader_iter`",
    "Found `dataloader_iter`",
    "`isinstance(treespec, LeafSpec)`",
    "The `srun` command is available",  # SLURM installed, ngac started outside a job: nothing to fix
)


def quiet() -> None:
    """Silence the library lines that say nothing to fix (every rank calls this)."""
    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=f".*{re.escape(pattern)}")
    for name in ("lightning.pytorch", "lightning.fabric", "mlflow"):  # torchrl's lines: ngac.envs filters them
        logging.getLogger(name).setLevel(logging.WARNING)


@hydra.main(config_path="pkg://ngac.configs", config_name="config", version_base=None)
def hydra_main(cfg: DictConfig) -> float | None:
    quiet()
    try:
        run = TrainingRun(cfg)
    except ConfigError as exc:
        print(f"ngac: error: {exc}", file=sys.stderr)
        sys.exit(2)
    try:
        outcome = run.fit()
    except RUN_ERRORS as exc:  # the run is marked FAILED already; its last checkpoint is kept
        print(f"ngac: error: {exc}", file=sys.stderr)
        sys.exit(1)
    if outcome.status == "KILLED":
        print(f"stopped by signal {outcome.signal}: checkpoint {run.ckpt_dir / 'last.ckpt'}", file=sys.stderr)
    if outcome.exit_code:
        sys.exit(outcome.exit_code)
    return outcome.final.get(M.EVAL_RETURN)  # the job's return value: what a Hydra sweeper (e.g. optuna) optimises
