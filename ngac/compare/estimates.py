"""The interval estimates of a comparison: per group, across environments, per pair of groups.

:func:`estimate` adds the :data:`INTERVAL_COLUMNS` to each group's summary row and returns the rest: the
aggregate over normalised environments, the probability of improvement of each pair, the performance
profiles and one-line notes (a group with one seed, an environment without normalisation scores).
The statistics are those of :mod:`.intervals`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np

from . import intervals as iv
from .scores import TaskScores, task_scores
from .stats import Group, eval_matrix

INTERVAL_COLUMNS = [
    "final_return_iqm",
    "final_return_iqm_lo",
    "final_return_iqm_hi",
    "final_return_mean_lo",
    "final_return_mean_hi",
    "max_iqm_eval",
    "max_iqm_eval_lo",
    "max_iqm_eval_hi",
    "max_mean_eval_lo",
    "max_mean_eval_hi",
    "final_normalised_iqm",
    "final_normalised_iqm_lo",
    "final_normalised_iqm_hi",
]
AGGREGATE_COLUMNS = ["group", "envs", "runs", "iqm", "iqm_lo", "iqm_hi", "mean", "mean_lo", "mean_hi"]
IMPROVEMENT_COLUMNS = ["env", "x", "y", "n_x", "n_y", "p_x_over_y", "p_lo", "p_hi", "decided"]
ACROSS = "all (normalised)"


@dataclass
class Profile:
    """One panel of performance profiles: per group, the fraction of runs above each threshold and its CI."""

    title: str
    xlabel: str
    tau: np.ndarray
    curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]


@dataclass
class Estimates:
    reps: int
    seed: int
    scores: dict[str, TaskScores]  # the environments of this comparison that are normalised
    aggregate: list[dict[str, Any]] = field(default_factory=list)
    improvement: list[dict[str, Any]] = field(default_factory=list)
    profiles: list[Profile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def finals_of(group: Group) -> np.ndarray:
    """The group's final evaluations (one per seed that has one), ``(seeds, 1)``."""
    return np.array([r.final_return for r in group.runs if math.isfinite(r.final_return)]).reshape(-1, 1)


def _set(row: dict[str, Any], name: str, value: iv.Interval, point: bool = True) -> None:
    if point:
        row[name] = value.point
    row[f"{name}_lo"], row[f"{name}_hi"] = value.lo, value.hi


def decided(p: iv.Interval, x: str, y: str) -> str:
    """Which group the CI of P(X > Y) favours: ``x``, ``y``, ``no`` (it holds 0.5) or ``–`` (no interval)."""
    if not (math.isfinite(p.lo) and math.isfinite(p.hi)):
        return "–"
    return x if p.lo > 0.5 else y if p.hi < 0.5 else "no"


def _improvement_row(env: str, x: str, y: str, xs: list[np.ndarray], ys: list[np.ndarray], est: Estimates) -> dict:
    p = iv.improvement(xs, ys, est.reps, est.seed, (env, x, y, "improvement"))
    n_x, n_y = sum(len(a) for a in xs), sum(len(a) for a in ys)  # runs, over the tasks
    return {"env": env, "x": x, "y": y, "n_x": n_x, "n_y": n_y, "p_x_over_y": p.point, "p_lo": p.lo, "p_hi": p.hi,
            "decided": decided(p, x, y)}  # fmt: skip


def _per_group(group: Group, est: Estimates) -> None:
    finals = finals_of(group)
    name = (group.env, group.label)
    iqm, mean = iv.iqm_and_mean(finals.ravel().tolist(), est.reps, est.seed, (*name, "final"))
    max_iqm, max_mean = iv.max_over_training(eval_matrix(group.runs), est.reps, est.seed, (*name, "max"))
    row = group.row
    _set(row, "final_return_iqm", iqm)
    _set(row, "final_return_mean", mean, point=False)
    _set(row, "max_iqm_eval", max_iqm)
    _set(row, "max_mean_eval", max_mean, point=False)
    task = est.scores.get(group.env)
    normalised = iqm.affine(*_affine(task)) if task else iv.Interval.none()
    _set(row, "final_normalised_iqm", normalised)
    if len(finals) == 1:
        est.notes.append(f"{group.env} / {group.label}: one seed: its estimates are that seed's, with no interval")
    elif len(finals) == 0:
        est.notes.append(f"{group.env} / {group.label}: no run has an eval/episode_return: no estimates")


def _affine(task: TaskScores) -> tuple[float, float]:
    scale = 1.0 / (task.reference_return - task.random_return)
    return scale, -task.random_return * scale


def estimate(
    groups: list[Group], reps: int = iv.DEFAULT_REPS, seed: int = iv.DEFAULT_SEED, scores: dict | None = None
) -> Estimates:
    """Interval estimates for ``groups`` (from :func:`.stats.summarise`); fills each ``group.row``."""
    envs = list(dict.fromkeys(g.env for g in groups))
    scores = task_scores() if scores is None else scores
    est = Estimates(reps, seed, {e: scores[e] for e in envs if e in scores})
    for g in groups:
        _per_group(g, est)

    finals = {(g.env, g.label): finals_of(g) for g in groups}
    finals = {k: v for k, v in finals.items() if len(v)}
    for env in envs:
        labels = [g.label for g in groups if g.env == env and (env, g.label) in finals]
        for x, y in combinations(labels, 2):
            est.improvement.append(_improvement_row(env, x, y, [finals[env, x]], [finals[env, y]], est))
        panel = {label: [finals[env, label]] for label in labels}
        if panel:
            _add_profile(est, f"{env}: final evaluation", "final eval/episode_return", panel, (env, "profile"))

    missing = [e for e in envs if e not in est.scores]
    if missing:
        est.notes.append(
            f"{', '.join(missing)}: no random_return and reference_return in configs/env: "
            "not normalised, left out of the aggregate across environments"
        )
    _across(groups, finals, est)
    return est


def _across(groups: list[Group], finals: dict[tuple[str, str], np.ndarray], est: Estimates) -> None:
    """The aggregate over normalised environments; P(X > Y) and profiles across them when there are two or more."""
    envs = list(est.scores)
    if not envs:
        return
    tasks: dict[str, list[np.ndarray]] = {}
    for label in dict.fromkeys(g.label for g in groups):
        absent = [e for e in envs if (e, label) not in finals]
        if absent:
            est.notes.append(f"{label}: no final evaluation on {', '.join(absent)}: left out of the aggregate")
            continue
        tasks[label] = [(finals[e, label] - est.scores[e].random_return) * _affine(est.scores[e])[0] for e in envs]
        iqm, mean = iv.aggregate(tasks[label], est.reps, est.seed, (ACROSS, *envs, label, "aggregate"))
        row = {"group": label, "envs": len(envs), "runs": sum(len(a) for a in tasks[label])}
        _set(row, "iqm", iqm)
        _set(row, "mean", mean)
        est.aggregate.append(row)
    if len(envs) < 2:
        return
    for x, y in combinations(tasks, 2):
        est.improvement.append(_improvement_row(ACROSS, x, y, tasks[x], tasks[y], est))
    _add_profile(est, f"{len(envs)} environments, normalised", "normalised final return", tasks, (ACROSS, "profile"))


def _add_profile(
    est: Estimates, title: str, xlabel: str, tasks: dict[str, list[np.ndarray]], name: tuple[str, ...]
) -> None:
    tau = iv.profile_grid(list(tasks.values()))
    curves = {label: iv.performance_profile(t, tau, est.reps, est.seed, (*name, label)) for label, t in tasks.items()}
    est.profiles.append(Profile(title, xlabel, tau, curves))
