"""ngac compare's return-against-update-cost figure: the points, the Pareto front, the file."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from ngac.compare.pareto import front, plot_pareto, points
from ngac.compare.runs import Curve, RunData


def run(group: str, env: str, final: float, update_ms: list[float], direction_ms: list[float] | None = None) -> RunData:
    empty = Curve(np.array([]), np.array([]), np.array([]))
    return RunData(
        run_id=f"{group}-{final}", name=group, group=group, env=env, budget=1e6, curve=empty, curve_key=None,
        final_return=final, evals=empty, direction_ms=direction_ms or [], update_ms=update_ms,
    )  # fmt: skip


RUNS = [
    run("identity", "Hopper-v5", 1000.0, [10.0, 12.0, 11.0], [1.0]),
    run("identity", "Hopper-v5", 1200.0, [13.0, 12.0], [1.0]),
    run("cg", "Hopper-v5", 1500.0, [20.0], [9.0]),
    run("woodbury", "Hopper-v5", 1400.0, [40.0], [30.0]),  # dearer and worse than cg: off the front
    run("ppo", "Hopper-v5", 2000.0, [100.0]),
    run("nan", "Hopper-v5", math.nan, [5.0]),  # no final evaluation: no point
]


def test_points_are_medians_of_run_medians_and_means_of_finals() -> None:
    by_group = {p.group: p for p in points(RUNS)["Hopper-v5"]}
    assert set(by_group) == {"identity", "cg", "woodbury", "ppo"}
    ident = by_group["identity"]
    assert ident.update_ms == pytest.approx(11.75)  # runs' medians 11 and 12.5
    assert ident.mean_return == pytest.approx(1100.0) and ident.std_return == pytest.approx(100.0)
    assert ident.runs == 2 and ident.direction_ms == pytest.approx(1.0)
    assert math.isnan(by_group["ppo"].direction_ms)


def test_front_keeps_only_undominated_groups() -> None:
    assert [p.group for p in front(points(RUNS)["Hopper-v5"])] == ["identity", "cg", "ppo"]


def test_plot_writes_one_panel_per_environment(tmp_path: Path) -> None:
    runs = [*RUNS, run("cg", "Walker2d-v5", 3000.0, [25.0])]
    out = plot_pareto(runs, tmp_path / "pareto.png")
    assert out is not None and out.stat().st_size > 0
    assert plot_pareto([run("x", "Hopper-v5", math.nan, [1.0])], tmp_path / "none.png") is None
