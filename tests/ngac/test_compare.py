"""``ngac.compare`` against a local sqlite store filled with synthetic runs of known statistics."""

from __future__ import annotations

import csv
import functools
import math
import time

import numpy as np
import pytest
import scipy.stats
from matplotlib.image import imread
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from ngac.compare import area_under_curve, main, mean_std_curve, plots
from ngac.compare import compare_runs as compare_runs_default
from ngac.compare.estimates import estimate
from ngac.compare.runs import read_run
from ngac.compare.stats import summarise
from ngac.compare.store import select_runs
from tests.ngac.tracking_utils import free_port

T0 = 1_790_000_000_000  # ms
STEPS = [0, 100, 200, 300]
SEEDS = [0, 1, 2]
STD_012 = math.sqrt(2 / 3)  # population std of {0, 1, 2}
REPS = 40  # bootstrap samples: enough to test the intervals' shape, few enough to stay fast
compare_runs = functools.partial(compare_runs_default, reps=REPS)


def make_run(
    client, exp_id, *, tags, params=None, returns=None, evals=None, direction_ms=None, sps=None, wall_s=5.0, series=None
):
    """One finished run; ``returns``/``evals`` and ``series`` values are {step: value}; metric timestamps =
    start + step * 10 ms. ``direction_ms`` are logged as ``curvature/direction_ms`` at steps 0, 100, ..."""
    run = client.create_run(exp_id, start_time=T0, tags=tags)
    rid = run.info.run_id
    metrics = []
    all_series = {"charts/episode_return": returns, "eval/episode_return": evals, **(series or {})}
    for key, points in all_series.items():
        metrics += [Metric(key, float(v), T0 + 10 * s, s) for s, v in (points or {}).items()]
    for key, values in (("curvature/direction_ms", direction_ms), ("charts/sps", sps)):
        metrics += [Metric(key, float(v), T0 + 10 * i, 100 * i) for i, v in enumerate(values or [])]
    client.log_batch(rid, metrics=metrics, params=[Param(k, str(v)) for k, v in (params or {}).items()])
    client.set_terminated(rid, "FINISHED", end_time=T0 + int(1000 * wall_s))
    return rid


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One sqlite store for the module (creating one runs MLflow's migrations: seconds)."""
    root = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(uri)

    def create_experiment(name: str) -> str:  # artifacts in the tmp folder, not ./mlruns
        return client.create_experiment(name, artifact_location=(root / "artifacts" / name).as_uri())

    # Experiment "synth": group sm (tag algo) and group kfac (no algo tag: falls back to backend).
    # Seed s of a group with slope a returns a*step/100 + s: mean a*step/100 + 1, std sqrt(2/3),
    # AUC over [0, 300] = 1.5a + 1. Final eval e + 10 s (an earlier eval must be ignored).
    synth = create_experiment("synth")
    groups = {"sm": {"tags": {"algo": "sm", "backend": "sherman_morrison"}, "a": 2.0, "e": 50.0},
              "kfac": {"tags": {"backend": "kfac"}, "a": -1.0, "e": -20.0}}  # fmt: skip
    for g in groups.values():
        for s in SEEDS:
            make_run(
                client, synth,
                tags={**g["tags"], "env": "Pendulum-v1", "seed": str(s)},
                params={"seed": s},
                returns={st: g["a"] * st / 100 + s for st in STEPS},
                evals={100: -999.0, 300: g["e"] + 10 * s},
                direction_ms=[1 + s, 2 + s, 3 + s],  # pooled over seeds: median 3
                sps=[100 * (s + 1)] * 2,  # pooled: median 200
                wall_s=5.0 + s,  # mean 6
            )  # fmt: skip
    # A sweep parent in the same experiment, with metrics that would spoil every statistic.
    make_run(client, synth, tags={"ngac.role": "sweep_parent", "algo": "sm", "env": "Pendulum-v1"},
             returns={0: 1e6, 300: 1e6}, evals={300: 1e6}, direction_ms=[1e6], sps=[1e6])  # fmt: skip

    # Experiment "damping": grouped by a param; two damping values x 2 seeds.
    damping = create_experiment("damping")
    for lam, base in ((1.0, 10.0), (0.1, 20.0)):
        for s in (0, 1):
            make_run(client, damping, tags={"backend": "sherman_morrison", "env": "Pendulum-v1"},
                     params={"curvature.damping": lam, "curvature.mode": "batch_mean"},
                     returns={0: base, 100: base}, evals={100: base + s})  # fmt: skip

    # Sweep "sw1" spread over two experiments, plus its parent run; no episode finished in
    # any of them (only eval/episode_return), so the curves come from eval/episode_return.
    parent = None
    for i, name in enumerate(("sweep_a", "sweep_b")):
        exp = create_experiment(name)
        make_run(client, exp, tags={"backend": "identity", "sweep": "sw1", "env": "CartPole-v1"},
                 evals={0: 1.0 + i, 100: 3.0 + i})  # fmt: skip
        if parent is None:
            parent = make_run(client, exp, tags={"ngac.role": "sweep_parent", "sweep": "sw1"}, evals={0: 1e6})
    create_experiment("empty")

    # Experiment "mixed": two environments; Hopper's seeds ran different budgets. HalfCheetah seed
    # s returns x/1000 + s over [0, 20000] (AUC 10.5) and logs cos_to_natural {0.5, 0.7} + s / 10
    # (run means 0.6 and 0.7) and its Fisher-norm twin 0.9. Hopper: 0 -> 100 at 20k frames, and
    # 0 -> 50 at 20k -> 3000 at 1M: the mean over the common [0, 20000] is 0 -> 75 (AUC 37.5).
    mixed = create_experiment("mixed")
    for s in (0, 1):
        make_run(client, mixed, tags={"algo": "sm", "env": "HalfCheetah-v5"}, params={"trainer.total_frames": 20000},
                 returns={x: x / 1000 + s for x in (0, 10000, 20000)}, evals={20000: 20.0 + s},
                 series={"curvature/cos_to_natural": {0: 0.5 + s / 10, 10000: 0.7 + s / 10},
                         "curvature/cos_to_natural_fisher": {0: 0.9, 10000: 0.9}})  # fmt: skip
    for budget, returns in ((20000, {0: 0, 20000: 100}), (1_000_000, {0: 0, 20000: 50, 1_000_000: 3000})):
        make_run(client, mixed, tags={"algo": "sm", "env": "Hopper-v5"}, params={"trainer.total_frames": budget},
                 returns=returns, evals={budget: 1.0})  # fmt: skip

    # Experiment "endpoints": group "ends" has only one eval point per run, at different frames and
    # seconds; group "full" has real curves over the same frames.
    endpoints = create_experiment("endpoints")
    for s in (0, 1):
        make_run(client, endpoints, tags={"algo": "ends", "env": "Pendulum-v1"}, evals={1000 + 200 * s: 5.0 + s})
        make_run(client, endpoints, tags={"algo": "full", "env": "Pendulum-v1"},
                 returns={0: 0.0, 100: 1.0 + s, 200: 2.0}, evals={200: 2.0})  # fmt: skip

    # Experiment "old_names": timings under the names used before curvature/update_ms was split.
    old = create_experiment("old_names")
    make_run(client, old, tags={"algo": "sm", "agent": "nac", "env": "X"}, evals={0: 1.0},
             series={"curvature/update_ms": {0: 4.0, 1: 4.0}})  # fmt: skip
    make_run(client, old, tags={"algo": "ppo", "agent": "ppo", "env": "X"}, evals={0: 1.0},
             series={"curvature/update_ms": {0: 9.0}})  # fmt: skip
    make_run(client, old, tags={"algo": "new", "agent": "nac", "env": "X"}, evals={0: 1.0},
             series={"curvature/direction_ms": {0: 2.0}, "perf/update_ms": {0: 7.0}, "curvature/update_ms": {0: 99.0}})  # fmt: skip
    # Experiment "fallback": the policy peaks and falls back (Hopper's oscillation): seed s evaluates
    # 100 + 40 s at 1000 frames, then 10 + s at 2000, and seed 1 also 200 at 1500 frames (which seed 0
    # never evaluated at): final 10.5 +- 0.5, best 150 +- 50, max of the mean 120 (at 1000 frames).
    fallback = create_experiment("fallback")
    for s in (0, 1):
        evals = {1000: 100.0 + 40 * s, 2000: 10.0 + s} | ({1500: 200.0} if s else {})
        make_run(client, fallback, tags={"algo": "sm", "env": "Hopper-v5"}, evals=evals)
    # Experiment "ten": 10 seeds on HalfCheetah and Hopper (both normalised by configs/env); group "a" ends at
    # 0..8 and 100 (mean 13.6, IQM 4.5: the middle six), group "b" at 1000 + 10 s; "solo" has one seed.
    ten = create_experiment("ten")
    for env in ("HalfCheetah-v5", "Hopper-v5"):
        for s in range(10):
            make_run(client, ten, tags={"algo": "a", "env": env}, evals={100: 50.0 + s, 200: 100.0 if s == 9 else s})
            make_run(client, ten, tags={"algo": "b", "env": env}, evals={100: 0.0, 200: 1000.0 + 10 * s})
    make_run(client, ten, tags={"algo": "solo", "env": "Hopper-v5"}, evals={200: 7.0})
    targets = create_experiment("targets")
    return {"uri": uri, "client": client, "parent": parent, "targets": targets, "create_experiment": create_experiment}


def rows_by_group(result):
    return {r["group"]: r for r in result["rows"]}


def test_groups_mean_std_auc_exact(store, tmp_path):
    result = compare_runs(store["uri"], "synth", tmp_path / "out")
    assert result["matched"] == "experiment"
    assert result["n_runs"] == 6  # the parent run is skipped
    rows = rows_by_group(result)
    assert set(rows) == {"sm", "kfac"}  # kfac has no algo tag: grouped by backend
    for name, a, e in (("sm", 2.0, 50.0), ("kfac", -1.0, -20.0)):
        r = rows[name]
        assert r["n"] == 3
        assert r["final_return_mean"] == pytest.approx(e + 10)
        assert r["final_return_std"] == pytest.approx(10 * STD_012)
        assert r["best_return_mean"] == pytest.approx(e + 10)  # the earlier -999 is lower
        assert r["auc"] == pytest.approx(1.5 * a + 1)
        assert r["direction_ms_median"] == pytest.approx(3.0)
        assert math.isnan(r["update_ms_median"])  # perf/update_ms never logged
        assert r["sps_median"] == pytest.approx(200.0)
        assert r["wall_time_s_mean"] == pytest.approx(6.0)
        assert r["env"] == "Pendulum-v1"
        assert r["budget_frames"] == "300"  # no trainer.total_frames param: the last frame logged
    assert result["warnings"] == [] and result["diagnostics_png"] is None


def test_outputs_written(store, tmp_path):
    out = tmp_path / "out"
    result = compare_runs(store["uri"], "synth", out)
    assert result["png"] == out / "learning_curves.png" and result["png"].stat().st_size > 10_000
    img = imread(result["png"])
    assert img.shape[1] > img.shape[0]  # two panels side by side
    assert np.ptp(img[..., :3]) > 0.5  # not blank
    md = result["markdown"].read_text()
    assert "# ngac compare: synth" in md and "matched experiment name" in md and store["uri"] in md
    assert "runs: 6 in 2 groups" in md and "## Pendulum-v1" in md
    assert "| sm | 3 | 300 | 60.00 ± 8.16 | 60.00 ± 8.16 | 4.00 | 3.000 | – | 200 | 6.0 |" in md
    assert "cos to natural" not in md and "warning" not in md
    assert not (out / "curvature_diagnostics.png").exists()
    with open(result["csv"]) as fh:
        table = list(csv.DictReader(fh))
    assert [r["group"] for r in table] == ["kfac", "sm"]
    assert float(table[1]["auc"]) == pytest.approx(4.0)


def test_best_evaluation_beside_the_final_one(store, tmp_path):
    result = compare_runs(store["uri"], "fallback", tmp_path)
    (row,) = result["rows"]
    assert (row["final_return_mean"], row["final_return_std"]) == pytest.approx((10.5, 0.5))
    assert (row["best_return_mean"], row["best_return_std"]) == pytest.approx((150.0, 50.0))
    assert row["max_mean_eval"] == pytest.approx(120.0)
    assert "| 10.50 ± 0.50 | 150.00 ± 50.00 |" in result["markdown"].read_text()


def test_group_by_param(store, tmp_path):
    result = compare_runs(store["uri"], "damping", tmp_path, group_by="param:curvature.damping")
    assert [r["group"] for r in result["rows"]] == ["curvature.damping=0.1", "curvature.damping=1.0"]
    rows = rows_by_group(result)
    assert rows["curvature.damping=0.1"]["final_return_mean"] == pytest.approx(20.5)
    assert rows["curvature.damping=1.0"]["final_return_std"] == pytest.approx(0.5)
    assert rows["curvature.damping=1.0"]["auc"] == pytest.approx(10.0)
    assert math.isnan(rows["curvature.damping=1.0"]["direction_ms_median"])  # never logged
    mode = compare_runs(store["uri"], "damping", tmp_path, group_by="param:curvature.mode")
    assert [(r["group"], r["n"]) for r in mode["rows"]] == [("curvature.mode=batch_mean", 4)]
    by_tag = compare_runs(store["uri"], "damping", tmp_path, group_by="env")
    assert [(r["group"], r["n"]) for r in by_tag["rows"]] == [("Pendulum-v1", 4)]


def test_sweep_selector_across_experiments_logs_to_parent(store, tmp_path):
    client = store["client"]
    result = compare_runs(store["uri"], "sw1", tmp_path, parent_run_id=store["parent"])
    assert result["matched"] == "sweep" and result["n_runs"] == 2
    (row,) = result["rows"]
    assert row["group"] == "identity" and row["n"] == 2
    assert row["final_return_mean"] == pytest.approx(3.5)
    # eval/episode_return is the curve when no episode finished: mean 1.5 -> 3.5 over [0, 100]
    assert row["auc"] == pytest.approx(2.5)
    assert "matched sweep tag" in result["markdown"].read_text()
    listed = {f.path for f in client.list_artifacts(store["parent"], "compare")}
    # one group, one environment without normalisation scores: no pair, no aggregate
    assert listed == {f"compare/{name}" for name in
                      ("learning_curves.png", "intervals.png", "performance_profiles.png", "summary.md", "summary.csv")}  # fmt: skip


def test_experiment_name_wins_over_sweep_and_empty_experiment_falls_through(store, tmp_path):
    client = store["client"]
    exp = store["create_experiment"]("sw_both")
    make_run(client, exp, tags={"backend": "diagonal", "env": "X"}, evals={0: 1.0})
    other = client.get_experiment_by_name("sweep_a").experiment_id
    make_run(client, other, tags={"backend": "kfac", "sweep": "sw_both", "env": "X"}, evals={0: 2.0})
    assert [r["group"] for r in compare_runs(store["uri"], "sw_both", tmp_path)["rows"]] == ["diagonal"]
    make_run(client, other, tags={"backend": "cg", "sweep": "empty", "env": "X"}, evals={0: 2.0})
    result = compare_runs(store["uri"], "empty", tmp_path)  # experiment "empty" has no runs
    assert result["matched"] == "sweep" and [r["group"] for r in result["rows"]] == ["cg"]


def test_no_match_lists_experiments_and_sweeps(store, tmp_path):
    with pytest.raises(ValueError) as info:
        compare_runs(store["uri"], "nope", tmp_path)
    msg = str(info.value)
    assert "\n" not in msg and "'nope'" in msg
    assert "fallback" in msg and "ten" in msg and "sw1" in msg  # the ten newest experiments
    assert not (tmp_path / "summary.md").exists()


def test_unreachable_and_missing_store_fail_fast(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    t0 = time.monotonic()
    with pytest.raises(ValueError, match="unreachable"):
        compare_runs(f"http://127.0.0.1:{free_port()}", "synth", tmp_path)
    assert time.monotonic() - t0 < 15
    with pytest.raises(ValueError, match="no MLflow store"):
        compare_runs(f"sqlite:///{tmp_path}/absent.db", "synth", tmp_path)
    assert not (tmp_path / "absent.db").exists()  # probing must not create a store
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="no MLflow store"):
        compare_runs(None, "synth", tmp_path)  # default sqlite:///mlflow.db, absent here


def test_cli(store, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["synth", "--tracking-uri", store["uri"], "--group-by", "algo", "--reps", str(REPS)]) == 0
    out = capsys.readouterr().out
    assert "| sm | 3 |" in out and "learning_curves.png" in out
    assert (tmp_path / "compare" / "synth" / "summary.csv").exists()  # default --out compare/<selector>
    assert main(["nope", "--tracking-uri", store["uri"]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ngac: error: no runs match 'nope'")
    assert main(["--bogus"]) == 2
    assert capsys.readouterr().err.startswith("ngac: error: ")


def test_mean_std_curve_on_unequal_grids():
    curve = mean_std_curve([np.array([0.0, 10.0]), np.array([2.0, 5.0, 12.0])],
                           [np.array([0.0, 10.0]), np.array([2.0, 5.0, 12.0])])  # fmt: skip
    # common range [2, 10]; the union of the runs' points inside it
    assert curve.grid.tolist() == [2.0, 5.0, 10.0]
    assert curve.mean.tolist() == pytest.approx([2.0, 5.0, 10.0]) and curve.std.tolist() == pytest.approx([0, 0, 0])
    assert area_under_curve(curve.grid, curve.mean) == pytest.approx(6.0)
    # runs that share no range: no mean curve at all (never one made of different runs' points)
    curve = mean_std_curve([np.array([0.0, 1.0]), np.array([2.0, 3.0])], [np.array([1.0, 1.0]), np.array([5.0, 5.0])])
    assert len(curve) == 0 and math.isnan(area_under_curve(curve.grid, curve.mean))
    assert area_under_curve(np.array([7.0]), np.array([3.0])) == 3.0


def test_one_block_per_environment_and_budget_warning(store, tmp_path):
    client = store["client"]
    target = client.create_run(store["targets"]).info.run_id
    result = compare_runs(store["uri"], "mixed", tmp_path, parent_run_id=target)
    assert [(r["env"], r["group"], r["n"]) for r in result["rows"]] == [
        ("HalfCheetah-v5", "sm", 2),
        ("Hopper-v5", "sm", 2),
    ]
    cheetah, hopper = result["rows"]
    assert cheetah["auc"] == pytest.approx(10.5) and cheetah["budget_frames"] == "20000"
    assert hopper["auc"] == pytest.approx(37.5) and hopper["budget_frames"] == "20000/1000000"
    (warning,) = result["warnings"]
    assert "\n" not in warning and warning.startswith("Hopper-v5 / sm: ") and "1 at 20000, 1 at 1000000" in warning
    md = result["markdown"].read_text()
    assert f"> warning: {warning}" in md
    cheetah_md, hopper_md = md.split("## Intervals")[0].split("## HalfCheetah-v5")[1].split("## Hopper-v5")
    assert cheetah_md.count("| sm | 2 |") == 1 and hopper_md.count("| sm | 2 |") == 1
    # the diagnostics columns only where they were logged
    assert "| sm | 2 | 20000 |" in cheetah_md and "| 0.650 | 0.900 |" in cheetah_md
    assert "cos to natural" not in hopper_md
    assert cheetah["cos_to_natural_mean"] == pytest.approx(0.65) and math.isnan(hopper["cos_to_natural_mean"])
    listed = {f.path for f in client.list_artifacts(target, "compare")}
    assert "compare/curvature_diagnostics.png" in listed and "compare/aggregate.csv" in listed
    assert len(listed) == 7 and "compare/improvement.csv" not in listed  # one group: no pair
    img = imread(result["diagnostics_png"])
    assert np.ptp(img[..., :3]) > 0.5

    runs = [read_run(client, r, "algo") for r in select_runs(client, "mixed")[0]]
    fig = plots.learning_curves(summarise(runs), "t")
    titles = [ax.get_title() for ax in fig.axes]
    assert len(titles) == 4 and [t.split(":")[0] for t in titles] == ["HalfCheetah-v5"] * 2 + ["Hopper-v5"] * 2
    diag = plots.diagnostics(summarise(runs), "t")
    assert [ax.get_title().split(":")[0] for ax in diag.axes] == ["HalfCheetah-v5"] * 2  # Hopper logged none


def test_cli_prints_the_budget_warning(store, tmp_path, capsys):
    assert main(["mixed", "--tracking-uri", store["uri"], "--out", str(tmp_path), "--reps", str(REPS)]) == 0
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ngac: warning: Hopper-v5 / sm: runs with different budgets")
    assert "## HalfCheetah-v5" in captured.out and "diagnostics_png:" in captured.out


def test_curves_only_where_curves_exist(store, tmp_path):
    client = store["client"]
    runs = [read_run(client, r, "algo") for r in select_runs(client, "endpoints")[0]]
    groups = summarise(runs)
    ends = next(g for g in groups if g.label == "ends")
    assert len(ends.returns) == 0 and math.isnan(ends.row["auc"])  # two seeds' end points are no curve
    ax_frames, ax_clock = plots.learning_curves(groups, "t").axes
    frames_lines = [line.get_xdata().tolist() for line in ax_frames.lines]
    # "ends": one marker per run; "full": the mean over seeds on the common frames
    assert sorted(frames_lines) == [[0.0, 100.0, 200.0], [1000.0], [1200.0]]
    for line in ax_frames.lines + ax_clock.lines:
        if len(line.get_xdata()) == 1:
            assert line.get_linestyle() == "None" and line.get_marker() == "o"
    # wall-clock: one line per run, never a mean across runs
    clock = sorted(line.get_xdata().tolist() for line in ax_clock.lines)
    assert clock == [[0.0, 1.0, 2.0], [0.0, 1.0, 2.0], [10.0], [12.0]]
    full = next(g for g in groups if g.label == "full")
    assert full.returns.mean.tolist() == pytest.approx([0.0, 1.5, 2.0])
    assert full.returns.std.tolist() == pytest.approx([0.0, 0.5, 0.0])


def test_timings_read_new_names_then_old(store, tmp_path):
    rows = rows_by_group(compare_runs(store["uri"], "old_names", tmp_path))
    assert rows["sm"]["direction_ms_median"] == 4.0 and math.isnan(rows["sm"]["update_ms_median"])
    assert rows["ppo"]["update_ms_median"] == 9.0 and math.isnan(rows["ppo"]["direction_ms_median"])
    assert rows["new"]["direction_ms_median"] == 2.0 and rows["new"]["update_ms_median"] == 7.0


@pytest.fixture(scope="module")
def ten(store, tmp_path_factory):
    """``compare_runs`` on experiment "ten", once for the tests that read it."""
    out = tmp_path_factory.mktemp("ten")
    return compare_runs(store["uri"], "ten", out)


def test_intervals_per_group_are_rliable_iqm_and_mean(ten):
    result = ten
    rows = {(r["env"], r["group"]): r for r in result["rows"]}
    a, b = rows["Hopper-v5", "a"], rows["Hopper-v5", "b"]
    assert a["final_return_mean"] == pytest.approx(13.6) and a["final_return_iqm"] == pytest.approx(4.5)
    assert b["final_return_iqm"] == pytest.approx(1045.0)  # 1000 + 10 * mean(2..7)
    for row in (a, b):
        for name, point in (("final_return_iqm", "final_return_iqm"), ("final_return_mean", "final_return_mean"),
                            ("max_iqm_eval", "max_iqm_eval"), ("max_mean_eval", "max_mean_eval")):  # fmt: skip
            assert row[f"{name}_lo"] <= row[point] <= row[f"{name}_hi"], name
    assert a["final_return_iqm_lo"] >= 0 and a["final_return_iqm_hi"] < a["final_return_mean_hi"]  # the outlier
    # max over training: at frame 100 the seeds evaluate 50..59 (mean and IQM 54.5), above their final values
    assert a["max_mean_eval"] == pytest.approx(54.5) and a["max_iqm_eval"] == pytest.approx(54.5)
    assert b["max_mean_eval"] == pytest.approx(1045.0)
    # normalised by configs/env: (score - random_return) / (reference_return - random_return)
    hopper = result["estimates"].scores["Hopper-v5"]
    assert a["final_normalised_iqm"] == pytest.approx(hopper.normalise(4.5))
    assert a["final_normalised_iqm_lo"] == pytest.approx(hopper.normalise(a["final_return_iqm_lo"]))


def test_one_seed_gets_a_note_not_an_interval(ten):
    result = ten
    solo = next(r for r in result["rows"] if r["group"] == "solo")
    assert solo["final_return_iqm"] == 7.0 and math.isnan(solo["final_return_iqm_lo"])
    notes = result["estimates"].notes
    assert "Hopper-v5 / solo: one seed: its estimates are that seed's, with no interval" in notes
    assert "solo: no final evaluation on HalfCheetah-v5: left out of the aggregate" in notes
    md = result["markdown"].read_text()
    assert "| Hopper-v5 | solo | 1 | 7.0 | 7.0 | 7.0 | 7.0 |" in md
    assert "| Hopper-v5 | b | solo | 10, 1 | 1.00 | – |" in md  # a point estimate, no interval, undecided
    assert "> note: Hopper-v5 / solo: one seed" in md


def test_aggregate_improvement_and_profiles(ten):
    result = ten
    out = result["out_dir"]
    est = result["estimates"]
    assert list(est.scores) == ["HalfCheetah-v5", "Hopper-v5"] and est.reps == REPS
    agg = {r["group"]: r for r in est.aggregate}
    assert set(agg) == {"a", "b"} and agg["a"]["envs"] == 2 and agg["a"]["runs"] == 20
    finals = np.array([*range(9), 100.0])
    pooled = np.concatenate([(finals - s.random_return) / (s.reference_return - s.random_return)
                             for s in est.scores.values()])  # fmt: skip
    assert agg["a"]["iqm"] == pytest.approx(scipy.stats.trim_mean(pooled, 0.25))
    assert agg["a"]["mean"] == pytest.approx(pooled.mean())
    assert agg["a"]["iqm_lo"] <= agg["a"]["iqm"] <= agg["a"]["iqm_hi"] < agg["b"]["iqm_lo"]
    pairs = {(p["env"], p["x"], p["y"]): p for p in est.improvement}
    assert set(pairs) == {("HalfCheetah-v5", "a", "b"), ("Hopper-v5", "a", "b"), ("Hopper-v5", "a", "solo"),
                          ("Hopper-v5", "b", "solo"), ("all (normalised)", "a", "b")}  # fmt: skip
    for env in ("HalfCheetah-v5", "Hopper-v5", "all (normalised)"):
        p = pairs[env, "a", "b"]  # b's seeds all end above a's, except a's 100 over b's none: P(a > b) = 0
        assert (p["p_x_over_y"], p["p_lo"], p["p_hi"], p["decided"]) == (0.0, 0.0, 0.0, "b")
    assert pairs["Hopper-v5", "a", "solo"]["p_x_over_y"] == pytest.approx(0.25)  # 8 and 100 beat 7.0, 7 ties: 2.5/10
    assert [p.title for p in est.profiles] == ["HalfCheetah-v5: final evaluation", "Hopper-v5: final evaluation",
                                               "2 environments, normalised"]  # fmt: skip
    for profile in est.profiles:
        for fraction, lo, hi in profile.curves.values():
            assert fraction[0] == 1.0 and fraction[-1] == 0.0 and np.all(np.diff(fraction) <= 0)
            assert np.isnan(lo).all() or (np.all(lo <= fraction) and np.all(fraction <= hi))
    assert np.isnan(est.profiles[1].curves["solo"][1]).all()  # one seed: no band
    with open(out / "improvement.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 5
    with open(out / "summary.csv") as fh:
        assert "final_return_iqm_lo" in next(csv.reader(fh))
    md = result["markdown"].read_text()
    assert f"rliable, {REPS} reps, seed 0" in md and "## Across environments" in md
    assert "| all (normalised) | a | b | 20, 20 | 0.00 [0.00, 0.00] | b |" in md
    for png in (result["intervals_png"], result["profiles_png"]):
        assert np.ptp(imread(png)[..., :3]) > 0.5


def test_intervals_are_seeded(store):
    runs = [read_run(store["client"], r, "algo") for r in select_runs(store["client"], "ten")[0]]

    def lows(seed: int) -> np.ndarray:
        groups = summarise(runs)
        estimate(groups, reps=REPS, seed=seed)
        return np.array([[g.row["final_return_mean_lo"], g.row["max_iqm_eval_hi"]] for g in groups])

    state = np.random.get_state()[1].copy()
    first = lows(3)
    assert (np.random.get_state()[1] == state).all()  # the caller's global generator is left as it was
    assert np.array_equal(first, lows(3), equal_nan=True) and not np.array_equal(first, lows(4), equal_nan=True)


def test_reps_must_be_a_positive_integer(store, tmp_path, capsys):
    with pytest.raises(ValueError, match=r"^--reps=0 is invalid; valid choices: an integer >= 1"):
        compare_runs(store["uri"], "ten", tmp_path, reps=0)
    assert main(["ten", "--tracking-uri", store["uri"], "--reps", "x"]) == 2
    assert capsys.readouterr().err.startswith("ngac: error: argument --reps: invalid int value")


def test_vectorised_statistics_match_rliable():
    from ngac.compare import intervals

    library, metrics = intervals.rliable()
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 4, 7, 10):
        x = rng.normal(size=(n, 1))
        assert intervals.iqm(x)[0] == pytest.approx(metrics.aggregate_iqm(x))
    scores, tau = rng.normal(size=(7, 1)), np.linspace(-2, 2, 9)
    fraction = intervals.performance_profile([scores], tau, 2, 0, ("t",))[0]
    assert fraction.tolist() == library.score_distributions(scores, tau).tolist()
    curves = rng.normal(size=(6, 4))
    iqm, mean = intervals.max_over_training(curves, 2, 0, ("t",))
    assert iqm.point == pytest.approx(max(metrics.aggregate_iqm(curves[:, j]) for j in range(4)))
    assert mean.point == pytest.approx(curves.mean(axis=0).max())
    xs = [rng.integers(0, 4, size=(5, 1)).astype(float), rng.normal(size=(3, 1))]  # ties in the first task
    ys = [rng.integers(0, 4, size=(6, 1)).astype(float), rng.normal(size=(4, 1))]
    p = intervals.improvement(xs, ys, 2, 0, ("t",)).point
    expected = np.mean([metrics.probability_of_improvement(x, y) for x, y in zip(xs, ys, strict=True)])
    assert p == pytest.approx(expected)


def test_normalisation_scores_come_from_the_env_configs():
    from ngac.compare.scores import task_scores

    scores = task_scores()
    assert scores["Hopper-v5"].reference_return == 2609 and scores["HalfCheetah-v5"].reference_return == 5784
    assert scores["Hopper-v5"].normalise(scores["Hopper-v5"].random_return) == 0.0
    assert "Pendulum-v1" not in scores and "CartPole-v1" not in scores  # reference_return: null


def test_statuses_counted_and_unmatched_group_by_warned(tmp_path):
    """ngac compare says how many runs of each status it used, and when --group-by matches no run."""
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.create_experiment("statuses")
    tags = {"algo": "sm", "env": "Pendulum-v1"}
    make_run(client, exp, tags=tags, evals={100: 1.0})
    failed = make_run(client, exp, tags=tags, evals={100: 2.0})
    client.set_terminated(failed, "FAILED")
    running = client.create_run(exp, start_time=T0, tags=tags).info.run_id
    client.log_batch(running, metrics=[Metric("eval/episode_return", 3.0, T0 + 1000, 100)])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = compare_runs_default(uri, "statuses", str(tmp_path / "out"), reps=20)
    assert any("2 of 3 runs did not finish (1 FAILED, 1 RUNNING" in w for w in result["warnings"]), result["warnings"]
    assert "- run status: 1 FAILED, 1 FINISHED, 1 RUNNING" in result["markdown"].read_text()
    result = compare_runs_default(uri, "statuses", str(tmp_path / "out2"), group_by="param:nope", reps=20)
    assert any("--group-by param:nope matches no run" in w for w in result["warnings"]), result["warnings"]
