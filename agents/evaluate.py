"""Deterministic evaluation episodes, and a video of one.

Evaluation acts with the distribution's mode (the Gaussian mean, the most likely category), on
fresh environments that use the training run's observation statistics, frozen.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torchrl.envs import EnvBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

from ngac.envs import load_normalization, make_env, sync_normalization, vector_env
from ngac.envs.render import make_viewer


def evaluate(
    actor,
    env_cfg,
    train_env: EnvBase | None,
    *,
    episodes: int,
    seed: int,
    snapshot: dict[str, Any] | None = None,
    max_steps: int = 10_000,
) -> dict[str, float]:
    """Run ``episodes`` deterministic episodes (one per environment copy, in parallel).

    Observation statistics come from ``train_env`` or from an ``env_state`` ``snapshot``.
    """
    env = make_env(env_cfg, num_envs=episodes, seed=seed, training=False)
    try:
        if train_env is not None:
            sync_normalization(train_env, env)
        elif snapshot is not None:
            load_normalization(env, snapshot)
        returns = torch.full((episodes,), float("nan"))
        lengths = torch.zeros(episodes)
        device = next(actor.parameters()).device
        td = env.reset()
        with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
            for _ in range(max_steps):
                td = actor(td.to(device)).to("cpu")
                td, next_root = env.step_and_maybe_reset(td)
                done = td["next", "done"].reshape(episodes)
                first = done & returns.isnan()
                if first.any():
                    returns[first] = td["next", "episode_return"].reshape(episodes)[first].float()
                    lengths[first] = td["next", "episode_length"].reshape(episodes)[first].float()
                if not returns.isnan().any():
                    break
                td = next_root
    finally:
        env.close()
    ok = ~returns.isnan()
    r = returns[ok]
    return {
        "mean_return": float(r.mean()) if ok.any() else float("nan"),
        "std_return": float(r.std(unbiased=False)) if ok.any() else float("nan"),
        "mean_length": float(lengths[ok].mean()) if ok.any() else float("nan"),
        "episodes": int(ok.sum()),
    }


def record_video(actor, env_cfg, snapshot: dict[str, Any], out: str, seed: int, max_steps: int = 1000) -> str:
    """Record one deterministic episode to MP4 from MuJoCo's ``rgb_array`` render.

    The policy acts in an ngac environment (same normalisation as training); a second, rendering
    copy of the task, filmed by a camera that tracks the agent (:func:`ngac.envs.render.make_viewer`),
    mirrors its physics state (``qpos``, ``qvel``) each step.
    """
    try:
        import imageio.v2 as imageio
    except ImportError:
        raise RuntimeError("video recording needs imageio: pip install 'imageio[ffmpeg]'") from None
    backend = os.environ.get("MUJOCO_GL")
    try:
        viewer = make_viewer(env_cfg.id, seed)  # its camera follows the agent
        viewer.render()
    except Exception as exc:  # noqa: BLE001
        raise RuntimeError(
            f"no OpenGL backend could render {env_cfg.id} (MUJOCO_GL={backend!r}: {type(exc).__name__}); "
            f"install one and set MUJOCO_GL=egl or MUJOCO_GL=osmesa (Debian: apt-get install libosmesa6)"
        ) from None
    if not hasattr(viewer.unwrapped, "set_state"):
        raise RuntimeError(f"video recording supports the MuJoCo tasks; {env_cfg.id} is not one")
    env = make_env(env_cfg, num_envs=1, seed=seed, training=False)
    load_normalization(env, snapshot)  # the run's observation statistics, frozen
    sim = vector_env(env).envs[0].unwrapped
    frames = []
    td = env.reset()
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        for _ in range(max_steps):
            viewer.unwrapped.set_state(sim.data.qpos.copy(), sim.data.qvel.copy())
            frames.append(viewer.render())
            td, td_next = env.step_and_maybe_reset(actor(td))
            if bool(td["next", "done"].any()):
                break
            td = td_next
    env.close()
    viewer.close()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(out, frames, fps=int(viewer.metadata.get("render_fps", 30)))
    return out
