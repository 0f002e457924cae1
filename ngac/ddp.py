"""``trainer.devices=N``: ngac starts the other N-1 ranks itself, then Lightning's DDP takes over.

Lightning's own launcher re-runs ``sys.argv`` for every rank. That breaks under ``ngac train``
(the console script re-parses, re-validates and opens a second MLflow run), under Hydra multirun
(the child would start a sweep) and whenever the command line is not a script. ngac instead:

1. validates the input and opens the one MLflow run in the process the user started (rank 0);
2. writes the resolved config, the run id and the checkpoint to resume to ``<out_dir>/ddp/``;
3. starts ranks 1..N-1 as ``python -m ngac.ddp <payload>``, with ``MASTER_ADDR``,
   ``MASTER_PORT``, ``WORLD_SIZE``, ``NODE_RANK`` and ``LOCAL_RANK`` set (rank 0 gets them too);
4. lets Lightning's ``LightningEnvironment`` see ``LOCAL_RANK`` and join those processes in a
   process group (gloo on CPU, NCCL on GPU) instead of launching its own.

The same entry therefore works from the console script, ``python -m ngac``, Hydra multirun (each
job starts its own ranks on a fresh port) and ``torchrun`` (which sets the variables itself).
Ranks 1..N-1 log nothing, evaluate nothing and write no checkpoint: rank 0 does. A rank that dies
breaks the others' next collective (gloo reports the closed connection), so the run ends FAILED
instead of hanging; a rank whose parent dies exits.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch

DIST_VARS = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "NODE_RANK", "LOCAL_RANK")
CHILD_ENV = "NGAC_DDP_CHILD"


class RankError(RuntimeError):
    """A data-parallel rank died."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def externally_launched() -> bool:
    """True when the ranks were started by someone else (torchrun, or ngac's rank 0 for this child)."""
    return "LOCAL_RANK" in os.environ


class Ranks:
    """Context manager in rank 0: start ranks 1..N-1, and clean up after ``fit``."""

    def __init__(self, devices: int, payload: dict[str, Any], out_dir: Path) -> None:
        self.devices = int(devices)
        self.payload_path = Path(out_dir) / "ddp" / "payload.pt"
        self.payload = payload
        self.procs: list[subprocess.Popen] = []
        self._saved_env: dict[str, str | None] = {}

    def __enter__(self) -> Ranks:
        self.payload_path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.payload, self.payload_path)
        env = {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(free_port()),
            "WORLD_SIZE": str(self.devices),
            "NODE_RANK": "0",
        }
        self._saved_env = {k: os.environ.get(k) for k in DIST_VARS}
        os.environ.update(env, LOCAL_RANK="0")
        for rank in range(1, self.devices):
            child_env = {**os.environ, **env, "LOCAL_RANK": str(rank), CHILD_ENV: "1"}
            self.procs.append(
                subprocess.Popen([sys.executable, "-m", "ngac.ddp", str(self.payload_path)], env=child_env)
            )
        return self

    def __exit__(self, *exc: Any) -> None:
        # A later job in this process (Hydra multirun) starts a new group with new ranks.
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        deadline = time.monotonic() + (60 if exc[0] is None else 5)
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.payload_path.unlink(missing_ok=True)
        for k, v in self._saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    def failed_ranks(self, grace_s: float = 2.0) -> list[tuple[int, int]]:
        """(rank, exit code) of every started rank that exited with an error.

        Waits up to ``grace_s``: a killed rank's sockets close (and rank 0's collective fails)
        a moment before its exit status can be read.
        """
        deadline = time.monotonic() + grace_s
        for p in self.procs:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        return [(i + 1, p.returncode) for i, p in enumerate(self.procs) if p.poll() not in (None, 0)]


def _exit_with_parent() -> None:
    """A rank whose rank 0 is gone (killed) must not wait in a collective forever."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="ngac-ddp-parent-watch").start()


def child_main(payload_path: str) -> int:
    """Entry of ranks 1..N-1: the resolved run from rank 0, without logger, evaluation or checkpoints."""
    from omegaconf import OmegaConf

    from .app import quiet
    from .run import TrainingRun

    quiet()
    _exit_with_parent()
    payload = torch.load(payload_path, weights_only=False)
    run = TrainingRun(OmegaConf.create(payload["config"]), rank_of=payload)
    return run.fit().exit_code


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1]))
