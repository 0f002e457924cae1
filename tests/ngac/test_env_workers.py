"""``env.workers=2`` end to end: a run finishes; a killed worker stops it in one line, FAILED, checkpoint kept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from .process_utils import children, runs_in, train_until_checkpoint

ARGS = [
    "env=pendulum",
    "env.workers=2",
    "env.num_envs=4",
    "agent.frames_per_batch=64",
    "trainer.checkpoint_every_frames=64",
    "trainer.eval_every_frames=1000000",
    "trainer.eval_episodes=1",
    "trainer.progress_bar=false",
    "agent.critic.minibatch_size=32",
]


def _env_workers(pid: int) -> list[int]:
    """The ParallelEnv worker processes among ``pid``'s children (spawned: ``spawn_main`` in argv)."""
    out = []
    for kid in children(pid):
        try:
            argv = (Path("/proc") / str(kid) / "cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in argv:
            out.append(kid)
    return sorted(out)


def test_a_dead_env_worker_stops_the_run_in_one_line_failed_with_its_checkpoint(tmp_path):
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    proc = train_until_checkpoint(tmp_path, "ngac.cli", *ARGS, "trainer.total_frames=10000000")
    try:
        workers = _env_workers(proc.pid)
        assert len(workers) == 2, workers
        os.kill(workers[1], signal.SIGKILL)
        _, err = proc.communicate(timeout=120)  # nothing hangs
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err[-3000:]
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("ngac: error:")]
    assert len(lines) == 1 and "worker" in lines[0] and "died" in lines[0], err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert torch.load(ckpt, weights_only=False)["ngac"]["frames"] >= 64  # the last checkpoint is kept
    runs = runs_in(tmp_path / "m.db")
    assert len(runs) == 1 and runs[0].info.status == "FAILED"
    time.sleep(1)
    assert not [w for w in workers if Path(f"/proc/{w}").exists() and "Z" not in _state(w)], "orphaned workers"


def _state(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_two_workers_finish_one_run_like_one_worker(tmp_path):
    """The issue's bar (`env.workers=2` on Pendulum finishes one FINISHED run), and the same numbers
    as one worker: the worker count changes where the simulators step, not what they compute."""
    finals = []
    for workers in (1, 2):
        out = subprocess.run(
            [sys.executable, "-m", "ngac.cli", "train", *ARGS, f"env.workers={workers}", "trainer.total_frames=512",
             f"logger.tracking_uri=sqlite:///{tmp_path}/w{workers}.db", f"out_dir={tmp_path}/w{workers}"],
            cwd=tmp_path, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr[-3000:]
        runs = runs_in(tmp_path / f"w{workers}.db")
        assert len(runs) == 1 and runs[0].info.status == "FINISHED"
        finals.append(torch.load(tmp_path / f"w{workers}" / "checkpoints" / "last.ckpt", weights_only=False))
    for key, value in finals[0]["state_dict"].items():
        assert torch.equal(value, finals[1]["state_dict"][key]), key
