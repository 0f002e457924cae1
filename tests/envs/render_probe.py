"""Run as ``python tests/envs/render_probe.py TASK...`` with MUJOCO_GL set: prints what test_render checks, as JSON.

A subprocess, because the OpenGL backend is chosen once per process, when MuJoCo is imported.
For each task: the agent's main body (body 1) is moved to x = 0 and x = +50 m; at each place
the body's position is projected into the camera's image (pinhole model of the model camera:
``d = R^T (p - c)``, visible when ``d_z < 0``, image coordinates ``d_x / (-d_z tan(fovy/2))`` and
``d_y / (-d_z tan(fovy/2))`` in [-1, 1] for a square image), and two frames are rendered that
differ only in the agent's joint angles: if the agent is in view they differ.
"""

from __future__ import annotations

import json
import sys

import mujoco
import numpy as np

from ngac.envs.gym_env import make_gym_env
from ngac.envs.render import make_viewer

SIZE = 96


def _projection(model, data, cam: int, point: np.ndarray) -> list[float]:
    rot = data.cam_xmat[cam].reshape(3, 3)
    d = rot.T @ (point - data.cam_xpos[cam])
    half = np.tan(np.deg2rad(model.cam_fovy[cam]) / 2)
    return [float(d[0] / (-d[2] * half)), float(d[1] / (-d[2] * half)), float(d[2])]


def _frames_at(env, x: float) -> tuple[np.ndarray, np.ndarray]:
    """Two frames with the agent at x, in two poses."""
    sim = env.unwrapped
    model = sim.model
    qpos, qvel = sim.init_qpos.copy(), np.zeros(model.nv)
    qpos[0] = x
    sim.set_state(qpos, qvel)
    a = env.render().copy()
    for j in range(model.njnt):  # bend every hinge that is not the root's
        if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE and model.jnt_bodyid[j] != 1:
            qpos[model.jnt_qposadr[j]] += 0.6
    sim.set_state(qpos, qvel)
    b = env.render().copy()
    return a, b


def probe(env_id: str) -> dict:
    out: dict = {}
    viewer = make_viewer(env_id, seed=0, width=SIZE, height=SIZE)
    sim = viewer.unwrapped
    cam = mujoco.mj_name2id(sim.model, mujoco.mjtObj.mjOBJ_CAMERA, "track")
    out["body1"] = mujoco.mj_id2name(sim.model, mujoco.mjtObj.mjOBJ_BODY, 1)
    for x in (0.0, 50.0):  # in this order: the first frame is rendered with the agent at the origin
        a, b = _frames_at(viewer, x)
        out[f"x{int(x)}"] = {
            "body_x": float(sim.data.xpos[1][0]),
            "camera_x": float(sim.data.cam_xpos[cam][0]),
            "projection": _projection(sim.model, sim.data, cam, sim.data.xpos[1]),
            "pose_diff": float(np.abs(a.astype(np.int16) - b).mean()),
            "shape": list(a.shape),
        }
    viewer.close()
    plain = make_gym_env(env_id, render_mode="rgb_array", width=SIZE, height=SIZE)  # gymnasium's default camera
    plain.reset(seed=0)
    _frames_at(plain, 0.0)  # the free camera aims where the agent is at the first frame
    a, b = _frames_at(plain, 50.0)
    out["plain_x50_pose_diff"] = float(np.abs(a.astype(np.int16) - b).mean())
    plain.close()
    return out


if __name__ == "__main__":
    print(json.dumps({env_id: probe(env_id) for env_id in sys.argv[1:]}))
