"""One process owns an output folder: a second run or resume on it is one line naming the holder;
a lock left by a killed holder is taken over with a note."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import mlflow
import pytest

from ngac.lock import LOCK_NAME, FolderInUse, RunLock

HOLD = "import sys, time; from ngac.lock import RunLock; lock = RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(600)"


def _holder(folder) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_holder_is_refused_in_one_line_naming_the_first(tmp_path):
    proc = _holder(tmp_path)
    try:
        with pytest.raises(FolderInUse) as info:
            RunLock(tmp_path).acquire()
        message = str(info.value)
        assert "\n" not in message and f"pid {proc.pid} on " in message and str(tmp_path) in message
    finally:
        proc.kill()
        proc.wait()


def test_a_killed_holders_lock_is_taken_over_with_a_note_and_released_clean(tmp_path):
    proc = _holder(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    lock = RunLock(tmp_path).acquire()
    assert lock.note and f"pid {proc.pid}" in lock.note and "no longer running" in lock.note
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()
    assert (tmp_path / LOCK_NAME).read_text() == ""
    with RunLock(tmp_path) as again:  # a clean release leaves nothing to take over
        assert again.note is None


def test_a_second_train_on_a_running_out_dir_is_one_line_and_changes_nothing(tmp_path, cfg_factory):
    """Two `ngac train` (or two resumes of one checkpoint, which share its folder) on one out_dir."""
    from ngac.run import TrainingRun
    from ngac.validate import ConfigError

    cfg = cfg_factory("env=pendulum")
    proc = _holder(cfg.out_dir)
    try:
        t0 = time.time()
        with pytest.raises(ConfigError, match=f"is in use by pid {proc.pid} on "):
            TrainingRun(cfg)
        assert time.time() - t0 < 30
    finally:
        proc.kill()
        proc.wait()
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    assert client.get_experiment_by_name("ngac") is None  # no MLflow run was opened
    run = TrainingRun(cfg)  # the holder is gone: this one runs
    assert run.lock.note and run.fit().status == "FINISHED"
    assert not run.lock.held
