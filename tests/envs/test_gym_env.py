"""Making gymnasium envs quietly: nothing at import, MuJoCo's callback and torchrl's filter at the first env."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import warnings

import mujoco
import numpy as np
import pytest

from ngac.envs import make_env
from ngac.envs.gym_env import install_output_filters, make_gym_env, mujoco_warning
from tests.envs.envtest_utils import load_env_cfg

_IMPORT_CHECK = """
import json, logging, sys
import ngac.envs
heavy = sorted(m for m in ("torchrl", "mujoco", "gymnasium", "torch") if m in sys.modules)
from ngac.envs import make_env  # imports torchrl, which imports mujoco
import mujoco
before = mujoco.get_mju_user_warning(), list(logging.getLogger("torchrl").filters)
make_env({"id": "Pendulum-v1", "num_envs": 1})
from ngac.envs.gym_env import install_output_filters, mujoco_warning
install_output_filters()
after = mujoco.get_mju_user_warning() is mujoco_warning, len(logging.getLogger("torchrl").filters)
print(json.dumps({"heavy": heavy, "hook_before": before[0] is not None, "filters_before": len(before[1]),
                  "hook_after": after[0], "filters_after": after[1]}))
"""


def test_no_side_effects_at_import_and_filters_installed_once(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT_CHECK], capture_output=True, text=True, check=True, cwd=tmp_path, timeout=300
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"heavy": [], "hook_before": False, "filters_before": 0, "hook_after": True, "filters_after": 1}


def test_halfcheetah_settotalmass_warning_silenced(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_env(load_env_cfg("halfcheetah", num_envs=2), seed=0).reset()
        make_gym_env("HalfCheetah-v5").reset(seed=0)
    out, err = capfd.readouterr()
    assert "settotalmass" not in out + err
    assert not [w for w in caught if "settotalmass" in str(w.message)]
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()
    assert mujoco.get_mju_user_warning() is mujoco_warning


def test_other_mujoco_warnings_pass_as_runtime_warnings(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    sim = make_gym_env("HalfCheetah-v5").unwrapped
    sim.data.qvel[:] = np.nan
    with pytest.warns(RuntimeWarning, match=r"^MuJoCo: Nan, Inf or huge value in QVEL"):
        mujoco.mj_step(sim.model, sim.data)
    assert "QVEL" not in capfd.readouterr().out
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()


def test_torchrl_construction_lines_dropped_others_kept(monkeypatch):
    logger = logging.getLogger("torchrl")
    # setLevel, not a bare attribute: Logger caches isEnabledFor answers, and setLevel clears the cache
    # (envtest_utils sets WARNING at import; a cached "INFO is off" would drop every record here).
    monkeypatch.setattr(logger, "level", logger.level)  # restored after the test
    logger.setLevel(logging.INFO)
    records: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: records.append(record.getMessage())
    logger.addHandler(handler)
    try:
        make_env(load_env_cfg("pendulum", num_envs=2), seed=0)
        install_output_filters()
        logger.info("another torchrl message")
    finally:
        logger.removeHandler(handler)
    assert records == ["another torchrl message"]
