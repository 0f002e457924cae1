"""Rendering: a video viewer whose camera follows the agent, and the ``MUJOCO_GL`` check.

Viewer. Gymnasium's MuJoCo envs (v5, gymnasium 1.4) render ``rgb_array`` frames through a FREE
camera: the renderer resets the camera type to FREE on every frame, so ``default_camera_config``
cannot make it a tracking camera (``{"type": mjCAMERA_TRACKING, "trackbodyid": 1}`` is
overwritten), and Hopper's and Walker2d's ``trackbodyid: 2`` has no effect either. The agent runs
out of the picture after a few metres (HalfCheetah after about 3 s). The model files of
HalfCheetah, Hopper, Walker2d, Ant, Swimmer and Humanoid each define a camera named ``"track"``
in MuJoCo's ``trackcom`` mode (a fixed offset from the centre of mass of the agent's main
body's subtree, so it follows the agent in x, y and z). :func:`make_viewer` renders through
it. Models without it (Reacher, Pusher, the pendulums: agents that stay in place) keep the
free camera.

Backend check. ``MUJOCO_GL`` picks MuJoCo's OpenGL backend (``egl``, ``osmesa``, ``glfw``).
MuJoCo reads it when imported; a value whose library is missing (``osmesa`` without libOSMesa)
makes ``import mujoco`` fail with a 40-line traceback, and TorchRL imports MuJoCo. So
:func:`check_gl_backend` probes the value in a subprocess (``import mujoco`` and one 16x16
offscreen frame, about half a second) and raises a one-line ValueError naming the backends that
do work here. Call it before importing TorchRL; this module imports neither.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys

import gymnasium as gym

from .gym_env import make_gym_env

__all__ = ["make_viewer", "check_gl_backend", "working_gl_backends", "GL_BACKENDS", "TRACKING_CAMERA"]

#: MUJOCO_GL values that select a rendering backend on Linux
GL_BACKENDS = ("egl", "osmesa", "glfw")
#: MUJOCO_GL values with which MuJoCo renders nothing (nothing to check)
_GL_DISABLED = ("disable", "disabled", "off", "false", "0")
#: the camera of the model files that follows the agent
TRACKING_CAMERA = "track"

_PROBE = """
import mujoco
model = mujoco.MjModel.from_xml_string("<mujoco><worldbody><geom type='sphere' size='1'/></worldbody></mujoco>")
renderer = mujoco.Renderer(model, 16, 16)
renderer.update_scene(mujoco.MjData(model))
renderer.render()
renderer.close()
"""


def _is_mujoco_task(env_id: str) -> bool:
    entry = gym.spec(env_id).entry_point
    if isinstance(entry, str):
        return entry.startswith("gymnasium.envs.mujoco")
    from gymnasium.envs.mujoco.mujoco_env import MujocoEnv  # imports mujoco: only for a callable entry point

    return isinstance(entry, type) and issubclass(entry, MujocoEnv)


def make_viewer(env_id: str, seed: int, *, width: int = 480, height: int = 480) -> gym.Env:
    """A gymnasium ``env_id`` env with ``render_mode="rgb_array"``, reset with ``seed``.

    MuJoCo tasks render through the model's ``"track"`` camera, which follows the agent (see
    the module docstring). Copy the simulator state into it (``unwrapped.set_state(qpos, qvel)``)
    and call ``render()`` for each frame.
    """
    kwargs: dict = {"render_mode": "rgb_array"}
    if _is_mujoco_task(env_id):
        kwargs.update(camera_name=TRACKING_CAMERA, width=int(width), height=int(height))
    env = make_gym_env(env_id, **kwargs)
    env.reset(seed=int(seed))
    return env


@functools.cache
def _probe(value: str, inherit_platform: bool) -> str | None:
    """None when MuJoCo renders a frame with ``MUJOCO_GL=value``, else a short reason."""
    env = dict(os.environ, MUJOCO_GL=value)
    if not inherit_platform:  # set by mujoco.egl/osmesa in this process, it would veto another backend
        env.pop("PYOPENGL_PLATFORM", None)
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=120, check=False
        )
    except subprocess.TimeoutExpired:
        return "the probe timed out after 120 s"
    if done.returncode == 0:
        return None
    lines = [ln.strip() for ln in done.stderr.splitlines() if ln.strip()]
    reason = lines[-1] if lines else f"exit status {done.returncode}"
    return reason if len(reason) <= 160 else reason[:157] + "..."


def working_gl_backends() -> list[str]:
    """The :data:`GL_BACKENDS` with which MuJoCo renders on this machine (one subprocess each)."""
    return [b for b in GL_BACKENDS if _probe(b, False) is None]


def check_gl_backend() -> None:
    """When ``MUJOCO_GL`` is set, check that MuJoCo renders with it; else a one-line ValueError.

    Unset, or set to a value that disables rendering, there is nothing to check.
    """
    value = os.environ.get("MUJOCO_GL")
    if value is None or value.strip().lower() in _GL_DISABLED:
        return
    reason = _probe(value, True)
    if reason is None:
        return
    working = [b for b in working_gl_backends() if b != value.strip().lower()]
    choices = (
        f"valid choices on this machine: {', '.join(working)}"
        if working
        else "no backend renders on this machine (install EGL or OSMesa: apt-get install libegl1 or libosmesa6)"
    )
    raise ValueError(
        f"MUJOCO_GL={value!r} cannot render here ({reason}); {choices} (or unset it if no video is needed)"
    )
