"""Two runs started at the same moment in a fresh folder: both succeed, nothing is shared by accident."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import mlflow

TINY = [
    "env=pendulum",
    "env.num_envs=2",
    "agent.frames_per_batch=32",
    "trainer.total_frames=64",
    "trainer.eval_episodes=1",
    "trainer.progress_bar=false",
    "env.max_episode_steps=20",
]


def test_simultaneous_runs_in_a_fresh_folder(tmp_path):
    # The default store, not whatever another test (or mlflow.set_tracking_uri) left in the environment.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "NGAC_"))}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "ngac.cli", "train", *TINY, f"seed={i}"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-1500:] for o in outs)
    # The first touch of the sqlite store is serialised (MLflow's migrations would race) ...
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("ngac").experiment_id])
    assert sorted(r.data.tags["seed"] for r in runs) == ["0", "1"]
    assert all(r.info.status == "FINISHED" for r in runs)
    # ... and each run has its own output folder, so checkpoints do not overwrite each other.
    ckpts = {re.search(r"checkpoint (\S+)", o).group(1) for o in outs}
    assert len(ckpts) == 2
