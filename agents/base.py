"""The on-policy base: one ``training_step`` is one update on one freshly collected batch.

Read top to bottom (:meth:`OnPolicyAgent.training_step`):

1. take the batch (``[num_envs, T]``) that the collector gathered with the current policy;
2. GAE advantages and value targets from the critic (``torchrl.objectives.value.GAE``);
3. :meth:`OnPolicyAgent.optimise`, the algorithm: the natural-gradient agent
   (:mod:`.nac`) or PPO (:mod:`.ppo`), siblings on this base;
4. metrics through ``self.log`` into the run's logger, against environment frames.

The state that Lightning's checkpoint does not hold by itself (frame and update counters, the
RNG streams, the algorithm's extra state) goes in and out through ``on_save_checkpoint`` /
``on_load_checkpoint``, under ``checkpoint["ngac"]``.
"""

from __future__ import annotations

import random
import time
from abc import abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import lightning as L
import numpy as np
import torch
from tensordict import TensorDictBase
from torch import Tensor
from torchrl.objectives.value import GAE

from . import metrics as M
from .data import per_rank
from .networks import make_actor, make_critic

CHECKPOINT_FORMAT = "ngac-checkpoint"
CHECKPOINT_VERSION = 2  # 2: Lightning checkpoints (1 was ngac's own payload)


def explained_variance(pred: Tensor, target: Tensor) -> float:
    var = target.var()
    return float("nan") if var == 0 else float(1 - (target - pred).var() / var)


def normalize_advantages(adv: Tensor, all_mean: Callable[[Tensor], Tensor] | None = None, world: int = 1) -> Tensor:
    """Zero mean, unit std. A batch of one has no std (``std`` would be NaN): it is returned unchanged.

    Under data parallelism (``all_mean`` averages across ``world`` ranks of equal batch size) the
    mean and the (unbiased) std are those of the concatenated batch.
    """
    n = adv.numel() * world
    if n < 2:
        return adv
    if all_mean is None:
        return (adv - adv.mean()) / (adv.std() + 1e-8)
    mean = all_mean(adv.mean())
    var = all_mean((adv - mean).pow(2).mean()) * (n / (n - 1))
    return (adv - mean) / (var.sqrt() + 1e-8)


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


class OnPolicyAgent(L.LightningModule):
    """Actor, critic, GAE, logging and resumable state; subclasses implement :meth:`optimise`.

    ``cfg`` is the resolved run config (plain dicts); :meth:`from_config` reads what the agent needs.
    """

    uses_curvature: ClassVar[bool] = False

    @classmethod
    def from_config(cls, cfg: dict[str, Any], obs_dim: int, act_dim: int, action_kind: str) -> OnPolicyAgent:
        return cls(cfg["agent"], obs_dim, act_dim, action_kind)

    @classmethod
    def algo_name(cls, cfg: dict[str, Any]) -> str:
        """The ``algo`` tag and run-name prefix when no preset names the combination."""
        return str(cfg["agent"]["name"])

    def __init__(self, agent: dict[str, Any], obs_dim: int, act_dim: int, action_kind: str) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.cfg = dict(agent)
        self.actor = make_actor(
            obs_dim, act_dim, action_kind, agent["hidden_sizes"], agent["activation"], agent["init_log_std"]
        )
        self.critic = make_critic(obs_dim, agent["critic"]["hidden_sizes"], agent["activation"])
        # Kept out of the module tree: GAE holds the critic, which is saved once, as self.critic.
        self._gae = [GAE(gamma=agent["gamma"], lmbda=agent["gae_lambda"], value_network=self.critic)]
        self.frames = 0
        self.updates = 0
        self.skipped_updates = 0
        self.last_metrics: dict[str, float] = {}
        self._last_time: float | None = None
        self._pending_rng: dict[str, Any] | None = None
        #: What the checkpoint records about the run (resolved config, MLflow run id, version):
        #: set by whoever runs the module; read back by resume and ``ngac eval``.
        self.run_meta: dict[str, Any] = {}

    # ----------------------------------------------------------------- the algorithm
    @abstractmethod
    def optimise(self, flat: TensorDictBase, adv: Tensor, target: Tensor) -> dict[str, float]:
        """One update on the flattened batch (keys ``observation``, ``action``, the log-prob key);
        ``adv`` the (normalised) advantages, ``target`` the value targets. Returns metrics."""

    def advice(self) -> str | None:
        """A one-line note when this configuration cannot do what it is asked (shown once as a warning)."""
        return None

    def extra_state(self) -> dict[str, Any]:
        """Algorithm state to checkpoint beyond parameters and optimisers."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`extra_state`."""

    # ------------------------------------------------------------ data parallelism
    @property
    def world(self) -> int:
        """Data-parallel ranks (``trainer.devices``); 1 outside a trainer."""
        try:
            return self.trainer.world_size
        except RuntimeError:  # not attached to a trainer
            return 1

    def all_mean(self, t: Tensor) -> Tensor:
        """The mean of ``t`` over the data-parallel ranks (``t`` itself in one process)."""
        if self.world == 1:
            return t
        return self.trainer.strategy.reduce(t.detach().clone(), reduce_op="mean")

    def all_gather(self, t: Tensor) -> Tensor:
        """``t`` from every data-parallel rank, concatenated along dim 0 in rank order (``t`` in one process)."""
        if self.world == 1:
            return t
        gathered = self.trainer.strategy.all_gather(t.detach().contiguous())  # [world, *t.shape]
        return gathered.reshape(-1, *t.shape[1:])

    def all_ranks(self, decision: bool) -> bool:
        """True only if every rank decided True: ranks must skip or apply a step together."""
        return decision if self.world == 1 else self.trainer.strategy.reduce_boolean_decision(decision, all=True)

    def on_train_end(self) -> None:
        if self.world > 1:  # the ranks must still hold one model: a cheap check of that promise
            flat = torch.cat([p.detach().reshape(-1) for p in self.parameters()])
            spread = (
                self.trainer.strategy.reduce(flat.clone(), reduce_op="max")
                - self.trainer.strategy.reduce(-flat.clone(), reduce_op="max").neg()
            )
            if bool(spread.abs().max() > 0):
                raise RuntimeError(f"the {self.world} data-parallel ranks ended with different parameters")

    # --------------------------------------------------------------------- one update
    def on_train_start(self) -> None:
        if self._pending_rng is not None:  # after every piece of the run has been built
            set_rng_state(self._pending_rng)
            self._pending_rng = None
        self._last_time = time.perf_counter()

    def training_step(self, dataloader_iter) -> None:
        # Taking the iterator (not a batch) stops Lightning from prefetching: the next batch
        # must be collected by the policy *after* this update, or the data goes off-policy.
        tic = time.perf_counter()
        batch, _, _ = next(dataloader_iter)
        collected = time.perf_counter()
        batch = batch.to(self.device)
        frames = batch.numel()
        metrics: dict[str, float] = {}

        # Finished episodes in this batch: returns are the environment's, before any scaling.
        done = batch["next", "done"].squeeze(-1)
        if done.any():
            metrics[M.EPISODE_RETURN] = float(batch["next", "episode_return"].squeeze(-1)[done].mean())
            metrics[M.EPISODE_LENGTH] = float(batch["next", "episode_length"].squeeze(-1)[done].float().mean())

        with torch.no_grad():
            self._gae[0](batch)
        flat = batch.reshape(-1)
        target = flat["value_target"].squeeze(-1)
        adv = flat["advantage"].squeeze(-1)
        # The critic as GAE used it (before this batch's critic update), as CleanRL and SB3 report it:
        # after the update the critic has fitted these very targets, which says little about the advantages.
        metrics[M.EXPLAINED_VARIANCE] = explained_variance(flat["state_value"].squeeze(-1), target)
        if self.cfg["normalize_advantages"]:
            adv = normalize_advantages(adv, self.all_mean if self.world > 1 else None, self.world)
        advantaged = time.perf_counter()

        metrics.update(self.optimise(flat, adv, target))
        metrics[M.COLLECT_MS] = (collected - tic) * 1e3
        metrics[M.GAE_MS] = (advantaged - collected) * 1e3
        metrics[M.UPDATE_MS] = (time.perf_counter() - advantaged) * 1e3

        self.frames += frames * self.world  # every rank collected a batch like this one
        self.updates += 1
        now = time.perf_counter()
        if self._last_time is not None:
            metrics[M.SPS] = frames / max(now - self._last_time, 1e-9)
        self._last_time = now
        metrics[M.FRAMES] = float(self.frames)
        metrics[M.SKIPPED_UPDATES] = float(self.skipped_updates)
        self.last_metrics = {}
        self.log_frames(metrics)

    def log_frames(self, metrics: dict[str, float]) -> None:
        """Send one row to the run's logger, against environment frames.

        Through Lightning's logger API rather than ``self.log``: ``self.log`` keeps a key's last
        value and sends it again at every later step where the key is not logged, which would
        forge points for sparse metrics (``charts/episode_return`` exists only for batches in which
        an episode ended; see ``tests/agents/test_logging.py``).
        """
        self.last_metrics.update(metrics)
        if self.logger is not None:
            self.logger.log_metrics(metrics, step=self.frames)

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint.setdefault("ngac", {}).update(
            {
                **self.run_meta,
                "format": CHECKPOINT_FORMAT,
                "version": CHECKPOINT_VERSION,
                "frames": self.frames,
                "updates": self.updates,
                "skipped_updates": self.skipped_updates,
                "rng": rng_state() if self.world == 1 else {"ranks": per_rank(rng_state())},
                "agent_state": self.extra_state(),
            }
        )

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["ngac"]
        self.frames = int(state["frames"])
        self.updates = int(state["updates"])
        self.skipped_updates = int(state["skipped_updates"])
        rng = state["rng"]
        self._pending_rng = rng["ranks"][self.global_rank] if "ranks" in rng else rng
        self.load_extra_state(state["agent_state"])
        if not self.run_meta:  # ``ngac eval``; a resumed run keeps the config it was started with now
            skip = ("frames", "updates", "skipped_updates", "rng", "agent_state")
            self.run_meta = {k: v for k, v in state.items() if k not in skip}
