"""Lightning callbacks: evaluation, checkpoints and stopping on a signal, all counted in frames.

Lightning's ``ModelCheckpoint`` triggers on ``global_step``, which counts optimizer steps: 160
critic steps per update for the natural-gradient agent, 320 for PPO at the defaults. A budget in
environment frames needs its own trigger; the checkpoint itself is Lightning's
(``trainer.save_checkpoint``: module, optimiser, loops, callbacks, data module, and the module's
``on_save_checkpoint``), written atomically, on rank 0 only.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L

from . import metrics as M
from .evaluate import evaluate

#: Signals that end a run like SIGTERM (checkpoint, KILLED, exit 128 + signal): a scheduler's stop,
#: Ctrl-C, a closed terminal or dropped ssh (SIGHUP), Ctrl-\ (SIGQUIT) and SIGUSR1. SLURM's SIGUSR2
#: keeps its requeue meaning (:mod:`ngac.slurm`).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1)


class StopRequested(Exception):
    """A stop signal arrived inside :meth:`StopFlag.interruptible` (an evaluation, whose result is dropped)."""


class StopFlag:
    """A stop signal (:data:`STOP_SIGNALS`) asks the run to stop at the next batch boundary
    (checkpoint, then KILLED).

    Installed before the MLflow run is created, so a signal at any moment is seen; ``restore``
    puts the previous handlers back. Lightning chains its own SIGTERM handler after this one.
    Inside :meth:`interruptible` a signal also raises :class:`StopRequested` at once, so a long
    evaluation does not hold the stop back.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}
        self._interruptible = False

    def install(self) -> StopFlag:
        for s in STOP_SIGNALS:
            self._previous[s] = signal.getsignal(s)
            signal.signal(s, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum
        if self._interruptible:
            self._interruptible = False  # one raise: the section's own clean-up runs undisturbed
            raise StopRequested(f"signal {signum}")

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        """A section that a stop signal cuts short with :class:`StopRequested` (raised at once if one came already)."""
        if self.requested:
            raise StopRequested(f"signal {self.signum}")
        self._interruptible = True
        try:
            yield
        finally:
            self._interruptible = False

    def reclaim(self) -> None:
        """Be the only handler again. Under DDP, Lightning's SIGTERM handler broadcasts from inside
        the signal handler, a collective the other ranks are not in: it would hang the run. The
        ranks agree on stopping at the batch end instead (:class:`FrameCheckpoint`)."""
        for s in STOP_SIGNALS:
            signal.signal(s, self._handle)

    def restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()


def _next_multiple(frames: int, every: int) -> int:
    return (frames // every + 1) * every


class PeriodicEvaluation(L.Callback):
    """Deterministic evaluation episodes every ``every_frames`` and once at the end of training.

    It also logs the best evaluation so far (``eval/best_episode_return``): on tasks whose
    deterministic return is bimodal (Hopper falls or runs the full episode) the final evaluation
    alone is a noisy statistic. The best is part of the checkpoint, so a resumed run keeps it.

    Each evaluation starts from its own start states: evaluation ``i`` seeds its environments
    ``seed + max(SEED_STRIDE, episodes) * i`` (:meth:`eval_seed`), so the best-so-far is not the maximum of the
    same few episodes re-run. ``i`` comes from the frame count (``frames // every_frames`` for a
    periodic evaluation, one more than that for the final one), so a resumed run evaluates the
    same states as one never interrupted.
    """

    SEED_STRIDE = 1000

    def __init__(self, env_cfg: Any, *, every_frames: int, episodes: int, seed: int, total_frames: int, stop: StopFlag):
        self.env_cfg, self.every, self.episodes, self.seed = env_cfg, every_frames, episodes, seed
        self.total, self.stop = total_frames, stop
        self.next_eval = every_frames
        self.final: dict[str, float] = {}
        self.best = float("-inf")

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = float(state_dict.get("best", float("-inf")))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.next_eval = _next_multiple(pl_module.frames, self.every)

    def eval_seed(self, frames: int, final: bool = False) -> int:
        """The environments' seed of the evaluation at ``frames``: distinct for every evaluation of
        a run (a periodic one at ``frames < total``, the final one past the last periodic index),
        with no overlap between consecutive evaluations' copies (the stride exceeds ``episodes``)."""
        index = frames // self.every + (1 if final else 0)
        return self.seed + max(self.SEED_STRIDE, self.episodes) * index

    def run(self, trainer: L.Trainer, pl_module: L.LightningModule, seed: int | None = None) -> dict[str, float]:
        """One evaluation row; ``seed`` defaults to the first periodic evaluation's."""
        t0 = time.perf_counter()
        seed = self.eval_seed(self.every) if seed is None else seed
        result = evaluate(pl_module.actor, self.env_cfg, trainer.datamodule.env, episodes=self.episodes, seed=seed)
        row = {
            M.EVAL_RETURN: result["mean_return"],
            M.EVAL_RETURN_STD: result["std_return"],
            M.EVAL_LENGTH: result["mean_length"],
            M.EVAL_EPISODES: float(result.get("episodes", self.episodes)),
            M.EVAL_SECONDS: time.perf_counter() - t0,
        }
        if math.isfinite(result["mean_return"]):
            self.best = max(self.best, result["mean_return"])
        if math.isfinite(self.best):
            row[M.EVAL_BEST] = self.best
        return row

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        f = pl_module.frames
        if f >= self.next_eval and f < self.total and not self.stop.requested:
            if trainer.is_global_zero and (row := self._interruptible_run(trainer, pl_module, self.eval_seed(f))):
                pl_module.log_frames(row)
            self.next_eval = _next_multiple(f, self.every)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.stop.requested or pl_module.frames < self.total or not trainer.is_global_zero:
            return
        self.final = self._interruptible_run(trainer, pl_module, self.eval_seed(pl_module.frames, final=True))
        if self.final:
            pl_module.log_frames(self.final)

    def _interruptible_run(self, trainer: L.Trainer, pl_module: L.LightningModule, seed: int) -> dict[str, float]:
        """:meth:`run`, or nothing when a stop signal cuts it short (the checkpoint follows at once).

        A cut-short evaluation logs nothing and leaves the best-so-far as it was (as an evaluation
        skipped because the stop came first)."""
        best = self.best
        try:
            with self.stop.interruptible():
                return self.run(trainer, pl_module, seed=seed)
        except StopRequested:
            self.best = best
            return {}


class FrameCheckpoint(L.Callback):
    """``<dir>/last.ckpt`` every ``every_frames``, when a stop is requested, and at the end.

    A crash keeps the last checkpoint written at a batch boundary: one taken in the middle of an
    update would not continue exactly.
    """

    FILENAME = "last.ckpt"

    def __init__(self, dirpath: Path, *, every_frames: int, stop: StopFlag) -> None:
        self.path = Path(dirpath) / self.FILENAME
        self.every, self.stop = every_frames, stop
        self.next_ckpt = every_frames
        self.saved_at: int | None = None

    def save(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Metrics logged so far reach the store before the checkpoint exists: a resume continues
        # after this point and never logs them again. A logger that batches rows offers flush().
        for logger in trainer.loggers:
            if callable(flush := getattr(logger, "flush", None)):
                flush()
        trainer.save_checkpoint(self.path)
        self.saved_at = pl_module.frames

    def on_train_start(self, trainer, pl_module) -> None:
        self.next_ckpt = _next_multiple(pl_module.frames, self.every)
        if trainer.world_size > 1:
            self.stop.reclaim()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        f = pl_module.frames
        if trainer.world_size > 1 and trainer.strategy.reduce_boolean_decision(self.stop.requested, all=False):
            self.stop.signum = self.stop.signum or signal.SIGTERM  # a signal to any rank stops them all
        if self.stop.requested:
            trainer.datamodule.request_stop()
            trainer.should_stop = True
            self.save(trainer, pl_module)
        elif f >= self.next_ckpt:
            self.save(trainer, pl_module)
            self.next_ckpt = _next_multiple(f, self.every)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.saved_at != pl_module.frames:
            self.save(trainer, pl_module)
