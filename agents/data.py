"""Collection as a Lightning data module: the environments, the TorchRL collector, their state.

:class:`RolloutData` builds the training environments in ``setup`` and the collector in
``train_dataloader``; Lightning's trainer iterates the :class:`RolloutStream` it returns, one
batch per update. The environments' exact state (physics, RNGs, normaliser statistics) and the
collector's current observations go into Lightning's checkpoint through the data module's
``state_dict`` / ``load_state_dict``, so ``fit(ckpt_path=...)`` continues stepping bitwise.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import lightning as L
import torch
from tensordict import TensorDictBase
from torchrl.collectors import Collector
from torchrl.envs import EnvBase

from ngac.envs import env_state, load_env_state, make_env
from ngac.envs.compat import collector_carrier, set_collector_carrier
from ngac.envs.parallel import EnvWorkerError, is_parallel

from .networks import RolloutPolicy

OBS_KEYS = ("observation", ("next", "observation"), ("next", "reward"))


class NonFiniteEnvironmentError(RuntimeError):
    """The environment kept emitting non-finite observations or rewards."""


class RolloutStream:
    """On-policy batches until the agent has seen ``total_frames``; non-finite batches are dropped.

    ``frames`` reads the agent's frame counter: the stream stops when it reaches the budget, and a
    dropped batch still counts its frames (``max_bad`` consecutive ones stop the run). With
    ``parallel`` (``env.workers > 1``) a dead environment worker stops the run with one
    :class:`~ngac.envs.parallel.EnvWorkerError` line.
    """

    def __init__(
        self,
        collector: Collector,
        frames: Callable[[], int],
        add_frames: Callable[[int], None],
        total_frames: int,
        task: str,
        max_bad: int,
        after_update: Callable[[], None] | None = None,
        parallel: bool = False,
        all_ranks: Callable[[bool], bool] | None = None,
    ) -> None:
        self.collector, self.frames, self.add_frames = collector, frames, add_frames
        self.total_frames, self.task, self.max_bad = total_frames, task, max_bad
        self.after_update = after_update
        self.parallel = parallel
        # Under trainer.devices=N every rank must drop the same batches (or the collectives hang);
        # stopping is agreed by FrameCheckpoint, which calls request_stop on every rank together.
        self.all_ranks = all_ranks or (lambda ok: ok)
        self.bad = 0
        self.stop_requested = False

    def __iter__(self) -> Iterator[TensorDictBase]:
        it = iter(self.collector)
        while self.frames() < self.total_frames and not self.stop_requested:
            try:
                batch = next(it)
            except RuntimeError as exc:
                if not self.parallel:
                    raise
                # TorchRL's ParallelEnv checks its workers while it waits: "Cannot proceed, worker 1 dead."
                raise EnvWorkerError(
                    f"{self.task}: an environment worker process died near frame {self.frames()} ({exc}); "
                    "the run stops, its last checkpoint is kept"
                ) from None
            if self.all_ranks(all(bool(torch.isfinite(batch.get(k)).all()) for k in OBS_KEYS)):
                self.bad = 0
                yield batch  # resumes when the next batch is asked for: after the update on this one
                if self.after_update is not None:
                    self.after_update()
                continue
            self.bad += 1
            warnings.warn(
                f"{self.task}: non-finite observation or reward near frame {self.frames()}; batch skipped", stacklevel=2
            )
            if self.bad >= self.max_bad:
                raise NonFiniteEnvironmentError(
                    f"{self.task} emitted non-finite observations or rewards in {self.bad} consecutive batches "
                    f"(last near frame {self.frames()}); stopping"
                )
            self.add_frames(batch.numel())


def per_rank(obj: Any) -> list[Any]:
    """``obj`` of every data-parallel rank, in rank order (a collective: every rank calls it)."""
    gathered: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, obj)
    return gathered


def acts_on_copy(agent: L.LightningModule) -> bool:
    """True when the updates run off the CPU: the collector then acts with its own CPU copy."""
    return agent.device.type != "cpu"


class RolloutData(L.LightningDataModule):
    """Training environments and their collector (one per process; seed + rank under DDP)."""

    def __init__(
        self,
        env_cfg: Any,
        *,
        seed: int,
        frames_per_batch: int,
        total_frames: int,
        max_bad_batches: int,
    ) -> None:
        super().__init__()
        self.env_cfg, self.seed = env_cfg, int(seed)
        self.frames_per_batch, self.total_frames, self.max_bad = frames_per_batch, total_frames, max_bad_batches
        self.env: EnvBase | None = None
        self.collect_actor: torch.nn.Module | None = None
        self.collector: Collector | None = None
        self.stream: RolloutStream | None = None
        self._pending_carrier: TensorDictBase | None = None
        self._pending_collector: dict[str, Any] | None = None

    def setup(self, stage: str) -> None:
        if self.env is None:
            rank = self.trainer.global_rank if self.trainer is not None else 0
            # copies are numbered across ranks: copy i of rank r is seeded seed + r * num_envs + i
            self.env = make_env(self.env_cfg, seed=self.seed + rank * int(self.env_cfg.num_envs), training=True)

    def train_dataloader(self) -> RolloutStream:
        agent = self.trainer.lightning_module
        copied = acts_on_copy(agent)
        # Environments step on the CPU; with the updates on a GPU the collector acts with a CPU copy
        # of the actor, refreshed after every update.
        actor = self.collect_actor = copy.deepcopy(agent.actor).cpu() if copied else agent.actor
        with torch.random.fork_rng(devices=[]):  # building the collector never shifts the run's RNG
            self.collector = Collector(
                self.env,
                RolloutPolicy(actor),
                frames_per_batch=self.frames_per_batch,
                total_frames=-1,
                device="cpu",
                auto_register_policy_transforms=False,
                track_traj_ids=False,  # GAE reads done flags; per-step trajectory ids cost ~0.1 ms a step
            )
        if self._pending_carrier is not None:  # the current observation of every env, from the checkpoint
            self.collector.load_state_dict(self._pending_collector)
            set_collector_carrier(self.collector, self._pending_carrier)
            self._pending_carrier = self._pending_collector = None

        def refresh() -> None:
            actor.load_state_dict({k: v.cpu() for k, v in agent.actor.state_dict().items()})

        world = self.trainer.world_size
        strategy = self.trainer.strategy

        def add_frames(n: int) -> None:
            agent.frames += n * world

        self.stream = RolloutStream(
            self.collector,
            frames=lambda: agent.frames,
            add_frames=add_frames,
            total_frames=self.total_frames,
            task=str(self.env_cfg.id),
            max_bad=self.max_bad,
            after_update=refresh if copied else None,
            parallel=is_parallel(self.env),
            all_ranks=(lambda ok: strategy.reduce_boolean_decision(ok, all=True)) if world > 1 else None,
        )
        return self.stream

    def request_stop(self) -> None:
        """Collect no further batch (a signal asked the run to stop)."""
        if self.stream is not None:
            self.stream.stop_requested = True

    def state_dict(self) -> dict[str, Any]:
        if self.env is None or self.collector is None:
            return {}
        own = {
            "env": env_state(self.env),
            "collector": self.collector.state_dict(),
            "carrier": collector_carrier(self.collector),
            "bad_batches": self.stream.bad if self.stream is not None else 0,
        }
        if self.trainer.world_size == 1:
            return own
        return {"ranks": per_rank(own)}  # rank 0 writes the checkpoint: it holds every rank's envs

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        if "ranks" in state:
            state = state["ranks"][self.trainer.global_rank]
        if self.env is None:
            raise RuntimeError("RolloutData.load_state_dict before setup(): no environment to restore into")
        load_env_state(self.env, state["env"])  # before the collector: its first reset returns this state
        self._pending_carrier, self._pending_collector = state["carrier"], state["collector"]

    def on_exception(self, exception: BaseException) -> None:
        # Lightning skips ``teardown`` when fit raises: without this the surviving env workers of
        # env.workers > 1 outlive the run, and the interpreter's exit waits on them.
        self._close(strict=False)

    def teardown(self, stage: str) -> None:
        self._close(strict=True)

    def _close(self, strict: bool) -> None:
        """Shut the collector and the environment (the worker processes of env.workers > 1).

        Not ``strict`` (a failed run): a failure to close is not raised over the run's own error.
        TorchRL refuses to close a ParallelEnv one of whose workers died, after terminating the
        others, which is all a failed run needs (and the workers are daemons: they end with us).
        """
        if self.collector is not None:
            collector, self.collector = self.collector, None
            collector.shutdown(raise_on_error=strict)  # closes the environment it steps
        if self.env is not None and not self.env.is_closed:
            try:
                self.env.close()
            except Exception:
                if strict:
                    raise
