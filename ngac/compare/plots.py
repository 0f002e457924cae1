"""The figures: return curves (one row per environment) and the curvature diagnostics, when logged.

Each environment gets its own row of panels, so tasks with different return scales never share
axes. A group's colour is the same in every panel.

* Return against frames: the mean over seeds with a +-std band where every seed covers the same
  frames (:func:`ngac.compare.stats.mean_std_curve`); where the seeds share no range, each run is
  drawn on its own. A run with one point is a marker, never a line.
* Return against wall-clock: one line per run. Seeds do not log at the same seconds, and a mean
  over them would join different runs' points into a curve that no run followed.
* ``curvature/cos_to_natural`` and ``curvature/cos_to_natural_fisher`` against frames, as the
  returns; the figure is made only when some run logged them.
* Interval estimates (:mod:`.estimates`): per environment, each group's IQM and mean with their 95% CIs,
  for the final evaluation and for the maximum over training; and the performance profiles, drawn by
  ``rliable.plot_utils``.

matplotlib is imported when a figure is drawn: it costs 0.7 s, and ``ngac train`` imports this
package through the sweep callback.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .runs import COS_KEYS, Curve
from .stats import Group, MeanCurve

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .estimates import Estimates

COS_TITLES = {
    COS_KEYS[0]: "cosine to the natural gradient",
    COS_KEYS[1]: "cosine to the natural gradient, Fisher norm",
}
ROW_HEIGHT = 4.2


def _figure(n_rows: int, n_cols: int, width: float) -> tuple[Figure, np.ndarray]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, 0.8 + ROW_HEIGHT * n_rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.asarray(fig.subplots(n_rows, n_cols, squeeze=False))
    return fig, axes


def _colours(groups: list[Group]) -> dict[str, str]:
    labels = list(dict.fromkeys(g.label for g in groups))
    return {label: f"C{i % 10}" for i, label in enumerate(labels)}


def _draw_runs(ax: Axes, curves: list[tuple[np.ndarray, np.ndarray]], colour: str, label: str) -> None:
    """Each run on its own: a thin line, or a marker where the run has one point."""
    for x, y in curves:
        if len(x) == 0:
            continue
        style = {"marker": "o", "linestyle": "none"} if len(x) == 1 else {"linewidth": 1.0, "alpha": 0.8}
        ax.plot(x, y, color=colour, label=label, **style)
        label = "_nolegend_"


def _draw_group(ax: Axes, mean: MeanCurve, runs: list[Curve], colour: str, label: str) -> None:
    """The mean +- std over seeds where they share at least two frames; else each run on its own."""
    if len(mean) >= 2:
        ax.plot(mean.grid, mean.mean, color=colour, label=label)
        ax.fill_between(mean.grid, mean.mean - mean.std, mean.mean + mean.std, color=colour, alpha=0.2, linewidth=0)
    else:
        _draw_runs(ax, [(c.frames, c.values) for c in runs], colour, label)


def learning_curves(groups: list[Group], title: str) -> Figure:
    """Per environment: return against frames (mean +- std), and against wall-clock (per run)."""
    envs = list(dict.fromkeys(g.env for g in groups)) or ["(no runs)"]
    fig, axes = _figure(len(envs), 2, 13)
    colours = _colours(groups)
    for (ax_f, ax_s), env in zip(axes, envs, strict=True):
        for g in (g for g in groups if g.env == env):
            label = f"{g.label} (n={len(g.runs)})"
            _draw_group(ax_f, g.returns, [r.curve for r in g.runs], colours[g.label], label)
            _draw_runs(ax_s, [(r.curve.seconds, r.curve.values) for r in g.runs], colours[g.label], label)
        ax_f.set(title=f"{env}: return against frames", xlabel="environment frames",
                 ylabel="episode return (mean ± std over seeds)")  # fmt: skip
        ax_s.set(title=f"{env}: return against wall-clock, one line per run",
                 xlabel="wall-clock time since run start (s)", ylabel="episode return")  # fmt: skip
        for ax in (ax_f, ax_s):
            ax.grid(True, alpha=0.3)
        if ax_f.lines:
            ax_f.legend(loc="best", fontsize="small")
    fig.suptitle(title)
    return fig


def diagnostics(groups: list[Group], title: str) -> Figure | None:
    """Per environment with diagnostics: each cosine against frames, one colour per group; None if no run has any."""
    envs = list(dict.fromkeys(g.env for g in groups if g.diagnostics))
    if not envs:
        return None
    fig, axes = _figure(len(envs), len(COS_KEYS), 13)
    colours = _colours(groups)
    for row, env in zip(axes, envs, strict=True):
        for ax, key in zip(row, COS_KEYS, strict=True):
            for g in (g for g in groups if g.env == env and key in g.diagnostics):
                runs = [r.diagnostics[key] for r in g.runs if key in r.diagnostics]
                _draw_group(ax, g.diagnostics[key], runs, colours[g.label], f"{g.label} (n={len(runs)})")
            ax.set(title=f"{env}: {COS_TITLES[key]}", xlabel="environment frames",
                   ylabel=f"{key} (mean ± std over seeds)")  # fmt: skip
            ax.grid(True, alpha=0.3)
            if ax.lines:
                ax.legend(loc="best", fontsize="small")
            else:
                ax.text(0.5, 0.5, f"no run logged {key}", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(title)
    return fig


INTERVAL_PANELS = (
    ("final evaluation", "final_return_iqm", "final_return_mean", "final_return_mean"),
    ("max over training of the seed IQM / mean", "max_iqm_eval", "max_mean_eval", "max_mean_eval"),
)


def intervals(groups: list[Group], title: str) -> Figure:
    """Per environment, one row: the final evaluation and the max over training, IQM (thick) and mean (thin)."""
    envs = list(dict.fromkeys(g.env for g in groups)) or ["(no runs)"]
    fig, axes = _figure(len(envs), 2, 13)
    colours = _colours(groups)
    for row, env in zip(axes, envs, strict=True):
        members = [g for g in groups if g.env == env]
        for ax, (panel, iqm, mean_ci, mean_point) in zip(row, INTERVAL_PANELS, strict=True):
            for y, g in enumerate(members):
                r = g.row
                for offset, name, point, width, marker in (
                    (0.12, iqm, iqm, 6, "o"),
                    (-0.12, mean_ci, mean_point, 2, "x"),
                ):
                    lo, hi = r.get(f"{name}_lo", np.nan), r.get(f"{name}_hi", np.nan)
                    if np.isfinite(lo) and np.isfinite(hi):
                        ax.plot([lo, hi], [y + offset] * 2, color=colours[g.label], linewidth=width, alpha=0.6)
                    ax.plot([r.get(point, np.nan)], [y + offset], color="k", marker=marker, linestyle="none")
            ax.set_yticks(range(len(members)), [f"{g.label} (n={len(g.runs)})" for g in members])
            ax.set_ylim(len(members) - 0.5, -0.5)  # the first group on top
            ax.set(title=f"{env}: {panel}", xlabel="eval/episode_return: IQM (o, thick) and mean (x, thin), 95% CI")
            ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle(title)
    return fig


def profiles(est: Estimates, title: str) -> Figure | None:
    """One panel per :class:`.estimates.Profile` (per environment, then across normalised ones); None if none."""
    if not est.profiles:
        return None
    from rliable import plot_utils

    n_cols = min(3, len(est.profiles))
    n_rows = -(-len(est.profiles) // n_cols)
    fig, axes = _figure(n_rows, n_cols, 5.5 * n_cols)
    labels = list(dict.fromkeys(label for p in est.profiles for label in p.curves))
    colours = {label: f"C{i % 10}" for i, label in enumerate(labels)}
    for ax, profile in zip(axes.ravel(), est.profiles, strict=False):
        plot_utils.plot_performance_profiles(
            {k: v[0] for k, v in profile.curves.items()}, profile.tau,
            performance_profile_cis={k: (v[1], v[2]) for k, v in profile.curves.items() if np.isfinite(v[1]).all()},
            ax=ax, colors={k: colours[k] for k in profile.curves}, xlabel=profile.xlabel,
            ylabel="fraction of runs above", labelsize="medium", ticklabelsize="small", legend=True, legendsize="small",
        )  # fmt: skip
        ax.set_title(profile.title)
    for ax in axes.ravel()[len(est.profiles) :]:
        ax.set_visible(False)
    fig.suptitle(f"{title}: performance profiles, 95% CIs")
    return fig


def save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=100)
    return path
