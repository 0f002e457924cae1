"""A tiny real sweep logged to a real ``mlflow server``, read back over its REST API.

One session server (see conftest). ``ngac train -m`` runs against it through
``MLFLOW_TRACKING_URI`` in a subprocess; everything is then read back with plain HTTP, ``ngac
compare`` runs against the server, and headless Chromium photographs the UI's runs table.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import time
import zlib
from pathlib import Path

import pytest

from ngac.links import ui_links
from tests.ngac.tracking_utils import (
    TINY_RUN,
    clean_env,
    metric_history,
    ngac_command,
    params_of,
    rest,
    search_runs,
    tags_of,
)

EXPERIMENT = "ngac"  # logger.experiment_name's default
SWEEP = [*TINY_RUN, "curvature=identity,sherman_morrison", "seed=0,1", "trainer.total_frames=64"]
SWEEP_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def sweep(mlflow_server, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("sweep_cwd")
    cmd = [*ngac_command(), "train", "-m", *SWEEP, f"hydra.sweep.dir={cwd}/multirun"]
    proc = subprocess.run(
        cmd, cwd=cwd, env=clean_env(MLFLOW_TRACKING_URI=mlflow_server.url), capture_output=True, text=True,
        timeout=SWEEP_TIMEOUT_S,
    )  # fmt: skip
    assert proc.returncode == 0, f"sweep failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    base = mlflow_server.url
    exp = rest(base, "/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": EXPERIMENT})["experiment"]
    runs = search_runs(base, [exp["experiment_id"]])
    parents = [r for r in runs if tags_of(r).get("ngac.role") == "sweep_parent"]
    children = [r for r in runs if r not in parents]
    return {"cwd": cwd, "proc": proc, "experiment": exp, "runs": runs, "parents": parents, "children": children}


def test_sweep_runs_on_the_server_not_a_local_store(sweep):
    cwd = sweep["cwd"]
    assert not (cwd / "mlflow.db").exists() and not (cwd / "mlruns").exists(), os.listdir(cwd)
    children = sweep["children"]
    assert len(children) == 4, [tags_of(r) for r in sweep["runs"]]
    combos = sorted((tags_of(r)["backend"], tags_of(r)["seed"]) for r in children)
    assert combos == [("identity", "0"), ("identity", "1"), ("sherman_morrison", "0"), ("sherman_morrison", "1")]
    for r in children:
        assert r["info"]["status"] == "FINISHED"
        assert r["info"]["end_time"] >= r["info"]["start_time"]


def test_tags_and_params_over_rest(mlflow_server, sweep):
    for listed in sweep["children"]:
        run = rest(mlflow_server.url, "/api/2.0/mlflow/runs/get", params={"run_id": listed["info"]["run_id"]})["run"]
        tags, params = tags_of(run), params_of(run)
        for key in ("backend", "env", "seed", "git_commit", "ngac_version", "step_rule", "agent"):
            assert tags.get(key), f"tag {key} missing: {tags}"
        assert tags["env"] == "Pendulum-v1" and params["env.id"] == "Pendulum-v1"
        assert params["curvature.name"] == tags["backend"] and params["seed"] == tags["seed"]
        assert params["env.num_envs"] == "2" and params["trainer.total_frames"] == "64"
        assert "curvature.damping" in params
        if tags["backend"] == "sherman_morrison":
            assert "curvature.mode" in params
        if "algo" in tags:  # the algo tag (backend name unless TRPO/PPO)
            assert tags["algo"] == tags["backend"]
        arts = rest(mlflow_server.url, "/api/2.0/mlflow/artifacts/list", params={"run_id": run["info"]["run_id"]})
        assert "config.yaml" in {f["path"] for f in arts.get("files", [])}


def test_metric_histories_over_rest(mlflow_server, sweep):
    for run in sweep["children"]:
        rid = run["info"]["run_id"]
        for key in ("charts/sps", "perf/update_ms", "curvature/direction_ms", "charts/frames", "losses/value_loss"):
            hist = metric_history(mlflow_server.url, rid, key)
            assert [m["step"] for m in hist] == [32, 64], (key, hist)  # steps are environment frames
        frames = metric_history(mlflow_server.url, rid, "charts/frames")
        assert [m["value"] for m in frames] == [32, 64]
        ev = metric_history(mlflow_server.url, rid, "eval/episode_return")
        assert len(ev) == 1 and int(ev[0]["step"]) == 64  # eval only at the end
        # 20-step episodes on 2 envs: the first episodes end within the 64 frames
        assert metric_history(mlflow_server.url, rid, "charts/episode_return")
        for m in frames:
            assert run["info"]["start_time"] <= int(m["timestamp"]) <= run["info"]["end_time"]


def test_sweep_parent_run(mlflow_server, sweep):
    parents = sweep["parents"]
    assert len(parents) == 1, (
        f"want one run tagged ngac.role=sweep_parent, found {len(parents)}: {sweep['proc'].stdout[-2000:]}"
    )
    parent = parents[0]
    assert parent["info"]["status"] == "FINISHED"
    pid, sweep_name = parent["info"]["run_id"], tags_of(parent).get("sweep")
    assert sweep_name, "the parent run has no sweep tag"
    for child in sweep["children"]:
        tags = tags_of(child)
        assert tags.get("mlflow.parentRunId") == pid
        assert tags.get("sweep") == sweep_name
    listed = rest(mlflow_server.url, "/api/2.0/mlflow/artifacts/list", params={"run_id": pid, "path": "compare"})
    names = {Path(f["path"]).name for f in listed.get("files", [])}
    assert {"learning_curves.png", "summary.md", "summary.csv"} <= names, listed


def _compare(server_url: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*ngac_command(), "compare", *args], cwd=cwd, env=clean_env(MLFLOW_TRACKING_URI=server_url),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_compare_cli_against_server_logs_artifacts(mlflow_server, sweep, tmp_path):
    base = mlflow_server.url
    # a run to receive the outputs (like the sweep parent), in its own experiment
    exp_id = rest(base, "/api/2.0/mlflow/experiments/create", {"name": "compare-target"})["experiment_id"]
    target = rest(base, "/api/2.0/mlflow/runs/create", {"experiment_id": exp_id, "start_time": int(time.time() * 1000)})
    target_id = target["run"]["info"]["run_id"]

    out = tmp_path / "cmp"
    proc = _compare(base, EXPERIMENT, "--out", str(out), "--log-to-run", target_id, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "matched experiment" in proc.stdout
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("| ")]
    rows = {ln.split("|")[1].strip(): ln.split("|")[2].strip() for ln in lines[1:]}
    assert rows == {"identity": "2", "sherman_morrison": "2"}, proc.stdout
    assert (out / "learning_curves.png").stat().st_size > 10_000
    assert base in (out / "summary.md").read_text()
    listed = rest(base, "/api/2.0/mlflow/artifacts/list", params={"run_id": target_id, "path": "compare"})
    sizes = {Path(f["path"]).name: int(f.get("file_size", 0)) for f in listed.get("files", [])}
    expected = {
        "learning_curves.png",
        "intervals.png",
        "performance_profiles.png",
        "pareto.png",
        "summary.md",
        "summary.csv",
    }
    # improvement.csv: two groups; no aggregate.csv: Pendulum has no reference score to normalise by
    assert set(sizes) == expected | {"improvement.csv"} and min(sizes.values()) > 0, listed

    by_param = _compare(
        base, EXPERIMENT, "--out", str(tmp_path / "p"), "--group-by", "param:curvature.name", cwd=tmp_path
    )
    assert by_param.returncode == 0, by_param.stderr
    assert "| curvature.name=identity | 2 |" in by_param.stdout

    sweeps = {tags_of(r).get("sweep") for r in sweep["children"]} - {None}
    for name in sweeps:  # when runs carry a sweep tag, the sweep name selects them too
        by_sweep = _compare(base, name, "--out", str(tmp_path / "s"), cwd=tmp_path)
        assert by_sweep.returncode == 0 and "matched sweep" in by_sweep.stdout, by_sweep.stderr

    missing = _compare(base, "no-such-sweep", cwd=tmp_path)
    assert missing.returncode == 2
    err = missing.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ngac: error: no runs match 'no-such-sweep'") and "ngac" in err[0]


# ------------------------------------------------------------------ UI screenshot
def png_stats(path: Path) -> tuple[int, int, int]:
    """(width, height, number of distinct pixel rows) of an 8-bit RGB/RGBA PNG, in pure Python."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and color in (2, 6), (depth, color)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = 1 + width * (3 if color == 2 else 4)
    rows = {raw[i * stride + 1 : (i + 1) * stride] for i in range(height)}  # filtered rows: a proxy
    return width, height, len(rows)


def test_ui_runs_table_screenshot(mlflow_server, sweep, tmp_path):
    """The link printed when the sweep ends opens the "Training runs" table (not MLflow 3's GenAI home).

    With ``NGAC_UI_SCREENSHOT=1`` the screenshot is kept as ``benchmarks/mlflow_runs_table.png``
    (the README's picture); any other non-empty value is the path to keep it at.
    """
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not on PATH (Debian: apt-get install -y chromium)")
    exp_id = sweep["experiment"]["experiment_id"]
    parent_id = sweep["parents"][0]["info"]["run_id"]
    printed = [
        ln.split("MLflow training runs: ", 1)[1]
        for ln in sweep["proc"].stdout.splitlines()
        if ln.startswith("sweep ") and "MLflow training runs: " in ln  # the sweep's own lines
    ]
    url = f"{mlflow_server.url}/#/experiments/{exp_id}/runs"
    assert printed == [url] and ui_links(mlflow_server.url, exp_id, parent_id)[0].endswith(url), sweep["proc"].stdout[
        -2000:
    ]

    def chromium_run(*mode: str) -> subprocess.CompletedProcess:
        cmd = [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,900",
            "--virtual-time-budget=15000", *mode, url,
        ]  # fmt: skip
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=clean_env(HOME=str(tmp_path)))

    dom = chromium_run("--dump-dom").stdout
    assert "Training runs" in dom, "the link did not open the training runs table"
    assert sweep["parents"][0]["info"]["run_name"] in dom, "the sweep's parent run is not listed"
    shot = tmp_path / "runs.png"
    proc = chromium_run(f"--screenshot={shot}")
    assert shot.exists(), f"no screenshot ({proc.returncode}):\n{proc.stderr[-2000:]}"
    size = shot.stat().st_size
    width, height, distinct_rows = png_stats(shot)
    assert (width, height) == (1400, 900)
    assert size > 20_000, f"screenshot only {size} bytes: blank page?"
    assert distinct_rows > 50, "screenshot is (nearly) one colour"
    keep = os.environ.get("NGAC_UI_SCREENSHOT")
    if keep:
        target = Path(__file__).parents[2] / "benchmarks" / "mlflow_runs_table.png" if keep == "1" else Path(keep)
        shutil.copyfile(shot, target)
