"""The outside world, before anything starts: a working directory Hydra cannot write into, an
experiment name MLflow refuses."""

from __future__ import annotations

import subprocess
import sys

from ngac.cli import main


def test_an_over_long_experiment_name_is_one_line(capsys):
    assert main(["train", "logger.experiment_name=" + "x" * 600]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "ngac: error: logger.experiment_name='xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...' has 600 characters; "
        "MLflow takes at most 500"
    )


def test_a_working_directory_hydra_cannot_write_is_one_line_before_anything_starts(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "ngac.cli", "train", "env=pendulum", f"out_dir={tmp_path}/run",
         f"logger.tracking_uri=sqlite:///{tmp_path}/m.db"],
        cwd="/proc", capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip().startswith("ngac: error: the working directory '/proc' cannot be written")
    assert "hydra.run.dir=/a/writable/path" in out.stderr and "\n" not in out.stderr.strip()
    assert not (tmp_path / "m.db").exists() and not (tmp_path / "run").exists()
