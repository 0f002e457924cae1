"""The summary as text: one Markdown table per environment, and one CSV with a row per (environment, group).

Then the interval estimates (:mod:`.estimates`): a table of intervals per environment and group, the aggregate
over normalised environments and the probability of improvement of each pair, in Markdown and in CSV.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .estimates import ACROSS, AGGREGATE_COLUMNS, IMPROVEMENT_COLUMNS, INTERVAL_COLUMNS, Estimates
from .intervals import CONFIDENCE, Interval
from .stats import CSV_COLUMNS, Group


def fmt(value: float, digits: int = 2) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def markdown_tables(groups: list[Group], group_header: str = "group") -> str:
    """One block per environment: a ``## <env>`` heading and its table.

    The two ``cos to natural`` columns appear in an environment's table only when one of its runs
    logged them.
    """
    blocks = []
    for env in dict.fromkeys(g.env for g in groups):
        rows = [g.row for g in groups if g.env == env]
        cos = any(
            math.isfinite(r["cos_to_natural_mean"]) or math.isfinite(r["cos_to_natural_fisher_mean"]) for r in rows
        )
        head = (
            f"| {group_header} | runs | frames | final return (mean ± std) | best eval return (mean ± std) "
            "| AUC (mean return over training) | direction ms (median) | update ms (median) | steps/s (median) | wall time s (mean) |"
        )
        rule = "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        if cos:
            head += " cos to natural (mean) | same, Fisher norm |"
            rule += "---:|---:|"
        lines = [f"## {env}", "", head, rule]
        for r in rows:
            final, best = _mean_std(r, "final_return"), _mean_std(r, "best_return")
            line = (
                f"| {r['group']} | {r['n']} | {r['budget_frames'] or '–'} | {final} | {best} | {fmt(r['auc'])} "
                f"| {fmt(r['direction_ms_median'], 3)} | {fmt(r['update_ms_median'], 3)} | {fmt(r['sps_median'], 0)} "
                f"| {fmt(r['wall_time_s_mean'], 1)} |"
            )
            if cos:
                line += f" {fmt(r['cos_to_natural_mean'], 3)} | {fmt(r['cos_to_natural_fisher_mean'], 3)} |"
            lines.append(line)
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _mean_std(row: dict, name: str) -> str:
    mean = row[f"{name}_mean"]
    return f"{fmt(mean)} ± {fmt(row[f'{name}_std'])}" if math.isfinite(mean) else "–"


def write_csv(groups: list[Group], path: Path) -> None:
    """One row per group: :data:`.stats.CSV_COLUMNS`, then :data:`.estimates.INTERVAL_COLUMNS` when estimated."""
    columns = CSV_COLUMNS + [c for c in INTERVAL_COLUMNS if groups and c in groups[0].row]
    write_rows([g.row for g in groups], columns, path)


def write_rows(rows: Sequence[dict[str, Any]], columns: list[str], path: Path) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row[k] for k in columns})


def _interval(row: dict[str, Any], name: str, point: str | None = None, digits: int = 1) -> str:
    return Interval(row[point or name], row[f"{name}_lo"], row[f"{name}_hi"]).text(digits)


def interval_sections(groups: list[Group], est: Estimates, group_header: str = "group") -> str:
    """The Markdown of the estimates: intervals per group, the aggregate, P(X > Y), the notes."""
    pct = f"{100 * CONFIDENCE:.0f}%"
    lines = [
        f"## Intervals over seeds ({pct} stratified-bootstrap CIs, rliable, {est.reps} reps, seed {est.seed})",
        "",
        "IQM: the mean of the middle 50% of seeds. Max over training: the highest across-seed IQM (mean) of "
        "`eval/episode_return` over the frames at which every seed evaluated (the mean's is `max_mean_eval`). "
        "Normalised: (score − random_return) / (reference_return − random_return) from `configs/env`.",
        "",
        f"| env | {group_header} | seeds | final IQM | final mean | max over training, IQM "
        "| max over training, mean | final IQM, normalised |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for g in groups:
        r = g.row
        lines.append(
            f"| {g.env} | {g.label} | {sum(math.isfinite(x.final_return) for x in g.runs)} "
            f"| {_interval(r, 'final_return_iqm')} | {_interval(r, 'final_return_mean')} "
            f"| {_interval(r, 'max_iqm_eval')} | {_interval(r, 'max_mean_eval')} "
            f"| {_interval(r, 'final_normalised_iqm', digits=3)} |"
        )
    if est.scores:
        used = ", ".join(f"{e} ({s.random_return:g} → {s.reference_return:g})" for e, s in est.scores.items())
        lines += [
            "",
            f"## Across environments: normalised final return ({pct} CIs)",
            "",
            f"Normalised from random_return → reference_return: {used}.",
            "",
            f"| {group_header} | envs | runs | IQM | mean |",
            "|---|---:|---:|---:|---:|",
            *(
                f"| {a['group']} | {a['envs']} | {a['runs']} | {_interval(a, 'iqm', digits=3)} "
                f"| {_interval(a, 'mean', digits=3)} |"
                for a in est.aggregate
            ),
        ]
    if est.improvement:
        lines += [
            "",
            f"## Probability of improvement, final evaluation ({pct} CIs)",
            "",
            f"P(X > Y): the probability that a seed of X ends above a seed of Y (Mann-Whitney; `{ACROSS}`: "
            "averaged over the normalised environments). Decided: the group the CI favours, `no` when it holds 0.5.",
            "",
            "| env | X | Y | seeds X, Y | P(X > Y) | decided |",
            "|---|---|---|---:|---:|---|",
            *(
                f"| {p['env']} | {p['x']} | {p['y']} | {p['n_x']}, {p['n_y']} "
                f"| {_interval(p, 'p', point='p_x_over_y', digits=2)} | {p['decided']} |"
                for p in est.improvement
            ),
        ]
    if est.notes:
        lines += ["", *(f"> note: {n}" for n in est.notes)]
    return "\n".join(lines)


def write_estimates(est: Estimates, out: Path) -> list[Path]:
    """``aggregate.csv`` (when some environment is normalised) and ``improvement.csv`` (when there is a pair)."""
    written = []
    if est.aggregate:
        write_rows(est.aggregate, AGGREGATE_COLUMNS, out / "aggregate.csv")
        written.append(out / "aggregate.csv")
    if est.improvement:
        write_rows(est.improvement, IMPROVEMENT_COLUMNS, out / "improvement.csv")
        written.append(out / "improvement.csv")
    return written
