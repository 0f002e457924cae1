"""``env.workers=2`` end to end: a run finishes; a killed worker stops it in one line, FAILED, checkpoint kept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import torch

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


def _children(pid: int) -> list[int]:
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


def _env_workers(pid: int) -> list[int]:
    """The ParallelEnv worker processes among ``pid``'s children (spawned: ``spawn_main`` in argv)."""
    out = []
    for kid in _children(pid):
        try:
            argv = (Path("/proc") / str(kid) / "cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in argv:
            out.append(kid)
    return sorted(out)


def _runs(db: Path):
    client = mlflow.MlflowClient(f"sqlite:///{db}")
    return client.search_runs([client.get_experiment_by_name("ngac").experiment_id])


def test_a_dead_env_worker_stops_the_run_in_one_line_failed_with_its_checkpoint(tmp_path):
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ngac.cli", "train", *ARGS, "trainer.total_frames=10000000",
         f"logger.tracking_uri=sqlite:///{tmp_path}/m.db", f"out_dir={tmp_path}/run"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        t0 = time.time()
        while not ckpt.exists():
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.time() - t0 < 180, "no checkpoint in time"
            time.sleep(0.1)
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
    runs = _runs(tmp_path / "m.db")
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
        runs = _runs(tmp_path / f"w{workers}.db")
        assert len(runs) == 1 and runs[0].info.status == "FINISHED"
        finals.append(torch.load(tmp_path / f"w{workers}" / "checkpoints" / "last.ckpt", weights_only=False))
    for key, value in finals[0]["state_dict"].items():
        assert torch.equal(value, finals[1]["state_dict"][key]), key
