"""The video viewer follows the agent; MUJOCO_GL is checked in one line before MuJoCo is imported."""

from __future__ import annotations

import ctypes.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ngac.envs.render as render
from ngac.envs.render import check_gl_backend, working_gl_backends

TRACKED_TASKS = ["HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5", "Swimmer-v5", "Humanoid-v5"]


@pytest.fixture(scope="module")
def working() -> list[str]:
    return working_gl_backends()


@pytest.mark.parametrize("value", [None, "disable", "off"])
def test_nothing_to_check(value, monkeypatch):
    if value is None:
        monkeypatch.delenv("MUJOCO_GL", raising=False)
    else:
        monkeypatch.setenv("MUJOCO_GL", value)
    monkeypatch.setattr(render.subprocess, "run", lambda *a, **k: pytest.fail("probed"))
    check_gl_backend()


def test_invalid_value_one_line_with_the_working_choices(monkeypatch, working):
    monkeypatch.setenv("MUJOCO_GL", "foo")
    with pytest.raises(ValueError) as err:
        check_gl_backend()
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("MUJOCO_GL='foo' cannot render here (RuntimeError: invalid value for environment variable")
    if working:
        assert f"valid choices on this machine: {', '.join(working)} (or unset it" in msg
    else:
        assert "no backend renders on this machine" in msg


def test_osmesa_without_the_library(monkeypatch, working):
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    if ctypes.util.find_library("OSMesa"):  # installed: osmesa is a valid choice
        assert "osmesa" in working
        check_gl_backend()
        return
    assert "osmesa" not in working
    with pytest.raises(ValueError, match=r"^MUJOCO_GL='osmesa' cannot render here \(.*\); ") as err:
        check_gl_backend()
    assert "\n" not in str(err.value)


def test_working_backends_pass(monkeypatch, working):
    for backend in working:
        monkeypatch.setenv("MUJOCO_GL", backend)
        check_gl_backend()


def test_check_runs_before_torchrl_and_mujoco_are_imported(tmp_path):
    """Under a broken MUJOCO_GL, `import torchrl.envs` dies with a 40-line traceback; the check does not."""
    code = (
        "import sys\nfrom ngac.envs.render import check_gl_backend\n"
        "try:\n    check_gl_backend()\nexcept ValueError as e:\n    print('ValueError:', e)\n"
        "print(sorted(m for m in ('torchrl', 'mujoco') if m in sys.modules))\n"
    )
    env = dict(os.environ, MUJOCO_GL="foo")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    lines = out.stdout.strip().splitlines()
    assert out.returncode == 0, out.stderr
    assert len(lines) == 2 and lines[0].startswith("ValueError: MUJOCO_GL='foo' cannot render here")
    assert lines[1] == "[]"


def test_viewer_keeps_the_agent_in_view(tmp_path, working):
    """Each task's agent moved to x = +50 m: the tracking camera moved with it (same place in the picture) and
    the frame shows it (a pose change changes the frame). Gymnasium's default camera loses all of them."""
    if not working:
        pytest.skip("no OpenGL backend renders on this machine (tried egl, osmesa, glfw)")
    env = dict(os.environ, MUJOCO_GL=working[0])
    env.pop("PYOPENGL_PLATFORM", None)
    out = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("render_probe.py")), *TRACKED_TASKS],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    for task in TRACKED_TASKS:
        r = got[task]
        start, far = r["x0"], r["x50"]
        assert r["body1"] == "torso", task
        assert far["body_x"] == pytest.approx(50.0) and far["shape"] == [96, 96, 3], task
        assert far["camera_x"] - start["camera_x"] == pytest.approx(50.0, abs=1e-6), task
        u, v, depth = far["projection"]
        assert depth < 0 and abs(u) < 0.5 and abs(v) < 0.5, (task, far["projection"])
        assert far["projection"] == pytest.approx(start["projection"], abs=1e-9), task
        assert far["pose_diff"] > 0.5, (task, far)
        assert r["plain_x50_pose_diff"] == 0.0, task  # the regression: only the floor in view
