"""The summary as text: one Markdown table per environment, and one CSV with a row per (environment, group)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

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
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for g in groups:
            writer.writerow({k: g.row[k] for k in CSV_COLUMNS})
