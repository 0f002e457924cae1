"""``env.workers=K``: the ``num_envs`` copies stepped by K processes, still one synchronous batch.

Layout. Worker ``w`` (a TorchRL :class:`~torchrl.envs.ParallelEnv` process) holds one
:class:`~ngac.envs.wrappers.ResumableSyncVectorEnv` of ``m = num_envs / K`` copies, seeded
``seed + w*m + j`` for its copy ``j``: the same seed per copy as one process with ``num_envs``
copies. TorchRL's ``BatchSizeTransform`` flattens the ``[K, m]`` batch to ``[num_envs]`` in the
main process, where the statistics transforms (observation normalisation, episode statistics,
reward scaling) and the policy run, exactly as with one process. So the number of workers changes
where the simulators step, not what they compute: a K-worker run steps bitwise like a 1-worker run
(``tests/envs/test_parallel.py``).

Snapshots. The simulators' state lives in the workers; :class:`VectorParts` reaches it through
ParallelEnv's documented dispatch of unknown attributes to the sub-envs (``penv.method(...)`` runs
``method`` in every worker and returns the K results), which TorchRL's ``GymWrapper`` forwards on
to the gymnasium vector env.

A worker that dies stops the run with :class:`EnvWorkerError` (one line) instead of a hang:
TorchRL's wait loop checks its workers' liveness.

Signals. A terminal sends Ctrl-C (SIGINT), Ctrl-\\ (SIGQUIT) and a hang-up (SIGHUP) to the whole
foreground process group, workers included. The workers ignore them (:data:`GROUP_SIGNALS`, set
at their start; SIGTERM stays default, so their shutdown still works): the main process alone
decides to stop, writes its checkpoint with the workers' help, and then closes them. While the
workers start, the main process blocks those signals, so the workers are born with them blocked
(no window before they are ignored) and the main process receives any that came once they run.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from tensordict import TensorDictBase
from torchrl.envs import EnvBase, GymWrapper, ParallelEnv, TransformedEnv
from torchrl.envs.transforms import BatchSizeTransform

from .wrappers import ResumableSyncVectorEnv, seed_action_spaces, single_factory, vector_env

__all__ = ["EnvWorkerError", "VectorParts", "vector_part", "parallel_env", "is_parallel"]


#: the signals a terminal sends to a whole process group: the main process handles them, workers ignore them
GROUP_SIGNALS = (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP)


class EnvWorkerError(RuntimeError):
    """An environment worker process died."""


@contextmanager
def group_signals_blocked() -> Iterator[None]:
    """Block :data:`GROUP_SIGNALS` in this thread (processes started meanwhile inherit the block);
    those that arrive are delivered when it ends."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, GROUP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def vector_part(
    env_id: str,
    max_episode_steps: int | None,
    continuous: bool,
    num_envs: int,
    seed: int,
    part: int = 0,
    owner_pid: int | None = None,
) -> EnvBase:
    """One process's share: ``num_envs`` copies as a TorchRL env, copy ``j`` seeded ``seed + j``.

    Built in a worker process (not ``owner_pid``, the main process that asked for it), it makes
    the worker ignore :data:`GROUP_SIGNALS`.
    """
    if owner_pid is not None and os.getpid() != owner_pid:
        for s in GROUP_SIGNALS:
            signal.signal(s, signal.SIG_IGN)
    thunks = [single_factory(env_id, max_episode_steps, continuous) for _ in range(num_envs)]
    # GymWrapper runs a short spec check (random steps) at construction: keep it off the
    # caller's torch RNG, and seed the simulators at the first reset after it.
    with torch.random.fork_rng(devices=[]):
        vec = ResumableSyncVectorEnv(thunks)
        env = GymWrapper(vec, categorical_action_encoding=True, device="cpu")
    vec.part = int(part)
    vec.seed_next_reset(int(seed))
    seed_action_spaces(vec, int(seed))
    if not isinstance(env, TransformedEnv):  # pragma: no cover - torchrl adds VecGymEnvTransform
        env = TransformedEnv(env)
    vec.ngac_after_restore = _AfterRestore(env)
    return env


class _AfterRestore:
    """Renews the auto-reset transform of ``env`` (in the process that holds it) after a restore."""

    def __init__(self, env: TransformedEnv) -> None:
        self.env = env

    def __call__(self) -> None:
        from .snapshot import fresh_autoreset_transform

        fresh_autoreset_transform(self.env)


def _flatten(td: TensorDictBase) -> TensorDictBase:
    """``[K, m] -> [K*m]``, for tensordicts and specs (a Bounded spec cannot reshape to ``-1``)."""
    return td.reshape(td.shape.numel())


class FlattenWorkers(BatchSizeTransform):
    """The ``[K, m]`` batch of K workers as ``[K*m]``, on the way out and on the way in.

    ``enable_inv_on_reset``: the ``"_reset"`` mask of a partial reset is reshaped back to
    ``[K, m]`` too, so each worker resets its own envs (TorchRL's BatchSizeTransform reshapes only
    steps' inputs by default).
    """

    enable_inv_on_reset = True

    def __init__(self) -> None:
        super().__init__(reshape_fn=_flatten)


def parallel_env(
    env_id: str, max_episode_steps: int | None, continuous: bool, num_envs: int, seed: int, workers: int
) -> TransformedEnv:
    """``num_envs`` copies in ``workers`` processes, as one env of batch ``[num_envs]``."""
    m = num_envs // workers
    kwargs = [
        {"env_id": env_id, "max_episode_steps": max_episode_steps, "continuous": continuous, "num_envs": m,
         "seed": seed + w * m, "part": w, "owner_pid": os.getpid()}
        for w in range(workers)
    ]  # fmt: skip
    # daemon: the workers never outlive this process (a failed run's interpreter exit terminates
    # them instead of waiting for them to finish, which they never do on their own).
    penv = ParallelEnv(workers, vector_part, create_env_kwargs=kwargs, device="cpu", daemon=True)
    with group_signals_blocked():
        penv.start()  # now rather than at the first reset: the workers are born with the signals blocked
    return TransformedEnv(penv, FlattenWorkers())


def is_parallel(env: EnvBase) -> bool:
    """True for an env from :func:`parallel_env` (possibly with more transforms)."""
    return isinstance(getattr(env, "base_env", env), ParallelEnv)


def _worker_call(fn: Callable[[], Any]) -> Any:
    """Run a dispatch to the workers; a dead worker becomes one :class:`EnvWorkerError` line."""
    try:
        return fn()
    except (EOFError, BrokenPipeError, ConnectionResetError) as exc:
        raise EnvWorkerError(f"an environment worker process died ({type(exc).__name__})") from None


class VectorParts:
    """The gymnasium vector env(s) behind a ``make_env`` env: one in this process, or one per worker."""

    def __init__(self, env: EnvBase) -> None:
        base = getattr(env, "base_env", env)
        self.penv: ParallelEnv | None = base if isinstance(base, ParallelEnv) else None
        self.local: ResumableSyncVectorEnv | None = None if self.penv is not None else vector_env(env)
        if self.penv is not None and self.penv.is_closed:
            self.penv.start()  # the workers start lazily, at the first reset

    @property
    def workers(self) -> int:
        return 1 if self.penv is None else int(self.penv.num_workers)

    def snapshot(self) -> list[dict[str, Any]]:
        """Each part's :meth:`ResumableSyncVectorEnv.ngac_snapshot`, in worker order."""
        if self.penv is None:
            return [self.local.ngac_snapshot()]
        return list(_worker_call(lambda: self.penv.ngac_snapshot()))

    def restore(self, parts: list[dict[str, Any]]) -> None:
        """Load :meth:`snapshot`'s output (one part per worker, as :func:`load_env_state` checks);
        the next full reset of every part is a "resume"."""
        if self.penv is None:
            self.local.ngac_restore(parts)
        else:
            _worker_call(lambda: self.penv.ngac_restore(parts))

    def last_reset(self) -> str:
        """ "real" if any part really reset at its last reset, else that part's kind."""
        if self.penv is None:
            return self.local.last_reset
        kinds = _worker_call(lambda: self.penv.ngac_last_reset())
        return "real" if "real" in kinds else kinds[0]
