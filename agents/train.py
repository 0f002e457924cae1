"""``ngac train``: build everything from the resolved config and run the Lightning trainer.

Order matters: every check that can fail on bad input (config values, checkpoint, tracking
server, output folder) runs before the first environment is created.
"""

from __future__ import annotations

import copy
import os
import math
import random
import signal
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tensordict import TensorDictBase
from torch.utils.data import DataLoader, IterableDataset
from torchrl.collectors import Collector

import ngac
from ngac.envs import action_kind, env_dims, env_state, load_env_state, make_env
from ngac.sweeps import SWEEP_ENV, SWEEP_PARENT_ENV
from ngac.validate import ConfigError, validate_config

from .actor_critic import ActorCritic
from .ppo import PPO
from .checkpoint import check_compatible, load_checkpoint, save_checkpoint
from .evaluate import evaluate
from .networks import RolloutPolicy
from .tracking import RunLogger

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
AGENTS: dict[str, type[ActorCritic]] = {"nac": ActorCritic, "ppo": PPO}


class NonFiniteEnvironmentError(RuntimeError):
    pass


class CollectorStream(IterableDataset):
    """Batches from a TorchRL collector until ``total_frames``; checks them for non-finite data."""

    def __init__(self, collector: Collector, model: ActorCritic, total_frames: int, task: str, max_bad: int):
        self.collector, self.model, self.total_frames = collector, model, total_frames
        self.task, self.max_bad, self.bad = task, max_bad, 0
        self.stop_requested = False

    def __iter__(self) -> Iterator[TensorDictBase]:
        it = iter(self.collector)
        while self.model.frames < self.total_frames and not self.stop_requested:
            batch = next(it)
            finite = all(
                bool(torch.isfinite(batch.get(k)).all()) for k in ("observation", ("next", "observation"), ("next", "reward"))
            )
            if not finite:
                self.bad += 1
                warnings.warn(f"{self.task}: non-finite observation or reward near frame {self.model.frames}; batch skipped")
                if self.bad >= self.max_bad:
                    raise NonFiniteEnvironmentError(
                        f"{self.task} emitted non-finite observations or rewards in {self.bad} consecutive batches "
                        f"(last near frame {self.model.frames}); stopping"
                    )
                self.model.frames += batch.numel()
                continue
            self.bad = 0
            yield batch


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def acts_on_copy(cfg: DictConfig) -> bool:
    """True when the updates run off the CPU, so the collector needs its own CPU copy of the actor."""
    acc = cfg.trainer.accelerator
    return not (acc == "cpu" or (acc == "auto" and not torch.cuda.is_available()))


class Trainer:
    """Owns the environments, collector, model, logger and checkpoints of one run."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        validate_config(cfg)  # one-line ConfigError on bad values
        self.ckpt: dict[str, Any] | None = None
        if cfg.resume:
            self.ckpt = load_checkpoint(cfg.resume)
            check_compatible(self.ckpt, cfg, cfg.resume)
            self.out_dir = Path(cfg.resume).resolve().parent.parent
        else:
            self.out_dir = Path(cfg.out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        try:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            probe = self.ckpt_dir / ".write_test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(f"out_dir={str(self.out_dir)!r} cannot be written ({exc.strerror}); choose a writable folder") from None
        run_id = self.ckpt["mlflow_run_id"] if self.ckpt else None
        # Checks the server is reachable; unsent metrics end up in out_dir.
        self.run_logger = RunLogger(cfg, run_id=run_id, tags=self._tags(), out_dir=self.out_dir)

    def _tags(self) -> dict[str, str]:
        cfg = self.cfg
        tags = {
            "algo": str(cfg.logger.algo),
            "backend": cfg.curvature.name if cfg.agent.name != "ppo" else "ppo",
            "env": cfg.env.id,
            "seed": str(cfg.seed),
            "git_commit": git_commit(),
            "ngac_version": ngac.__version__,
            "step_rule": cfg.agent.step_rule,
            "agent": cfg.agent.name,
        }
        sweep = cfg.logger.sweep or os.environ.get(SWEEP_ENV)
        if sweep:
            tags["sweep"] = str(sweep)
        parent = os.environ.get(SWEEP_PARENT_ENV)
        if parent:
            tags["mlflow.parentRunId"] = parent
        return tags

    # ------------------------------------------------------------------ build
    def build(self) -> None:
        cfg = self.cfg
        L.seed_everything(cfg.seed, workers=False, verbose=False)
        torch.set_num_threads(cfg.trainer.num_threads)
        obs_dim, act_dim = env_dims(cfg.env)
        self.model = AGENTS[cfg.agent.name](
            OmegaConf.to_container(cfg.agent, resolve=True),
            OmegaConf.to_container(cfg.curvature, resolve=True),
            obs_dim,
            act_dim,
            action_kind(cfg.env),
        )
        if self.model.curvature is not None and (note := self.model.curvature.advise(cfg.agent.step_rule)):
            warnings.warn(note, UserWarning, stacklevel=2)
        self.env = make_env(cfg.env, seed=cfg.seed, training=True)
        if self.ckpt is not None:  # before the collector: its first reset returns the restored state
            load_env_state(self.env, self.ckpt["env"])
        # Environments step on the CPU; with a GPU the collector acts with a CPU copy of the actor,
        # refreshed after every update (PeriodicWork.on_train_batch_end).
        self.collect_actor = copy.deepcopy(self.model.actor).cpu() if acts_on_copy(cfg) else self.model.actor
        self.collector = Collector(
            self.env,
            RolloutPolicy(self.collect_actor),  # the actor's sampling path, minus the distribution objects
            frames_per_batch=cfg.agent.frames_per_batch,
            total_frames=-1,
            device="cpu",
            auto_register_policy_transforms=False,
            track_traj_ids=False,  # GAE reads done flags; per-step trajectory ids cost ~0.1 ms a step for nothing
        )
        if self.ckpt is not None:
            self._restore(self.ckpt)

    def _restore(self, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.model.load_extra_state(ckpt["extra"])
        self.collect_actor.load_state_dict(self.model.actor.state_dict())
        self.collector.load_state_dict(ckpt["collector"])
        self.collector._carrier.update_(ckpt["carrier"])  # the current observation of every env
        set_rng_state(ckpt["rng"])

    def checkpoint(self, name: str = "last.ckpt") -> Path:
        # Metrics up to here reach MLflow first: a resume continues after this point and would not
        # log them again.
        self.run_logger.lightning_logger.flush()
        opt = self.lightning.optimizers[0] if getattr(self, "lightning", None) and self.lightning.optimizers else None
        payload = {
            "task": self.cfg.env.id,
            "backend": self.cfg.curvature.name,
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            "model": self.model.state_dict(),
            "critic_optimizer": opt.state_dict() if opt is not None else self._pending_opt_state,
            "extra": self.model.extra_state(),
            "collector": self.collector.state_dict(),
            "carrier": self.collector._carrier.clone(),
            "env": env_state(self.env),
            "rng": rng_state(),
            "mlflow_run_id": self.run_logger.run_id,
            "ngac_version": ngac.__version__,
        }
        return save_checkpoint(self.ckpt_dir / name, payload)

    # -------------------------------------------------------------------- run
    def fit(self) -> dict[str, float]:
        cfg = self.cfg
        self.build()
        self._pending_opt_state = self.ckpt["critic_optimizer"] if self.ckpt else None
        stream = CollectorStream(
            self.collector, self.model, cfg.trainer.total_frames, cfg.env.id, cfg.trainer.max_bad_batches
        )
        callbacks = [PeriodicWork(self)]
        if cfg.trainer.progress_bar:
            callbacks.append(FramesProgressBar(cfg.trainer.total_frames))
        self.lightning = L.Trainer(
            accelerator=cfg.trainer.accelerator,
            devices=cfg.trainer.devices,
            max_epochs=1,
            logger=self.run_logger.lightning_logger,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            callbacks=callbacks,
        )
        if not self.ckpt:
            self.run_logger.log_config(cfg)
        # An own generator: a DataLoader otherwise draws its base seed from the global torch RNG,
        # which would shift the RNG stream between a fresh and a resumed run.
        loader = DataLoader(
            stream, batch_size=None, collate_fn=lambda batch: batch, generator=torch.Generator().manual_seed(0)
        )
        previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}

        def request_stop(signum, frame):  # finish the current update, checkpoint, mark KILLED
            stream.stop_requested = True
            self.stop_signal = signum

        self.stop_signal = None
        for s in STOP_SIGNALS:
            signal.signal(s, request_stop)
        status = "FAILED"
        try:
            self.lightning.fit(self.model, loader)
            if self.stop_signal is not None:
                self.checkpoint()
                status = "KILLED"
            else:
                final = self.evaluate_now()
                path = self.checkpoint()
                if cfg.logger.log_checkpoint:
                    self.run_logger.log_artifact(path, "checkpoints")
                status = "FINISHED"
                print(
                    f"done: {self.model.frames} frames, eval return {final['eval/episode_return']:.2f}; "
                    f"checkpoint {path}; MLflow run {self.run_logger.run_id} at {self.run_logger.tracking_uri}"
                )
                return final
        except BaseException:
            try:
                self.checkpoint()
            except Exception:  # noqa: BLE001 - a failed save must not hide the original error
                pass
            if self.stop_signal is None:
                raise
            # Lightning turns SIGTERM into an exception at the next loop step: a requested stop.
            status = "KILLED"
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
            self.status = status
            self.run_logger.finish(status)
            self.collector.shutdown()
        return {}

    def evaluate_now(self) -> dict[str, float]:
        cfg = self.cfg
        t0 = time.perf_counter()
        result = evaluate(
            self.model.actor, cfg.env, self.env, episodes=cfg.trainer.eval_episodes, seed=cfg.seed + 10_000
        )
        metrics = {
            "eval/episode_return": result["mean_return"],
            "eval/episode_return_std": result["std_return"],
            "eval/episode_length": result["mean_length"],
            "eval/seconds": time.perf_counter() - t0,
        }
        self.run_logger.log_metrics(metrics, step=self.model.frames)
        return metrics


class PeriodicWork(L.Callback):
    """Evaluation, checkpoints and collector weight sync at batch boundaries."""

    def __init__(self, owner: Trainer) -> None:
        self.owner = owner
        cfg = owner.cfg.trainer
        self.eval_every, self.ckpt_every = cfg.eval_every_frames, cfg.checkpoint_every_frames
        self.next_eval = self.next_ckpt = None

    def on_train_start(self, trainer: L.Trainer, pl_module: ActorCritic) -> None:
        owner = self.owner
        if owner._pending_opt_state is not None:
            trainer.optimizers[0].load_state_dict(owner._pending_opt_state)
        f = pl_module.frames
        self.next_eval = (f // self.eval_every + 1) * self.eval_every
        self.next_ckpt = (f // self.ckpt_every + 1) * self.ckpt_every

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: ActorCritic, outputs, batch, batch_idx: int) -> None:
        owner = self.owner
        if owner.collect_actor is not pl_module.actor:
            owner.collect_actor.load_state_dict({k: v.cpu() for k, v in pl_module.actor.state_dict().items()})
        f = pl_module.frames
        if f >= self.next_eval and f < owner.cfg.trainer.total_frames:
            owner.evaluate_now()
            self.next_eval += self.eval_every * math.ceil((f - self.next_eval + 1) / self.eval_every)
        if f >= self.next_ckpt:
            owner.checkpoint()
            self.next_ckpt += self.ckpt_every * math.ceil((f - self.next_ckpt + 1) / self.ckpt_every)


class FramesProgressBar(L.Callback):
    """One bar in frames, with steps/s and the latest episode return."""

    def __init__(self, total_frames: int) -> None:
        self.total = total_frames
        self.bar = None

    def on_train_start(self, trainer: L.Trainer, pl_module: ActorCritic) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.total, initial=pl_module.frames, unit="frames", dynamic_ncols=True, smoothing=0.1)
        self.last_return = float("nan")

    def on_train_batch_end(self, trainer, pl_module: ActorCritic, outputs, batch, batch_idx) -> None:
        m = pl_module.last_metrics
        self.last_return = m.get("charts/episode_return", self.last_return)
        self.bar.update(pl_module.frames - self.bar.n)
        self.bar.set_postfix(sps=f"{m.get('charts/sps', float('nan')):.0f}", ret=f"{self.last_return:.1f}", refresh=False)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.bar is not None:
            self.bar.close()


def train(cfg: DictConfig) -> dict[str, float]:
    return Trainer(cfg).fit()
