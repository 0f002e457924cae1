"""`ngac eval <checkpoint>`: runs a saved policy; records a video where a GL backend exists."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ngac.run import TrainingRun
from tests.ngac.run_utils import make_cfg


@pytest.fixture(scope="module")
def cheetah_checkpoint(tmp_path_factory):
    cfg = make_cfg(tmp_path_factory.mktemp("eval"), "env=halfcheetah", "env.max_episode_steps=30")
    trainer = TrainingRun(cfg)
    trainer.fit()
    return trainer.ckpt_dir / "last.ckpt"


def _eval(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "ngac.cli", "eval", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_eval_runs_the_saved_policy(cheetah_checkpoint):
    out = _eval(cheetah_checkpoint, "--episodes", 3)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "3 episodes: return" in out.stdout and "length 30" in out.stdout


def test_eval_missing_checkpoint_is_one_line(tmp_path):
    out = _eval(tmp_path / "nope.ckpt")
    assert out.returncode == 2
    assert out.stderr.strip().startswith("ngac: error:") and "no such checkpoint" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_video_with_egl(cheetah_checkpoint, tmp_path):
    video = tmp_path / "cheetah.mp4"
    out = _eval(cheetah_checkpoint, "--episodes", 1, "--video", video, env={"MUJOCO_GL": "egl"})
    if out.returncode != 0 and "no OpenGL backend" in out.stderr:
        pytest.skip(f"no EGL here: {out.stderr.strip()}")
    assert out.returncode == 0, out.stderr[-2000:]
    assert video.is_file() and video.stat().st_size > 1000


def test_video_without_gl_says_so(cheetah_checkpoint, tmp_path):
    bad = _eval(cheetah_checkpoint, "--video", tmp_path / "x.mp4", env={"MUJOCO_GL": "no-such-backend"})
    assert bad.returncode == 2
    err = bad.stderr.strip().splitlines()
    assert len(err) == 1 and "MUJOCO_GL='no-such-backend'" in err[0] and "egl" in err[0], bad.stderr
    # glfw needs a display, which a headless machine lacks: a clear one-line error too.
    out = _eval(cheetah_checkpoint, "--video", tmp_path / "x.mp4", env={"MUJOCO_GL": "glfw", "DISPLAY": ""})
    if out.returncode == 0:
        pytest.skip("glfw rendered here (a display exists)")
    assert out.returncode == 2
    # MuJoCo and GLFW print their own warnings first; ours is the one error line, last.
    err = [ln for ln in out.stderr.strip().splitlines() if ln.startswith("ngac: error:")]
    assert len(err) == 1 and out.stderr.strip().endswith(err[0]), out.stderr
    assert "OpenGL" in err[0] and "MUJOCO_GL" in err[0]
