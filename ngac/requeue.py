"""Continue a requeued cluster job from its own last checkpoint.

A SLURM job that hits its time limit or is preempted is requeued (:class:`ngac.slurm.SlurmLauncher`:
the run writes ``last.ckpt``, then submitit's checkpoint hook and ``scontrol requeue``, at most
``hydra.launcher.max_num_timeout`` times for time limits; or SLURM itself with
``PreemptMode=REQUEUE``) and runs the same Hydra job again, with the same overrides and the same
output folder. SLURM counts the requeues in ``SLURM_RESTART_COUNT`` (checked against a real
cluster in ``tests/ngac/test_slurm_cluster.py``). :func:`requeued_checkpoint` tells
:class:`ngac.run.TrainingRun` to resume from that folder's ``last.ckpt``, into the same MLflow run,
instead of starting over. A job requeued before its first checkpoint starts over.
"""

from __future__ import annotations

import os
from pathlib import Path

RESTART_ENV = "SLURM_RESTART_COUNT"  # set by SLURM on a requeued job: 1, 2, ...


def requeued_checkpoint(out_dir: Path) -> Path | None:
    """``out_dir/checkpoints/last.ckpt`` when this is a requeued SLURM job that has one, else None."""
    try:
        restarts = int(os.environ.get(RESTART_ENV, "0"))
    except ValueError:
        return None
    last = Path(out_dir) / "checkpoints" / "last.ckpt"
    return last if restarts > 0 and last.is_file() else None
