"""Helpers for tests that run ``ngac train`` as a process and kill parts of it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import mlflow


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (from /proc)."""
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def runs_in(db: Path, with_parent: bool = False) -> list:
    """The MLflow runs of experiment ``ngac`` in a sqlite store (sweep parent runs left out)."""
    client = mlflow.MlflowClient(f"sqlite:///{db}")
    runs = client.search_runs([client.get_experiment_by_name("ngac").experiment_id])
    return [r for r in runs if with_parent or r.data.tags.get("ngac.role") != "sweep_parent"]


def train_until_checkpoint(
    tmp_path: Path, module: str, *args: str, timeout: float = 180, **popen: Any
) -> subprocess.Popen:
    """Start ``python -m <module> train <args>`` into ``tmp_path`` (store ``m.db``, out dir ``run``)
    and return once its first checkpoint exists; stderr is piped; ``popen``: more ``Popen`` arguments."""
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(
        [sys.executable, "-m", module, "train", *args, f"logger.tracking_uri=sqlite:///{tmp_path}/m.db",
         f"out_dir={tmp_path}/run"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen,
    )  # fmt: skip
    t0 = time.time()
    try:
        while not ckpt.exists():
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.time() - t0 < timeout, "no checkpoint in time"
            time.sleep(0.1)
    except BaseException:
        proc.kill()
        raise
    return proc
