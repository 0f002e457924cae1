"""What ``ngac compare`` reads from one MLflow run: its return curve, timings, budget and diagnostics.

Metric names are those ngac logs (see ``ngac.agents.metrics``); older runs used other names for
two timings, which are read when the new name is absent:

* ``curvature/direction_ms`` (the backend's direction), formerly ``curvature/update_ms`` in
  natural-gradient runs;
* ``perf/update_ms`` (a whole update), formerly ``curvature/update_ms`` in PPO runs.

Only metrics the run has (its ``run.data.metrics``) are fetched, one history request each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric, Run

RETURN_KEY = "charts/episode_return"
EVAL_KEY = "eval/episode_return"
SPS_KEY = "charts/sps"
FRAMES_KEY = "charts/frames"
DIRECTION_MS_KEY = "curvature/direction_ms"
UPDATE_MS_KEY = "perf/update_ms"
OLD_UPDATE_MS_KEY = "curvature/update_ms"  # before the rename: direction time, or PPO's whole update
COS_KEYS = ("curvature/cos_to_natural", "curvature/cos_to_natural_fisher")
BUDGET_PARAM = "trainer.total_frames"


@dataclass
class Curve:
    """One run's metric against environment frames (the metric's step) and wall-clock seconds since the start."""

    frames: np.ndarray
    seconds: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.frames)


@dataclass
class RunData:
    run_id: str
    name: str
    group: str
    env: str
    budget: float  # trainer.total_frames, else the last frame logged; nan if neither
    curve: Curve  # the return curve
    curve_key: str | None  # RETURN_KEY, EVAL_KEY (no training episode finished) or None
    final_return: float  # the last eval/episode_return
    evals: Curve  # eval/episode_return against frames
    direction_ms: list[float] = field(default_factory=list)
    update_ms: list[float] = field(default_factory=list)
    sps: list[float] = field(default_factory=list)
    wall_time_s: float = math.nan
    diagnostics: dict[str, Curve] = field(default_factory=dict)  # COS_KEYS present in the run

    @property
    def best_return(self) -> float:
        """The highest eval/episode_return (a policy that falls back: best >> final); nan if none."""
        return float(self.evals.values.max()) if len(self.evals) else math.nan


def group_of(run: Run, group_by: str) -> str:
    """The run's group label: a tag's value, ``algo`` falling back to ``backend``, or ``<param>=<value>``."""
    tags, params = run.data.tags, run.data.params
    if group_by.startswith("param:"):
        name = group_by[len("param:") :]
        return f"{name}={params.get(name, '(none)')}"
    if group_by == "algo":
        return tags.get("algo") or tags.get("backend") or "(none)"
    return tags.get(group_by) or "(none)"


def history(client: MlflowClient, run: Run, key: str) -> list[Metric]:
    """The finite points of ``key`` sorted by (step, timestamp); none if the run never logged it."""
    if key not in run.data.metrics:
        return []
    points = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: (m.step, m.timestamp))
    return [m for m in points if m.value is not None and math.isfinite(m.value)]


def to_curve(points: list[Metric], start_ms: int) -> Curve:
    """One point per step (the last logged wins, e.g. after a resume), seconds made non-decreasing."""
    by_step: dict[int, Metric] = {}
    for m in points:
        by_step[m.step] = m
    steps = sorted(by_step)
    seconds = np.array([(by_step[s].timestamp - start_ms) / 1000.0 for s in steps], dtype=float)
    # A resumed run can log a later step at an earlier time than the checkpoint's last step.
    seconds = np.maximum.accumulate(seconds) if len(seconds) else seconds
    return Curve(
        frames=np.array(steps, dtype=float),
        seconds=seconds,
        values=np.array([by_step[s].value for s in steps], dtype=float),
    )


def _budget(run: Run, curve: Curve) -> float:
    try:
        return float(run.data.params[BUDGET_PARAM])
    except (KeyError, ValueError):
        pass
    if FRAMES_KEY in run.data.metrics:
        return float(run.data.metrics[FRAMES_KEY])
    return float(curve.frames[-1]) if len(curve) else math.nan


def read_run(client: MlflowClient, run: Run, group_by: str) -> RunData:
    info = run.info
    start = info.start_time or 0
    evals = history(client, run, EVAL_KEY)
    curve_key, points = RETURN_KEY, history(client, run, RETURN_KEY)
    if not points:
        curve_key, points = (EVAL_KEY, evals) if evals else (None, [])
    curve = to_curve(points, start)

    def values(key: str) -> list[float]:
        return [m.value for m in history(client, run, key)]

    direction_ms, update_ms = values(DIRECTION_MS_KEY), values(UPDATE_MS_KEY)
    if OLD_UPDATE_MS_KEY in run.data.metrics:
        is_ppo = run.data.tags.get("agent") == "ppo"
        if is_ppo and not update_ms:
            update_ms = values(OLD_UPDATE_MS_KEY)
        elif not is_ppo and not direction_ms:
            direction_ms = values(OLD_UPDATE_MS_KEY)
    wall = (info.end_time - info.start_time) / 1000.0 if info.end_time and info.start_time else math.nan
    return RunData(
        run_id=info.run_id,
        name=info.run_name or info.run_id,
        group=group_of(run, group_by),
        env=run.data.tags.get("env") or run.data.params.get("env.id") or "?",
        budget=_budget(run, curve),
        curve=curve,
        curve_key=curve_key,
        final_return=float(evals[-1].value) if evals else math.nan,
        evals=to_curve(evals, start),
        direction_ms=direction_ms,
        update_ms=update_ms,
        sps=values(SPS_KEY),
        wall_time_s=wall,
        diagnostics={k: to_curve(p, start) for k in COS_KEYS if (p := history(client, run, k))},
    )
