"""``ngac train``, top to bottom: check the input, open the MLflow run, hand the rest to Lightning.

1. :class:`TrainingRun` checks everything that can be wrong before anything exists
   (:mod:`ngac.validate`): config values, the checkpoint to resume, the output folder, the
   tracking store, the rendering backend.
2. :meth:`TrainingRun.fit` installs the stop signals, creates (or re-opens) the MLflow run, builds
   the agent (:data:`ngac.agents.AGENTS`) and the collection data module, and calls
   ``lightning.Trainer.fit(..., ckpt_path=resume)``. Any failure after the run exists marks it
   FAILED; a signal marks it KILLED after a checkpoint; a finished run is FINISHED.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.environments import LightningEnvironment
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

import ngac
from ngac.agents import AGENTS, OnPolicyAgent
from ngac.agents import metrics as M
from ngac.agents.callbacks import FrameCheckpoint, PeriodicEvaluation, StopFlag
from ngac.agents.data import RolloutData
from ngac.agents.progress import FramesProgressBar
from ngac.envs import action_kind, env_dims

from .checkpoint_io import AtomicCheckpointIO
from .ddp import RankError, Ranks, externally_launched
from .links import ui_links
from .lock import FolderInUse, RunLock
from .mlflow_utils import resolve_tracking_uri
from .requeue import requeued_checkpoint
from .sizes import check_sizes
from .sweeps import SWEEP_ENV, SWEEP_PARENT_ENV
from .tracking import RunLogger
from .validate import (
    ConfigError,
    check_budget_left,
    check_compatible,
    check_gl_backend,
    check_out_dir,
    check_run_in_store,
    check_tracking_server,
    read_checkpoint,
    validate_config,
)


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@dataclass
class Outcome:
    status: str = "FAILED"  # FINISHED | KILLED | FAILED
    signal: int | None = None
    final: dict[str, float] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return 0 if self.status == "FINISHED" else (128 + self.signal if self.signal else 1)


class TrainingRun:
    """One ``ngac train`` run. Constructing it checks all input; :meth:`fit` runs it."""

    def __init__(self, cfg: DictConfig, rank_of: dict[str, Any] | None = None) -> None:
        self.cfg = cfg
        validate_config(cfg)
        self.container: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)
        self.agent_cls: type[OnPolicyAgent] = AGENTS[cfg.agent.name]
        self.model: OnPolicyAgent | None = None
        self.outcome = Outcome()
        self.algo = str(cfg.logger.algo or self.agent_cls.algo_name(self.container))
        self.child = rank_of is not None  # rank >= 1 of trainer.devices=N, started by rank 0 (ngac.ddp)
        if rank_of is not None:  # rank 0 has checked everything and owns the MLflow run
            self.resume_from, self.out_dir = rank_of["resume_from"], Path(rank_of["out_dir"])
            self.ckpt_dir = self.out_dir / "checkpoints"
            self.mlflow_run_id = rank_of["mlflow_run_id"]
            self.max_epochs = int(rank_of.get("max_epochs", 1))
            return
        check_gl_backend()
        self.resume_from: Path | None = None
        run_id = None
        resume = cfg.resume or requeued_checkpoint(Path(cfg.out_dir))
        self.max_epochs = 1
        if resume:
            ckpt = read_checkpoint(resume)
            check_compatible(ckpt, cfg, resume)
            self.max_epochs = check_budget_left(ckpt, cfg, resume)
            run_id = ckpt["ngac"]["mlflow_run_id"]
            self.resume_from = Path(resume).resolve()
            self.out_dir = self.resume_from.parent.parent
        else:
            self.out_dir = Path(cfg.out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        check_out_dir(self.ckpt_dir)
        self.tracking_uri = resolve_tracking_uri(cfg.logger.tracking_uri)
        check_tracking_server(self.tracking_uri)
        if run_id is not None:
            saved_uri = (ckpt["ngac"]["config"].get("logger") or {}).get("tracking_uri")
            check_run_in_store(self.tracking_uri, run_id, resume, saved_uri)
        self.mlflow_run_id: str | None = run_id
        # Sizes last: they probe the task's spaces (a gym env, no run), once every other input is known good.
        for note in check_sizes(cfg, *env_dims(cfg.env)):
            print(f"ngac: note: {note}", file=sys.stderr)
        self.lock = RunLock(self.out_dir)  # the last check: held from here until fit() ends
        try:
            self.lock.acquire()
        except FolderInUse as exc:
            raise ConfigError(str(exc)) from None
        if self.lock.note:
            print(f"ngac: note: {self.lock.note}", file=sys.stderr)

    def tags(self) -> dict[str, str]:
        cfg = self.cfg
        tags = {
            "algo": self.algo,
            "agent": cfg.agent.name,
            "env": cfg.env.id,
            "seed": str(cfg.seed),
            "git_commit": git_commit(),
            "ngac_version": ngac.__version__,
        }
        if self.agent_cls.uses_curvature:
            tags.update(backend=cfg.curvature.name, step_rule=cfg.agent.step_rule)
        if sweep := cfg.logger.sweep or os.environ.get(SWEEP_ENV):
            tags["sweep"] = str(sweep)
        if parent := os.environ.get(SWEEP_PARENT_ENV):
            tags["mlflow.parentRunId"] = parent
        return tags

    def _build(self, stop: StopFlag) -> tuple[L.Trainer, OnPolicyAgent, RolloutData]:
        cfg = self.cfg
        rank = int(os.environ.get("LOCAL_RANK", 0)) if cfg.trainer.devices > 1 else 0
        L.seed_everything(cfg.seed + rank, workers=False, verbose=False)  # each rank samples its own actions
        torch.set_num_threads(cfg.trainer.num_threads)
        obs_dim, act_dim = env_dims(cfg.env)
        model = self.agent_cls.from_config(self.container, obs_dim, act_dim, action_kind(cfg.env))
        model.run_meta = {
            "config": self.container,
            "mlflow_run_id": self.mlflow_run_id,
            "algo": self.algo,
            "ngac_version": ngac.__version__,
        }
        if note := model.advice():
            warnings.warn(note, UserWarning, stacklevel=2)
        data = RolloutData(
            cfg.env,
            seed=cfg.seed,
            frames_per_batch=cfg.agent.frames_per_batch,
            total_frames=cfg.trainer.total_frames,
            max_bad_batches=cfg.trainer.max_bad_batches,
        )
        t = cfg.trainer
        self.evaluation = PeriodicEvaluation(
            cfg.env, every_frames=t.eval_every_frames, episodes=t.eval_episodes, seed=cfg.seed + 10_000,
            total_frames=t.total_frames, stop=stop,
        )  # fmt: skip
        self.checkpoint = FrameCheckpoint(self.ckpt_dir, every_frames=t.checkpoint_every_frames, stop=stop)
        callbacks: list[L.Callback] = [self.evaluation, self.checkpoint]
        if t.progress_bar and not self.child:
            callbacks.append(FramesProgressBar(t.total_frames))
        trainer = L.Trainer(
            accelerator=t.accelerator,
            devices=t.devices,
            strategy=data_parallel(t.accelerator) if t.devices > 1 else "auto",
            max_epochs=self.max_epochs,  # one pass over the stream (one more to extend a finished run)
            logger=False if self.child else self.run_logger.lightning_logger,
            log_every_n_steps=1,
            enable_checkpointing=False,  # FrameCheckpoint: Lightning's checkpoints on a frame budget
            enable_progress_bar=bool(t.progress_bar) and not self.child,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            callbacks=callbacks,
            plugins=[AtomicCheckpointIO()],  # beside the target, then a rename: never a truncated last.ckpt
        )
        return trainer, model, data

    def _fit(self, trainer: L.Trainer) -> None:
        # weights_only=False: the checkpoint holds numpy RNG and simulator state; read_checkpoint
        # has already checked that it is an ngac checkpoint of this run.
        def fit() -> None:
            trainer.fit(self.model, datamodule=self.data, ckpt_path=self.resume_from, weights_only=False)

        if self.cfg.trainer.devices == 1 or externally_launched():
            fit()
            return
        payload = {
            "config": self.container,
            "mlflow_run_id": self.mlflow_run_id,
            "resume_from": self.resume_from,
            "out_dir": str(self.out_dir),
            "max_epochs": self.max_epochs,
        }
        with Ranks(self.cfg.trainer.devices, payload, self.out_dir) as ranks:
            try:
                fit()
            except Exception as exc:
                if failed := ranks.failed_ranks():
                    rank, code = failed[0]
                    raise RankError(
                        f"rank {rank} of trainer.devices={self.cfg.trainer.devices} exited with code {code}; "
                        f"the run stops ({type(exc).__name__} in rank 0), its last checkpoint is kept"
                    ) from None
                raise

    def fit(self) -> Outcome:
        if self.child:
            return self._fit_child()
        stop = StopFlag().install()  # before the MLflow run exists: no moment is left unguarded
        outcome = self.outcome
        try:
            self.run_logger = RunLogger(self.cfg, run_id=self.mlflow_run_id, tags=self.tags(), out_dir=self.out_dir)
        except BaseException:
            stop.restore()
            self.lock.release()
            raise
        self.mlflow_run_id = self.run_logger.run_id
        try:
            if self.resume_from is None:
                self.run_logger.log_config(self.cfg)
            if not stop.requested:
                trainer, self.model, self.data = self._build(stop)
                try:
                    self._fit(trainer)
                except SIGTERMException:
                    pass  # Lightning's way of stopping on SIGTERM, after our checkpoint at the batch end
            if stop.requested:
                outcome.status, outcome.signal = "KILLED", stop.signum
            else:
                outcome.final = dict(self.evaluation.final)
                path = self.checkpoint.path
                if self.cfg.logger.log_checkpoint:
                    self.run_logger.log_artifact(path, "checkpoints")
                outcome.status = "FINISHED"
                ret = outcome.final.get(M.EVAL_RETURN, float("nan"))
                best = outcome.final.get(M.EVAL_BEST, float("nan"))
                print(f"done: {self.model.frames} frames, eval return {ret:.2f} (best {best:.2f}); checkpoint {path}")
                for line in ui_links(self.tracking_uri, self.run_logger.experiment_id, self.mlflow_run_id):
                    print(line)
        except KeyboardInterrupt:
            outcome.status, outcome.signal = "KILLED", int(stop.signum or 2)
        finally:
            stop.restore()
            try:
                self.run_logger.finish(outcome.status)
            finally:
                self.lock.release()
        return outcome

    def _fit_child(self) -> Outcome:
        """Rank >= 1: train beside rank 0; it logs, evaluates and checkpoints."""
        stop = StopFlag().install()
        try:
            trainer, self.model, self.data = self._build(stop)
            try:
                self._fit(trainer)
            except SIGTERMException:
                pass
            self.outcome.status = "KILLED" if stop.requested else "FINISHED"
            self.outcome.signal = stop.signum
        finally:
            stop.restore()
        return self.outcome


def data_parallel(accelerator: str) -> DDPStrategy:
    """Lightning's DDP over the ranks that :mod:`ngac.ddp` (or torchrun) started.

    ``find_unused_parameters``: the critic's backward passes leave the actor's parameters without
    gradients (the actor moves by the curvature backend's all-reduced direction instead).
    """
    gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    return DDPStrategy(
        cluster_environment=LightningEnvironment(),
        process_group_backend="nccl" if gpu else "gloo",
        find_unused_parameters=True,
        timeout=timedelta(minutes=30),
    )


def train(cfg: DictConfig) -> Outcome:
    return TrainingRun(cfg).fit()
