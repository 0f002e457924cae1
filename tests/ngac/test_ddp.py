"""``trainer.devices=2`` on CPU (gloo): one MLflow run, FINISHED, from every entry point; resume.

The direction each backend computes on two ranks equals the one-process direction on the
concatenated batch (``tests/curvature/test_distributed.py``, float64, 1e-10). Here the whole
trainer: every run below also passes the agent's end-of-training check that both ranks hold
the same parameters (``OnPolicyAgent.on_train_end`` raises otherwise, and the run would fail).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from .process_utils import children, runs_in, train_until_checkpoint
from .test_resume import _frames

TINY = [
    "env=pendulum",
    "env.num_envs=4",
    "agent.frames_per_batch=128",
    "trainer.devices=2",
    "trainer.accelerator=cpu",
    "trainer.eval_every_frames=1000000",
    "trainer.eval_episodes=1",
    "trainer.checkpoint_every_frames=256",
    "trainer.progress_bar=false",
    "agent.critic.minibatch_size=64",
]


def _ngac(tmp: Path, entry: list[str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    out = subprocess.run([*entry, "train", *args], cwd=tmp, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out


def test_the_issue_bar_from_the_console_script(tmp_path):
    """`ngac train env=pendulum trainer.total_frames=8192 trainer.devices=2 trainer.accelerator=cpu`."""
    ngac = str(Path(sys.executable).parent / "ngac")
    _ngac(tmp_path, [ngac], "env=pendulum", "trainer.total_frames=8192", "trainer.devices=2",
          "trainer.accelerator=cpu", "trainer.progress_bar=false", f"logger.tracking_uri=sqlite:///{tmp_path}/m.db",
          f"out_dir={tmp_path}/run")  # fmt: skip
    runs = runs_in(tmp_path / "m.db")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["ngac"]["frames"] == 8192
    assert len(ckpt["RolloutData"]["ranks"]) == 2  # rank 0's checkpoint holds both ranks' environments
    assert not (tmp_path / "run" / "ddp" / "payload.pt").exists()


def test_python_m_ngac_with_env_workers_and_ppo(tmp_path):
    ppo = [a for a in TINY if not a.startswith("agent.critic.")]
    _ngac(tmp_path, [sys.executable, "-m", "ngac"], *ppo, "env.workers=2", "algo=ppo", "agent.minibatch_size=64",
          "trainer.total_frames=1024", f"logger.tracking_uri=sqlite:///{tmp_path}/m.db")  # fmt: skip
    runs = runs_in(tmp_path / "m.db")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"


def test_hydra_multirun_starts_the_ranks_of_each_job(tmp_path):
    _ngac(tmp_path, [sys.executable, "-m", "ngac"], "-m", *TINY, "seed=0,1", "trainer.total_frames=512",
          f"logger.tracking_uri=sqlite:///{tmp_path}/m.db", f"hydra.sweep.dir={tmp_path}/sweep",
          "hydra/launcher=basic", timeout=600)  # fmt: skip
    runs = runs_in(tmp_path / "m.db")
    assert sorted(r.data.tags["seed"] for r in runs) == ["0", "1"]
    assert all(r.info.status == "FINISHED" for r in runs)


def test_sigterm_then_resume_matches_the_uninterrupted_run(tmp_path):
    args = [*TINY, "trainer.total_frames=2048"]
    _ngac(tmp_path, [sys.executable, "-m", "ngac"], *args, f"logger.tracking_uri=sqlite:///{tmp_path}/a.db",
          f"out_dir={tmp_path}/a")  # fmt: skip
    ckpt = tmp_path / "b" / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ngac", "train", *args, f"logger.tracking_uri=sqlite:///{tmp_path}/b.db",
         f"out_dir={tmp_path}/b"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    t0 = time.time()
    while _frames(ckpt) < 512:
        assert proc.poll() is None and time.time() - t0 < 240, proc.stdout.read()[-3000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, out[-3000:]
    stopped_at = _frames(ckpt)
    assert stopped_at < 2048
    (run,) = runs_in(tmp_path / "b.db")
    assert run.info.status == "KILLED"

    _ngac(tmp_path, [sys.executable, "-m", "ngac"], *args, f"resume={ckpt}",
          f"logger.tracking_uri=sqlite:///{tmp_path}/b.db")  # fmt: skip
    (again,) = runs_in(tmp_path / "b.db")
    assert again.info.run_id == run.info.run_id and again.info.status == "FINISHED"
    a = torch.load(tmp_path / "a" / "checkpoints" / "last.ckpt", weights_only=False)
    b = torch.load(ckpt, weights_only=False)
    assert a["ngac"]["frames"] == b["ngac"]["frames"] == 2048
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), f"{key} (stopped at {stopped_at})"


@pytest.mark.parametrize("devices", [2])
def test_a_resume_must_keep_the_number_of_ranks(tmp_path, devices):
    _ngac(tmp_path, [sys.executable, "-m", "ngac"], *TINY, f"trainer.devices={devices}", "trainer.total_frames=256",
          f"logger.tracking_uri=sqlite:///{tmp_path}/m.db", f"out_dir={tmp_path}/run")  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-m", "ngac", "train", *TINY, "trainer.devices=1", "trainer.total_frames=512",
         f"resume={tmp_path}/run/checkpoints/last.ckpt", f"logger.tracking_uri=sqlite:///{tmp_path}/m.db"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2 and "trainer.devices=2, not 1" in out.stderr, out.stderr[-2000:]


def test_a_dead_rank_fails_the_run_in_one_line(tmp_path):
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    proc = train_until_checkpoint(tmp_path, "ngac", *TINY, "trainer.total_frames=100000000")
    try:
        (rank1,) = [k for k in children(proc.pid) if b"ngac.ddp" in Path(f"/proc/{k}/cmdline").read_bytes()]
        os.kill(rank1, signal.SIGKILL)
        _, err = proc.communicate(timeout=120)  # nothing hangs
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("ngac: error: rank 1 of trainer.devices=2 exited with code -9")
    assert "Traceback" not in err, err[-3000:]
    (run,) = runs_in(tmp_path / "m.db")
    assert run.info.status == "FAILED" and ckpt.exists()
