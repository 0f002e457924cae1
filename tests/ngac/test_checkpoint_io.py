"""Checkpoints are written beside the target and renamed: a full disk or a kill -9 mid-write
leaves the previous checkpoint loadable, and a full disk ends the run FAILED in one line."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import mlflow
import pytest
import torch

from ngac.checkpoint_io import AtomicCheckpointIO, CheckpointWriteError, atomic_save, temp_path


def _disk_full_after(nbytes: int):
    """A ``torch.save`` that writes ``nbytes`` and then fails as a full disk does."""

    def save(obj, fh, *args, **kwargs):
        fh.write(b"x" * nbytes)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    return save


def test_a_write_lands_whole_with_the_usual_permissions_and_no_temp_file(tmp_path):
    target = tmp_path / "ckpts" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"a": torch.arange(3)}, target)
    assert torch.equal(torch.load(target)["a"], torch.arange(3))
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]
    with pytest.raises(TypeError, match="storage_options"):
        AtomicCheckpointIO().save_checkpoint({}, target, storage_options={"x": 1})


def test_a_full_disk_mid_write_is_one_line_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    target = tmp_path / "last.ckpt"
    atomic_save({"frames": 32}, target)
    monkeypatch.setattr(torch, "save", _disk_full_after(4096))
    with pytest.raises(CheckpointWriteError) as info:
        atomic_save({"frames": 64}, target)
    message = str(info.value)
    assert "\n" not in message and "No space left on device" in message and "previous checkpoint is kept" in message
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert torch.load(target) == {"frames": 32}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"], "the temp file is removed"


SLOW_WRITER = """
import os, sys, time
from pathlib import Path
import ngac.checkpoint_io as io
target = Path(sys.argv[1])
def stuck(src, dst):
    Path(sys.argv[2]).write_text("written")
    time.sleep(600)
io.os.replace = stuck
io.atomic_save({"frames": 64, "pad": b"y" * 100000}, target)
"""


def test_kill9_between_the_temp_write_and_the_rename_keeps_the_previous_checkpoint(tmp_path):
    target, ready = tmp_path / "last.ckpt", tmp_path / "ready"
    atomic_save({"frames": 32}, target)
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(target), str(ready)])
    try:
        t0 = time.time()
        while not ready.exists():
            assert proc.poll() is None and time.time() - t0 < 60
            time.sleep(0.05)
        assert temp_path(target, proc.pid).stat().st_size > 100000  # the new checkpoint, complete, not renamed
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert torch.load(target) == {"frames": 32}
    atomic_save({"frames": 96}, target)  # the next write clears what the killed one left
    assert torch.load(target) == {"frames": 96}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "ready"]


def test_a_full_disk_during_a_run_ends_it_failed_with_its_previous_checkpoint(cfg_factory, monkeypatch):
    from ngac.run import TrainingRun

    real_save, calls = torch.save, []

    def second_write_fails(obj, fh, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            return _disk_full_after(1024)(obj, fh)
        return real_save(obj, fh, *args, **kwargs)

    monkeypatch.setattr(torch, "save", second_write_fails)
    run = TrainingRun(cfg_factory("env=pendulum", "trainer.total_frames=128"))
    with pytest.raises(CheckpointWriteError, match="No space left on device"):
        run.fit()
    monkeypatch.undo()
    assert mlflow.MlflowClient(run.tracking_uri).get_run(run.mlflow_run_id).info.status == "FAILED"
    assert torch.load(run.ckpt_dir / "last.ckpt", weights_only=False)["ngac"]["frames"] == 32
    assert [p.name for p in run.ckpt_dir.iterdir()] == ["last.ckpt"]
