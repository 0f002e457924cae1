"""The `ngac` command's rough edges (issue 12): one-line errors, help with meanings, the progress bar."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ngac.cli import main, precheck
from ngac.run import TrainingRun
from ngac.validate import ConfigError


def test_an_unusable_mujoco_gl_is_one_line_naming_what_works(tmp_path):
    env = dict(os.environ, MUJOCO_GL="nonsense")
    out = subprocess.run([sys.executable, "-m", "ngac.cli", "train"], capture_output=True, text=True, cwd=tmp_path,
                         env=env, timeout=300)  # fmt: skip
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert out.returncode == 2 and len(lines) == 1, out.stderr[-3000:]
    assert (
        lines[0].startswith("ngac: error: MUJOCO_GL='nonsense'")
        and "valid choices" in lines[0]
        or "no backend" in lines[0]
    )
    assert not (tmp_path / "mlflow.db").exists()


def test_eval_of_a_missing_checkpoint_names_the_checkpoint(capsys):
    assert main(["eval", "/nonexistent.ckpt"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "ngac: error: checkpoint='/nonexistent.ckpt': no such checkpoint file"


def test_help_shows_each_key_with_its_meaning(capsys):
    assert main(["train", "curvature=kfac", "--help"]) == 0
    out = capsys.readouterr().out
    assert "env.num_envs = 32" in out and "copies of the task, stepped together" in out
    assert "env.workers = 1" in out and "processes that step the num_envs copies" in out
    assert "curvature.inverse_every = 10" in out and "(now: kfac)" in out


def test_an_unknown_key_lists_the_chosen_backends_options_not_hydras_plus_hint():
    with pytest.raises(ConfigError) as info:
        precheck(["curvature=kfac", "curvature.mode=batch_mean"])
    message = str(info.value)
    assert "'curvature.mode'" in message and "(curvature=kfac)" in message and "inverse_every" in message
    assert "+curvature" not in message and "\n" not in message


def test_the_progress_bar_shows_a_dash_until_an_episode_ends(cfg_factory, capfd):
    TrainingRun(cfg_factory("env=pendulum", "trainer.progress_bar=true")).fit()  # 64 frames: no episode ends
    err = capfd.readouterr().err
    assert "ret=-" in err and "ret=nan" not in err and "frames" in err
