"""SIGTERM to a `-m` sweep's parent stops it like one run: the running jobs checkpoint and end KILLED,
no further job starts, the parent run is KILLED, and no worker process is left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from .process_utils import children, runs_in
from .tracking_utils import clean_env

JOB = [
    "env=pendulum",
    "env.num_envs=2",
    "agent.frames_per_batch=32",
    "trainer.total_frames=10000000",
    "trainer.checkpoint_every_frames=32",
    "trainer.eval_every_frames=1000000",
    "trainer.eval_episodes=1",
    "trainer.progress_bar=false",
    "agent.critic.minibatch_size=16",
    "agent.critic.epochs=1",
]


@pytest.mark.slow  # a two-job sweep: about 2 minutes on a loaded 2-core machine
def test_sigterm_to_a_sweep_parent_stops_and_closes_every_run(tmp_path):
    sweep = tmp_path / "multirun"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ngac.cli", "train", "-m", *JOB, "seed=0,1,2",
         f"logger.tracking_uri=sqlite:///{tmp_path}/m.db", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path, env=clean_env(NGAC_SWEEP_JOBS="2"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    ckpts = [sweep / str(i) / "checkpoints" / "last.ckpt" for i in (0, 1)]
    try:
        t0 = time.time()
        while not all(c.exists() for c in ckpts):
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.time() - t0 < 240, "the jobs wrote no checkpoint in time"
            time.sleep(0.2)
        workers = children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    runs = runs_in(tmp_path / "m.db", with_parent=True)
    statuses = sorted((r.data.tags.get("ngac.role", "job"), r.info.status) for r in runs)
    assert statuses == [("job", "KILLED"), ("job", "KILLED"), ("sweep_parent", "KILLED")], (statuses, err[-3000:])
    assert all(torch.load(c, weights_only=False)["ngac"]["frames"] >= 32 for c in ckpts)
    assert not (sweep / "2").exists(), "no job starts after the stop"
    time.sleep(1)
    left = [w for w in workers if Path(f"/proc/{w}").exists()]
    assert not [w for w in left if (Path(f"/proc/{w}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"], left
    assert not os.path.exists(f"/proc/{proc.pid}") or proc.returncode is not None
