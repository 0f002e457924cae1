"""``ngac compare``: learning curves and a summary table for a set of MLflow runs.

The runs are selected by an experiment name, or else by a sweep name (tag ``sweep``), and read
only through the MLflow tracking API (``MlflowClient``), so a local store and a tracking server
behave the same. Parent runs of a sweep (tag ``ngac.role=sweep_parent``) are skipped.

Runs are grouped by a tag (default ``algo``, falling back to ``backend`` where ``algo`` is absent)
or by a param (``param:curvature.damping``); the runs of one group are its seeds. For each group:

* learning curves: each run's ``charts/episode_return`` history (``eval/episode_return`` when no
  training episode finished) is linearly interpolated onto a common grid, the union of the runs'
  own points within the range that every run of the group covers; mean and a +-std band across
  seeds, against environment frames and against wall-clock seconds since the run started;
* final return: the last ``eval/episode_return`` of each run, mean +- std over seeds;
* AUC: the trapezoid integral of the mean curve over frames divided by the frame span (the
  average return over training);
* update ms: median of ``curvature/update_ms``; steps/s: median of ``charts/sps`` (all the
  group's logged values pooled); wall time: mean of ``end_time - start_time``.

Standard deviations are population standard deviations (``ddof=0``) over seeds.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from ngac.mlflow_utils import fail_fast as _fail_fast
from ngac.mlflow_utils import resolve_tracking_uri

RETURN_KEY = "charts/episode_return"
EVAL_KEY = "eval/episode_return"
UPDATE_MS_KEY = "curvature/update_ms"
SPS_KEY = "charts/sps"
PARENT_ROLE = "sweep_parent"
ARTIFACT_DIR = "compare"
MAX_LISTED = 10
PAGE = 1000

CSV_COLUMNS = [
    "group",
    "n",
    "final_return_mean",
    "final_return_std",
    "auc",
    "update_ms_median",
    "sps_median",
    "wall_time_s_mean",
    "envs",
]


@dataclass
class RunData:
    run_id: str
    group: str
    env: str
    curve_frames: np.ndarray  # steps (environment frames)
    curve_seconds: np.ndarray  # seconds since run start
    curve_values: np.ndarray
    curve_key: str | None
    final_return: float
    update_ms: list[float] = field(default_factory=list)
    sps: list[float] = field(default_factory=list)
    wall_time_s: float = math.nan


# ------------------------------------------------------------------ connecting
# ngac.mlflow_utils, not ngac.agents.tracking: that one pulls in Lightning (seconds per call).


def _probe(uri: str) -> None:
    """One fast call; a one-line ``ValueError`` if the store cannot be reached."""
    from mlflow import MlflowClient

    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        path = uri[len("sqlite:///") :] if uri.startswith("sqlite:///") else parsed.path
        if path and path != ":memory:" and not Path(path).exists():
            raise ValueError(
                f"no MLflow store at {uri!r} ({path} does not exist); pass --tracking-uri or set MLFLOW_TRACKING_URI"
            )
    elif parsed.scheme in ("", "file") and not Path(parsed.path or uri).exists():
        raise ValueError(f"no MLflow store at {uri!r}; pass --tracking-uri or set MLFLOW_TRACKING_URI")
    with _fail_fast():
        try:
            MlflowClient(uri).search_experiments(max_results=1)
        except Exception as exc:  # noqa: BLE001 - any failure here means "unreachable"
            raise ValueError(f"tracking URI {uri!r} is unreachable ({_reason(exc)})") from None


def _reason(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    for needle, short in (
        ("Connection refused", "connection refused"),
        ("Name or service not known", "unknown host"),
        ("timed out", "timed out"),
        ("Read timed out", "timed out"),
    ):
        if needle in text:
            return short
    return text[:160] if text else type(exc).__name__


def _all_experiment_ids(client) -> list[str]:
    ids, token = [], None
    while True:
        page = client.search_experiments(max_results=PAGE, page_token=token)
        ids += [e.experiment_id for e in page]
        token = page.token
        if not token:
            return ids


def _search(client, experiment_ids: list[str], filter_string: str = "", limit: int | None = None) -> list:
    runs, token = [], None
    while experiment_ids:
        page = client.search_runs(experiment_ids, filter_string, max_results=PAGE, page_token=token)
        runs += list(page)
        token = page.token
        if not token or (limit is not None and len(runs) >= limit):
            break
    return runs


def _quote(value: str) -> str:
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"selector {value!r} contains both quote characters; it cannot be searched for")


def _no_match(client, selector: str) -> ValueError:
    experiments = [e.name for e in client.search_experiments(max_results=PAGE)]
    ids = _all_experiment_ids(client)
    sweeps: list[str] = []
    for r in _search(client, ids, "tags.sweep LIKE '%'", limit=PAGE):
        s = r.data.tags.get("sweep")
        if s and s not in sweeps:
            sweeps.append(s)
    exp_list = ", ".join(experiments[:MAX_LISTED]) or "none"
    sweep_list = ", ".join(sorted(sweeps)[:MAX_LISTED]) or "none"
    return ValueError(
        f"no runs match {selector!r} (neither an experiment name nor a sweep tag); "
        f"experiments: {exp_list}; sweeps: {sweep_list}"
    )


def select_runs(client, selector: str) -> tuple[list, str]:
    """Runs of experiment ``selector``, else runs tagged ``sweep=selector``; parent runs left out."""

    def keep(runs):
        return [r for r in runs if r.data.tags.get("ngac.role") != PARENT_ROLE]

    exp = client.get_experiment_by_name(selector)
    if exp is not None:
        runs = keep(_search(client, [exp.experiment_id]))
        if runs:
            return runs, "experiment"
    runs = keep(_search(client, _all_experiment_ids(client), f"tags.sweep = {_quote(selector)}"))
    if runs:
        return runs, "sweep"
    raise _no_match(client, selector)


# ------------------------------------------------------------------ reading
def _group_of(run, group_by: str) -> str:
    tags, params = run.data.tags, run.data.params
    if group_by.startswith("param:"):
        name = group_by[len("param:") :]
        return f"{name}={params.get(name, '(none)')}"
    if group_by == "algo":
        return tags.get("algo") or tags.get("backend") or "(none)"
    return tags.get(group_by) or "(none)"


def _history(client, run_id: str, key: str) -> list:
    points = sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
    return [m for m in points if m.value is not None and math.isfinite(m.value)]


def _curve(points: list, start_ms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    by_step: dict[int, Any] = {}
    for m in points:  # sorted by (step, timestamp): the last point of a step wins (e.g. after a resume)
        by_step[m.step] = m
    steps = sorted(by_step)
    frames = np.array(steps, dtype=float)
    values = np.array([by_step[s].value for s in steps], dtype=float)
    seconds = np.array([(by_step[s].timestamp - start_ms) / 1000.0 for s in steps], dtype=float)
    # Wall-clock must increase for interpolation; a resumed run can log a later step earlier.
    seconds = np.maximum.accumulate(seconds) if len(seconds) else seconds
    return frames, seconds, values


def read_run(client, run, group_by: str) -> RunData:
    info = run.info
    curve_key, points = RETURN_KEY, _history(client, info.run_id, RETURN_KEY)
    evals = _history(client, info.run_id, EVAL_KEY)
    if not points:
        curve_key, points = (EVAL_KEY, evals) if evals else (None, [])
    frames, seconds, values = _curve(points, info.start_time or 0)
    final = evals[-1].value if evals else math.nan
    wall = (info.end_time - info.start_time) / 1000.0 if info.end_time and info.start_time else math.nan
    return RunData(
        run_id=info.run_id,
        group=_group_of(run, group_by),
        env=run.data.tags.get("env") or run.data.params.get("env.id") or "?",
        curve_frames=frames,
        curve_seconds=seconds,
        curve_values=values,
        curve_key=curve_key,
        final_return=float(final),
        update_ms=[m.value for m in _history(client, info.run_id, UPDATE_MS_KEY)],
        sps=[m.value for m in _history(client, info.run_id, SPS_KEY)],
        wall_time_s=wall,
    )


# ------------------------------------------------------------------ statistics
def mean_std_curve(xs: list[np.ndarray], ys: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and std across runs on a common grid.

    The grid is the union of the runs' own x values within the range every run covers, so for
    piecewise-linear curves the trapezoid of the mean is exact. If the runs do not overlap, the
    union of all their points is used and each run counts only inside its own range.
    """
    pairs = [(x, y) for x, y in zip(xs, ys) if len(x)]
    if not pairs:
        return np.array([]), np.array([]), np.array([])
    lo, hi = max(x[0] for x, _ in pairs), min(x[-1] for x, _ in pairs)
    grid = np.unique(np.concatenate([x for x, _ in pairs]))
    if lo <= hi:
        grid = grid[(grid >= lo) & (grid <= hi)]
    stack = np.full((len(pairs), len(grid)), np.nan)
    for i, (x, y) in enumerate(pairs):
        inside = (grid >= x[0]) & (grid <= x[-1])
        stack[i, inside] = np.interp(grid[inside], x, y)
    with np.errstate(all="ignore"):
        return grid, np.nanmean(stack, axis=0), np.nanstd(stack, axis=0)


def area_under_curve(grid: np.ndarray, mean: np.ndarray) -> float:
    """Trapezoid of the mean curve divided by the span: the average return over training."""
    if len(grid) == 0:
        return math.nan
    if len(grid) == 1 or grid[-1] == grid[0]:
        return float(mean[-1])
    return float(np.trapezoid(mean, grid) / (grid[-1] - grid[0]))


def _nan_stat(values: list[float], fn) -> float:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(fn(vals)) if vals else math.nan


def _group_sort_key(label: str):
    value = label.split("=", 1)[1] if "=" in label else label
    try:
        return (0, float(value), label)
    except ValueError:
        return (1, 0.0, label)


def summarise(runs: list[RunData]) -> tuple[list[dict[str, Any]], dict[str, dict[str, np.ndarray]]]:
    groups: dict[str, list[RunData]] = {}
    for r in runs:
        groups.setdefault(r.group, []).append(r)
    rows, curves = [], {}
    for label in sorted(groups, key=_group_sort_key):
        members = groups[label]
        f_grid, f_mean, f_std = mean_std_curve([r.curve_frames for r in members], [r.curve_values for r in members])
        s_grid, s_mean, s_std = mean_std_curve([r.curve_seconds for r in members], [r.curve_values for r in members])
        curves[label] = {
            "frames": f_grid, "frames_mean": f_mean, "frames_std": f_std,
            "seconds": s_grid, "seconds_mean": s_mean, "seconds_std": s_std,
            "n": np.array(len(members)),
        }  # fmt: skip
        finals = [r.final_return for r in members]
        rows.append(
            {
                "group": label,
                "n": len(members),
                "final_return_mean": _nan_stat(finals, np.mean),
                "final_return_std": _nan_stat(finals, np.std),
                "auc": area_under_curve(f_grid, f_mean),
                "update_ms_median": _nan_stat([v for r in members for v in r.update_ms], np.median),
                "sps_median": _nan_stat([v for r in members for v in r.sps], np.median),
                "wall_time_s_mean": _nan_stat([r.wall_time_s for r in members], np.mean),
                "envs": ",".join(sorted({r.env for r in members})),
            }
        )
    return rows, curves


# ------------------------------------------------------------------ output
def _fmt(value: float, digits: int = 2) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def markdown_table(rows: list[dict[str, Any]], group_header: str = "group") -> str:
    lines = [
        f"| {group_header} | runs | final return (mean ± std) | AUC (mean return over training) "
        "| update ms (median) | steps/s (median) | wall time s (mean) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        final = (
            f"{_fmt(r['final_return_mean'])} ± {_fmt(r['final_return_std'])}"
            if math.isfinite(r["final_return_mean"])
            else "–"
        )
        lines.append(
            f"| {r['group']} | {r['n']} | {final} | {_fmt(r['auc'])} | {_fmt(r['update_ms_median'], 3)} "
            f"| {_fmt(r['sps_median'], 0)} | {_fmt(r['wall_time_s_mean'], 1)} |"
        )
    return "\n".join(lines)


def _plot(curves: dict[str, dict[str, np.ndarray]], title: str, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 5), layout="constrained")
    FigureCanvasAgg(fig)
    ax_f, ax_s = fig.subplots(1, 2)
    for i, (label, c) in enumerate(curves.items()):
        color = f"C{i % 10}"
        for ax, x, m, s in ((ax_f, "frames", "frames_mean", "frames_std"), (ax_s, "seconds", "seconds_mean", "seconds_std")):
            if len(c[x]) == 0:
                continue
            marker = "o" if len(c[x]) < 3 else None
            ax.plot(c[x], c[m], color=color, marker=marker, label=f"{label} (n={int(c['n'])})")
            ax.fill_between(c[x], c[m] - c[s], c[m] + c[s], color=color, alpha=0.2, linewidth=0)
    ax_f.set_xlabel("environment frames")
    ax_s.set_xlabel("wall-clock time since run start (s)")
    for ax in (ax_f, ax_s):
        ax.set_ylabel("episode return (mean ± std over seeds)")
        ax.grid(True, alpha=0.3)
    if curves:
        ax_f.legend(loc="best", fontsize="small")
    fig.suptitle(title)
    fig.savefig(path, dpi=100)


def compare_runs(
    tracking_uri: str | None,
    selector: str,
    out_dir: str | Path,
    group_by: str = "algo",
    parent_run_id: str | None = None,
) -> dict[str, Any]:
    """Learning curves (``learning_curves.png``) and a summary (``summary.md``, ``summary.csv``).

    Returns ``{"png", "markdown", "csv"}`` paths, ``rows`` (one dict per group, the CSV columns),
    ``matched`` (``"experiment"`` or ``"sweep"``), ``selector``, ``tracking_uri``, ``n_runs``,
    ``group_by`` and ``envs``. Raises a one-line ``ValueError`` when the store cannot be reached or
    nothing matches. With ``parent_run_id`` the three files are logged to that run under ``compare/``.
    """
    from mlflow import MlflowClient

    if not selector:
        raise ValueError("give an experiment name or a sweep name to compare")
    if group_by.startswith("param:") and not group_by[len("param:") :]:
        raise ValueError("--group-by param: needs a param name, e.g. param:curvature.damping")
    uri = resolve_tracking_uri(tracking_uri)
    _probe(uri)
    client = MlflowClient(uri)
    found, matched = select_runs(client, selector)
    found.sort(key=lambda r: (r.info.start_time or 0, r.info.run_id))
    runs = [read_run(client, r, group_by) for r in found]
    rows, curves = summarise(runs)
    envs = sorted({r.env for r in runs})

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    png, md, csv_path = out / "learning_curves.png", out / "summary.md", out / "summary.csv"
    how = "experiment name" if matched == "experiment" else "sweep tag"
    group_desc = "tag algo (backend where algo is absent)" if group_by == "algo" else (
        f"param {group_by[len('param:'):]}" if group_by.startswith("param:") else f"tag {group_by}"
    )
    _plot(curves, f"{', '.join(envs)} — {selector} ({len(runs)} runs, by {group_by})", png)

    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    curve_keys = sorted({r.curve_key for r in runs if r.curve_key})
    header = [
        f"# ngac compare: {selector}",
        "",
        f"- selector: `{selector}` (matched {how})",
        f"- tracking URI: `{uri}`",
        f"- runs: {len(runs)} in {len(rows)} groups, grouped by {group_desc}",
        f"- environments: {', '.join(envs)}",
        f"- date: {now}",
        f"- curves: {', '.join(curve_keys) or 'none'}; final return: last `{EVAL_KEY}` per run; "
        "std over seeds with ddof=0; AUC: trapezoid of the mean curve over frames / frame span",
        "",
    ]
    table = markdown_table(rows, group_header=group_by)
    md.write_text("\n".join(header) + "\n" + table + "\n")
    with open(csv_path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row[k] for k in CSV_COLUMNS})

    if parent_run_id:
        for path in (png, md, csv_path):
            client.log_artifact(parent_run_id, str(path), ARTIFACT_DIR)

    return {
        "selector": selector,
        "matched": matched,
        "tracking_uri": uri,
        "group_by": group_by,
        "n_runs": len(runs),
        "envs": envs,
        "rows": rows,
        "table": table,
        "png": png,
        "markdown": md,
        "csv": csv_path,
        "out_dir": out,
    }


# ------------------------------------------------------------------ CLI
class _ArgError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of argparse's usage + exit
        raise _ArgError(message)


def _safe_dirname(selector: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in selector) or "runs"


def main(argv: list[str]) -> int:
    parser = _Parser(
        prog="ngac compare",
        description="Learning curves and a summary table for the MLflow runs of an experiment or a sweep.",
    )
    parser.add_argument("selector", metavar="EXPERIMENT_OR_SWEEP", help="an experiment name, else a sweep name (tag sweep)")
    parser.add_argument("--out", default=None, help="output folder (default compare/<selector>)")
    parser.add_argument("--tracking-uri", default=None, help="default $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db")
    parser.add_argument("--group-by", default="algo", help="a tag (default algo, else backend) or param:<name>")
    parser.add_argument("--log-to-run", default=None, metavar="RUN_ID", help="log the outputs to this run under compare/")
    try:
        args = parser.parse_args(argv)
    except _ArgError as exc:
        print(f"ngac: error: {exc}", file=sys.stderr)
        return 2
    out = args.out or os.path.join("compare", _safe_dirname(args.selector))
    try:
        result = compare_runs(args.tracking_uri, args.selector, out, group_by=args.group_by, parent_run_id=args.log_to_run)
    except ValueError as exc:
        message = " ".join(str(exc).split())
        print(f"ngac: error: {message}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - e.g. --log-to-run names no run
        message = " ".join((str(exc) or type(exc).__name__).split())[:300]
        print(f"ngac: error: {type(exc).__name__}: {message}", file=sys.stderr)
        return 2
    print(f"{result['n_runs']} runs of {args.selector!r} (matched {result['matched']}) at {result['tracking_uri']}")
    print()
    print(result["table"])
    print()
    for key in ("png", "markdown", "csv"):
        print(f"{key}: {result[key]}")
    if args.log_to_run:
        print(f"logged to run {args.log_to_run} under {ARTIFACT_DIR}/")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
