"""Every stop signal ends a run like SIGTERM (checkpoint, KILLED, exit 128 + signal); a Ctrl-C to the
whole process group with env.workers=2 too; a stop during an evaluation is seen at once."""

from __future__ import annotations

import os
import signal
import time

import mlflow
import pytest
import torch

from .process_utils import children, runs_in, train_until_checkpoint

WORKERS = [
    "env=pendulum",
    "env.workers=2",
    "env.num_envs=4",
    "agent.frames_per_batch=64",
    "trainer.checkpoint_every_frames=64",
    "trainer.eval_every_frames=1000000",
    "trainer.eval_episodes=1",
    "trainer.progress_bar=false",
    "agent.critic.minibatch_size=32",
    "trainer.total_frames=10000000",
]


def _frames(path) -> int:
    return torch.load(path, weights_only=False)["ngac"]["frames"]


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1], ids=lambda s: s.name)
def test_hangup_quit_and_usr1_checkpoint_and_mark_killed(cfg_factory, monkeypatch, sig):
    from ngac.agents.data import RolloutData
    from ngac.run import TrainingRun

    setup = RolloutData.setup

    def setup_then_signal(self, stage):
        setup(self, stage)
        os.kill(os.getpid(), sig)

    monkeypatch.setattr(RolloutData, "setup", setup_then_signal)
    run = TrainingRun(cfg_factory("env=pendulum", "trainer.total_frames=128"))
    outcome = run.fit()
    assert (outcome.status, outcome.exit_code) == ("KILLED", 128 + sig)
    assert mlflow.MlflowClient(run.tracking_uri).get_run(run.mlflow_run_id).info.status == "KILLED"
    assert _frames(run.ckpt_dir / "last.ckpt") == run.model.frames <= 32


def test_a_stop_during_a_long_evaluation_is_seen_at_once(cfg_factory, monkeypatch):
    from ngac.agents import callbacks
    from ngac.run import TrainingRun

    def endless(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(120)  # an evaluation far too large
        raise AssertionError("the evaluation was not cut short")

    monkeypatch.setattr(callbacks, "evaluate", endless)
    run = TrainingRun(cfg_factory("env=pendulum", "trainer.total_frames=128", "trainer.eval_every_frames=32"))
    t0 = time.monotonic()
    outcome = run.fit()
    assert time.monotonic() - t0 < 60
    assert (outcome.status, outcome.exit_code) == ("KILLED", 128 + signal.SIGTERM)
    client = mlflow.MlflowClient(run.tracking_uri)
    assert client.get_run(run.mlflow_run_id).info.status == "KILLED"
    assert not client.get_metric_history(run.mlflow_run_id, "eval/episode_return"), (
        "a cut-short evaluation logs nothing"
    )
    assert _frames(run.ckpt_dir / "last.ckpt") == 32


def test_ctrl_c_to_the_process_group_with_two_workers_stops_cleanly(tmp_path):
    """The terminal's Ctrl-C reaches the workers too: they ignore it, the main process stops them
    after its stop checkpoint, the run is KILLED, and no traceback is printed."""
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    proc = train_until_checkpoint(tmp_path, "ngac.cli", *WORKERS, start_new_session=True)
    try:
        workers = children(proc.pid)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 128 + signal.SIGINT, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    runs = runs_in(tmp_path / "m.db")
    assert len(runs) == 1 and runs[0].info.status == "KILLED", err[-3000:]
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/m.db")
    logged = max(m.step for m in client.get_metric_history(runs[0].info.run_id, "charts/frames"))
    assert _frames(ckpt) == logged, "the stop checkpoint holds every frame that was logged"
    time.sleep(1)
    alive = [w for w in workers if os.path.exists(f"/proc/{w}")]
    assert not alive or all(open(f"/proc/{w}/stat").read().rsplit(")", 1)[1].split()[0] == "Z" for w in alive)
