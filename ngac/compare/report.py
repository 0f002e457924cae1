"""``compare_runs``: read a run set, summarise it per environment and group, write the figures and tables."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ngac.mlflow_utils import resolve_tracking_uri

from . import plots
from .estimates import estimate
from .intervals import DEFAULT_REPS, DEFAULT_SEED
from .pareto import plot_pareto
from .runs import COS_KEYS, EVAL_KEY, read_run
from .stats import budget_warnings, summarise
from .store import probe, select_runs
from .tables import interval_sections, markdown_tables, write_csv, write_estimates

ARTIFACT_DIR = "compare"


def describe_grouping(group_by: str) -> str:
    if group_by == "algo":
        return "tag algo (backend where algo is absent)"
    if group_by.startswith("param:"):
        return f"param {group_by[len('param:') :]}"
    return f"tag {group_by}"


def compare_runs(
    tracking_uri: str | None,
    selector: str,
    out_dir: str | Path,
    group_by: str = "algo",
    parent_run_id: str | None = None,
    reps: int = DEFAULT_REPS,
    seed: int = DEFAULT_SEED,
) -> dict[str, Any]:
    """Learning curves (``learning_curves.png``), diagnostics (``curvature_diagnostics.png``) and a summary.

    The summary is ``summary.md`` (one table per environment, then the interval estimates) and
    ``summary.csv`` (a row per environment and group, with its intervals). The interval estimates
    (:mod:`.estimates`, ``reps`` bootstrap samples seeded by ``seed``) also give ``intervals.png``,
    ``performance_profiles.png``, ``aggregate.csv`` (when an environment is normalised) and
    ``improvement.csv`` (when there are two groups). ``curvature_diagnostics.png`` is written only
    when some run logged ``curvature/cos_to_natural*``. Returns the paths (``png``,
    ``diagnostics_png`` or None, ``intervals_png``, ``profiles_png`` or None, ``markdown``, ``csv``,
    ``estimate_csvs``), ``rows`` (the CSV rows), ``estimates``, ``table``, ``warnings`` (one line per
    group that mixes budgets), ``matched`` (``"experiment"`` or ``"sweep"``), ``selector``,
    ``tracking_uri``, ``n_runs``, ``group_by`` and ``envs``. Raises a one-line ``ValueError`` when
    the store cannot be reached or nothing matches. With ``parent_run_id`` the files are logged to
    that run under ``compare/``.
    """
    if not selector:
        raise ValueError("give an experiment name or a sweep name to compare")
    if group_by.startswith("param:") and not group_by[len("param:") :]:
        raise ValueError("--group-by param: needs a param name, e.g. param:curvature.damping")
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < 1:
        raise ValueError(f"--reps={reps!r} is invalid; valid choices: an integer >= 1 (default {DEFAULT_REPS})")
    uri = resolve_tracking_uri(tracking_uri)
    client = probe(uri)
    found, matched = select_runs(client, selector)
    runs = [read_run(client, r, group_by) for r in found]
    groups = summarise(runs)
    est = estimate(groups, reps=reps, seed=seed)
    warnings = budget_warnings(groups) + status_warnings(found) + grouping_warnings(runs, group_by)
    envs = sorted({r.env for r in runs})

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    title = f"{selector} ({len(runs)} runs, by {group_by})"
    png = plots.save(plots.learning_curves(groups, title), out / "learning_curves.png")
    diag_fig = plots.diagnostics(groups, title)
    diag_png = plots.save(diag_fig, out / "curvature_diagnostics.png") if diag_fig is not None else None
    intervals_png = plots.save(plots.intervals(groups, title), out / "intervals.png")
    profiles_fig = plots.profiles(est, title)
    profiles_png = plots.save(profiles_fig, out / "performance_profiles.png") if profiles_fig is not None else None
    pareto_png = plot_pareto(runs, out / "pareto.png")

    table = markdown_tables(groups, group_header=group_by)
    estimate_csvs = write_estimates(est, out)
    curve_keys = sorted({r.curve_key for r in runs if r.curve_key})
    how = "experiment name" if matched == "experiment" else "sweep tag"
    header = [
        f"# ngac compare: {selector}",
        "",
        f"- selector: `{selector}` (matched {how})",
        f"- tracking URI: `{uri}`",
        f"- runs: {len(runs)} in {len(groups)} groups, grouped by {describe_grouping(group_by)} within each environment",
        f"- environments: {', '.join(envs)}",
        f"- run status: {status_counts(found)}",
        f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        (
            f"- curves: {', '.join(curve_keys) or 'none'}; final return: last `{EVAL_KEY}` per run; "
            "std over seeds with ddof=0; AUC: trapezoid of the mean curve over the frames every seed covers / "
            "their span; frames: the runs' budgets (trainer.total_frames)"
        ),
        f"- curvature diagnostics ({', '.join(COS_KEYS)}): " + (f"`{diag_png.name}`" if diag_png else "none logged"),
        f"- intervals: `{intervals_png.name}`"
        + (f", performance profiles: `{profiles_png.name}`" if profiles_png else "")
        + (f", return against update ms: `{pareto_png.name}`" if pareto_png else "")
        + "; tables below, and in "
        + ", ".join(f"`{p.name}`" for p in [out / "summary.csv", *estimate_csvs]),
        "",
        *(f"> warning: {w}" for w in warnings),
    ]
    md = out / "summary.md"
    sections = interval_sections(groups, est, group_header=group_by)
    md.write_text("\n".join(header).rstrip("\n") + "\n\n" + table + "\n\n" + sections + "\n")
    csv_path = out / "summary.csv"
    write_csv(groups, csv_path)

    if parent_run_id:
        for path in (png, diag_png, intervals_png, profiles_png, pareto_png, md, csv_path, *estimate_csvs):
            if path is not None:
                client.log_artifact(parent_run_id, str(path), ARTIFACT_DIR)

    return {
        "selector": selector,
        "matched": matched,
        "tracking_uri": uri,
        "group_by": group_by,
        "n_runs": len(runs),
        "envs": envs,
        "rows": [g.row for g in groups],
        "estimates": est,
        "table": table,
        "warnings": warnings,
        "png": png,
        "diagnostics_png": diag_png,
        "intervals_png": intervals_png,
        "profiles_png": profiles_png,
        "pareto_png": pareto_png,
        "estimate_csvs": estimate_csvs,
        "markdown": md,
        "csv": csv_path,
        "out_dir": out,
    }


def status_counts(found: list) -> str:
    """``"8 FINISHED, 1 FAILED"``: the runs used, by MLflow status."""
    counts = Counter(r.info.status for r in found)
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def status_warnings(found: list) -> list[str]:
    """One line when runs that did not finish are included (their last evaluation stands as final)."""
    counts = Counter(r.info.status for r in found if r.info.status != "FINISHED")
    if not counts:
        return []
    what = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    return [
        f"{sum(counts.values())} of {len(found)} runs did not finish ({what}; RUNNING: still training, or killed "
        f"without a status) and are included with their last evaluation as final"
    ]


def grouping_warnings(runs: list, group_by: str) -> list[str]:
    """One line when ``--group-by`` names a tag or param that some or all runs lack."""
    missing = [r for r in runs if r.group == "(none)" or r.group.endswith("=(none)")]
    if not missing:
        return []
    if len(missing) == len(runs):
        return [f"--group-by {group_by} matches no run: all {len(runs)} runs are in one group '(none)'"]
    return [f"--group-by {group_by}: {len(missing)} of {len(runs)} runs lack it and are grouped as '(none)'"]
