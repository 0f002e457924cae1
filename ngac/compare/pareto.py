"""Return against update cost, per group and environment: which backends buy their return cheaply.

Each group (a backend, by default) is one point per environment: x = the median over its runs of
each run's median ``perf/update_ms`` (the whole update: critic and actor; for PPO all its epochs),
y = the mean over its runs of the final ``eval/episode_return``, with the across-run standard
deviation as a vertical bar and the ``curvature/direction_ms`` share noted where the group has one.
The groups on the Pareto front (no other group is both cheaper and better) are joined by a line.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from .runs import RunData


@dataclass
class Point:
    group: str
    update_ms: float
    direction_ms: float  # nan for agents without a curvature backend
    mean_return: float
    std_return: float
    runs: int


def _median_of_medians(series: list[list[float]]) -> float:
    per_run = [statistics.median(s) for s in series if s]
    return statistics.median(per_run) if per_run else math.nan


def points(runs: list[RunData]) -> dict[str, list[Point]]:
    """Per environment, one :class:`Point` per group that has a finite final return and update time."""
    out: dict[str, list[Point]] = {}
    for env in sorted({r.env for r in runs}):
        for group in sorted({r.group for r in runs if r.env == env}):
            mine = [r for r in runs if r.env == env and r.group == group and math.isfinite(r.final_return)]
            update_ms = _median_of_medians([r.update_ms for r in mine])
            if not mine or not math.isfinite(update_ms):
                continue
            finals = [r.final_return for r in mine]
            out.setdefault(env, []).append(
                Point(
                    group=group,
                    update_ms=update_ms,
                    direction_ms=_median_of_medians([r.direction_ms for r in mine]),
                    mean_return=statistics.fmean(finals),
                    std_return=statistics.pstdev(finals) if len(finals) > 1 else 0.0,
                    runs=len(mine),
                )
            )
    return out


def front(pts: list[Point]) -> list[Point]:
    """The non-dominated points (cheaper or better than every other), sorted by update time."""
    best = -math.inf
    keep = []
    for p in sorted(pts, key=lambda p: (p.update_ms, -p.mean_return)):
        if p.mean_return > best:
            keep.append(p)
            best = p.mean_return
    return keep


def plot_pareto(runs: list[RunData], path: Path) -> Path | None:
    """Write the figure (one panel per environment); None when no group has both numbers."""
    per_env = points(runs)
    if not per_env:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = sorted(per_env)
    fig, axes = plt.subplots(1, len(envs), figsize=(5.5 * len(envs), 4.5), squeeze=False)
    for ax, env in zip(axes[0], envs):
        pts = per_env[env]
        for p in pts:
            ax.errorbar(p.update_ms, p.mean_return, yerr=p.std_return, fmt="o", capsize=3)
            note = (
                f"{p.group} ({p.runs})"
                if math.isnan(p.direction_ms)
                else f"{p.group} ({p.runs}; d {p.direction_ms:.0f} ms)"
            )
            ax.annotate(note, (p.update_ms, p.mean_return), textcoords="offset points", xytext=(4, 4), fontsize=7)
        f = front(pts)
        ax.plot([p.update_ms for p in f], [p.mean_return for p in f], "k--", lw=0.8, label="Pareto front")
        ax.set_xscale("log")
        ax.set_xlabel("update ms (median per run, median over runs)")
        ax.set_ylabel("final eval return (mean ± std over runs)")
        ax.set_title(env)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
