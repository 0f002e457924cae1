r"""Statistics over the seeds of a group: mean and std curves, the area under the mean curve, the summary row.

A group is the runs of one environment that share a group label (``--group-by``); its runs are
taken as seeds. Runs of different environments never share a group, a curve or a row.

* Curves: each run is linear between its own points. Across seeds the mean and the population
  std (``ddof=0``) are taken on a common grid: the union of the runs' points within the range
  that *every* run covers, :math:`[\max_i x_{i,0}, \min_i x_{i,-1}]`. Outside it there is no
  mean curve, and where the runs share no range there is none at all: a curve is never made of
  different seeds' points.
* AUC: :math:`\frac{1}{x_{-1} - x_0} \int \bar y(x)\,dx` by the trapezoid rule over the common
  grid, the mean return over training (exact for piecewise-linear curves on that grid).
* Final return: the last ``eval/episode_return`` of each run, mean and std over seeds; best
  return: each run's highest ``eval/episode_return``, mean and std over seeds. A wide gap between
  the two says the policy fell back from where it was. Max of the mean evaluation: the highest
  across-seed mean ``eval/episode_return`` over the frames every run evaluated at (Tianshou's
  published metric, "max over training of the seed mean").
* Timings: the medians of every logged value of the group pooled; wall time: mean over runs.
* ``cos_to_natural``: each run's mean over the updates where it was measured, then mean over seeds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .runs import COS_KEYS, RunData

CSV_COLUMNS = [
    "env",
    "group",
    "n",
    "budget_frames",
    "final_return_mean",
    "final_return_std",
    "best_return_mean",
    "best_return_std",
    "max_mean_eval",
    "auc",
    "direction_ms_median",
    "update_ms_median",
    "sps_median",
    "wall_time_s_mean",
    "cos_to_natural_mean",
    "cos_to_natural_fisher_mean",
]


@dataclass
class MeanCurve:
    """Mean and std across seeds on the common grid; empty when the runs share no range."""

    grid: np.ndarray
    mean: np.ndarray
    std: np.ndarray

    def __len__(self) -> int:
        return len(self.grid)


@dataclass
class Group:
    env: str
    label: str
    runs: list[RunData]
    returns: MeanCurve  # over frames
    diagnostics: dict[str, MeanCurve] = field(default_factory=dict)  # COS_KEYS that some run has
    row: dict[str, Any] = field(default_factory=dict)  # the CSV_COLUMNS

    @property
    def budgets(self) -> list[float]:
        return sorted({r.budget for r in self.runs if math.isfinite(r.budget)})


def mean_std_curve(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray]) -> MeanCurve:
    """Mean and population std across runs on the union of their points inside the range all of them cover."""
    pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if len(x)]
    if not pairs:
        return MeanCurve(np.array([]), np.array([]), np.array([]))
    lo, hi = max(x[0] for x, _ in pairs), min(x[-1] for x, _ in pairs)
    grid = np.unique(np.concatenate([x for x, _ in pairs]))
    grid = grid[(grid >= lo) & (grid <= hi)]  # empty when lo > hi
    stack = np.array([np.interp(grid, x, y) for x, y in pairs]).reshape(len(pairs), len(grid))
    return MeanCurve(grid, stack.mean(axis=0), stack.std(axis=0))


def area_under_curve(grid: np.ndarray, mean: np.ndarray) -> float:
    """Trapezoid of the mean curve divided by the span: the average return over training."""
    if len(grid) == 0:
        return math.nan
    if len(grid) == 1 or grid[-1] == grid[0]:
        return float(mean[-1])
    return float(np.trapezoid(mean, grid) / (grid[-1] - grid[0]))


def nan_stat(values: Sequence[float], fn: Callable[[list[float]], Any]) -> float:
    """``fn`` of the finite values; nan when there are none."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(fn(vals)) if vals else math.nan


def eval_matrix(runs: Sequence[RunData]) -> np.ndarray:
    """``(runs, frames)``: each run's ``eval/episode_return`` at the frames where every run evaluated, in order."""
    evals = [dict(zip(r.evals.frames.tolist(), r.evals.values.tolist())) for r in runs]
    common = sorted(set.intersection(*map(set, evals))) if evals else []
    return np.array([[e[f] for f in common] for e in evals], dtype=float).reshape(len(evals), len(common))


def max_mean_eval(runs: Sequence[RunData]) -> float:
    """The highest across-seed mean evaluation over the frames at which every run evaluated; nan if none."""
    matrix = eval_matrix(runs)
    return float(matrix.mean(axis=0).max()) if matrix.size else math.nan


def group_sort_key(label: str) -> tuple[int, float, str]:
    """Numeric parameter values in numeric order, then the rest alphabetically."""
    value = label.split("=", 1)[1] if "=" in label else label
    try:
        return (0, float(value), label)
    except ValueError:
        return (1, 0.0, label)


def _budget_text(budgets: list[float]) -> str:
    return "/".join(f"{b:.0f}" for b in budgets) if budgets else ""


def summarise(runs: list[RunData]) -> list[Group]:
    """One :class:`Group` per (environment, group label), environments alphabetically."""
    members: dict[tuple[str, str], list[RunData]] = {}
    for r in runs:
        members.setdefault((r.env, r.group), []).append(r)
    groups = []
    for env, label in sorted(members, key=lambda k: (k[0], group_sort_key(k[1]))):
        rs = members[(env, label)]
        returns = mean_std_curve([r.curve.frames for r in rs], [r.curve.values for r in rs])
        diagnostics = {}
        for key in COS_KEYS:
            have = [r.diagnostics[key] for r in rs if key in r.diagnostics]
            if have:
                diagnostics[key] = mean_std_curve([c.frames for c in have], [c.values for c in have])
        group = Group(env, label, rs, returns, diagnostics)
        finals = [r.final_return for r in rs]
        cos = {
            key: nan_stat([nan_stat(r.diagnostics[key].values, np.mean) for r in rs if key in r.diagnostics], np.mean)
            for key in COS_KEYS
        }
        group.row = {
            "env": env,
            "group": label,
            "n": len(rs),
            "budget_frames": _budget_text(group.budgets),
            "final_return_mean": nan_stat(finals, np.mean),
            "final_return_std": nan_stat(finals, np.std),
            "best_return_mean": nan_stat([r.best_return for r in rs], np.mean),
            "best_return_std": nan_stat([r.best_return for r in rs], np.std),
            "max_mean_eval": max_mean_eval(rs),
            "auc": area_under_curve(returns.grid, returns.mean),
            "direction_ms_median": nan_stat([v for r in rs for v in r.direction_ms], np.median),
            "update_ms_median": nan_stat([v for r in rs for v in r.update_ms], np.median),
            "sps_median": nan_stat([v for r in rs for v in r.sps], np.median),
            "wall_time_s_mean": nan_stat([r.wall_time_s for r in rs], np.mean),
            "cos_to_natural_mean": cos[COS_KEYS[0]],
            "cos_to_natural_fisher_mean": cos[COS_KEYS[1]],
        }
        groups.append(group)
    return groups


def budget_warnings(groups: list[Group]) -> list[str]:
    """One line per group whose runs have different budgets (``trainer.total_frames``)."""
    lines = []
    for g in groups:
        if len(g.budgets) > 1:
            counts = ", ".join(f"{sum(r.budget == b for r in g.runs)} at {b:.0f}" for b in g.budgets)
            lines.append(
                f"{g.env} / {g.label}: runs with different budgets are mixed ({counts} frames); "
                "its final return and AUC mix them: compare one sweep, or one budget per experiment"
            )
    return lines
