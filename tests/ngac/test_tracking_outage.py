"""A tracking server that is down at start, and one that dies in the middle of a run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.ngac.tracking_utils import TINY_RUN, clean_env, free_port, ngac_command, rest, search_runs, start_server

TINY = [*TINY_RUN, "curvature=identity"]
# After the server dies, the rest of the run must not wait on MLflow's HTTP retries (by default
# 7 retries with exponential backoff: minutes per call).
FINISH_AFTER_KILL_S = 60


def test_server_down_at_start_is_one_line_error(tmp_path):
    port = free_port()  # nothing listens here
    t0 = time.monotonic()
    proc = subprocess.run(
        [*ngac_command(), "train", *TINY, "trainer.total_frames=64", f"out_dir={tmp_path}/run",
         f"hydra.run.dir={tmp_path}/hydra"],
        cwd=tmp_path, env=clean_env(MLFLOW_TRACKING_URI=f"http://127.0.0.1:{port}"),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    elapsed = time.monotonic() - t0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("ngac: error:") and "unreachable" in lines[0] and str(port) in lines[0]
    assert "done:" not in proc.stdout
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()
    assert not (tmp_path / "mlflow.db").exists()
    assert elapsed < 60, f"took {elapsed:.0f}s: the reachability check should not retry"


def _kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)


def test_server_dying_mid_run_does_not_stop_training(tmp_path):
    server = start_server(tmp_path / "server")
    run_dir, log = tmp_path / "run", tmp_path / "train.log"
    total = 640
    cmd = [*ngac_command(), "train", *TINY, f"trainer.total_frames={total}", "trainer.checkpoint_every_frames=64",
           "logger.experiment_name=outage", f"out_dir={run_dir}", f"hydra.run.dir={tmp_path}/hydra"]  # fmt: skip
    try:
        with open(log, "w") as fh:
            train = subprocess.Popen(
                cmd, cwd=tmp_path, env=clean_env(MLFLOW_TRACKING_URI=server.url), stdout=fh, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        try:
            deadline = time.monotonic() + 180
            while True:  # wait for the first metrics to reach the server
                assert train.poll() is None, f"training ended before any metric arrived:\n{log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, f"no metrics after 180 s:\n{log.read_text()[-3000:]}"
                try:
                    exp = rest(
                        server.url, "/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": "outage"}
                    )
                    runs = search_runs(server.url, [exp["experiment"]["experiment_id"]])
                    if runs and runs[0]["data"].get("metrics"):
                        break
                except OSError:  # 404 before the experiment exists (HTTPError is an OSError)
                    pass
                time.sleep(0.1)
            server.stop(signal.SIGKILL)  # the server dies, no goodbye
            try:
                rc = train.wait(timeout=FINISH_AFTER_KILL_S)
            except subprocess.TimeoutExpired:
                _kill_group(train)
                pytest.fail(
                    f"training still blocked {FINISH_AFTER_KILL_S}s after the server died: tracking calls must not "
                    "use MLflow's default HTTP retries (minutes per call)"
                )
        finally:
            _kill_group(train)
    finally:
        server.stop()
    output = log.read_text()
    assert rc == 0, output[-4000:]
    assert "buffering" in output and "training continues" in output, output[-4000:]
    assert f"done: {total} frames" in output
    assert (run_dir / "checkpoints" / "last.ckpt").exists()
    buffered = [json.loads(ln) for ln in (run_dir / "metrics_buffer.jsonl").read_text().splitlines() if ln.strip()]
    rows = [r for r in buffered if r["metrics"]]
    assert rows, "metrics_buffer.jsonl holds no metric rows"
    steps = [r["step"] for r in rows]
    assert steps == sorted(steps) and steps[-1] == total, steps
    assert any("charts/sps" in r["metrics"] for r in rows)
    assert "eval/episode_return" in rows[-1]["metrics"]  # the final evaluation was kept too

    # The server is back (same store, another address): `ngac sync` sends what the run could not.
    record = json.loads((run_dir / "unsynced.json").read_text())
    assert record["status"] == "FINISHED" and record["artifacts"], record
    server2 = start_server(tmp_path / "server")
    try:
        out = subprocess.run(
            [*ngac_command(), "sync", str(run_dir), "--tracking-uri", server2.url],
            cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr[-3000:]
        run = rest(server2.url, "/api/2.0/mlflow/runs/get", params={"run_id": record["run_id"]})["run"]
        assert run["info"]["status"] == "FINISHED"
        history = rest(server2.url, "/api/2.0/mlflow/metrics/get-history",
                       params={"run_id": record["run_id"], "metric_key": "charts/frames", "max_results": 1000})  # fmt: skip
        assert {m["step"] for m in history["metrics"]} >= {
            s for r in rows if "charts/frames" in r["metrics"] for s in [r["step"]]
        }
        listed = rest(
            server2.url, "/api/2.0/mlflow/artifacts/list", params={"run_id": record["run_id"], "path": "checkpoints"}
        )
        assert any(f["path"].endswith("last.ckpt") for f in listed.get("files", [])), listed
        again = subprocess.run([*ngac_command(), "sync", str(run_dir)], cwd=tmp_path, env=clean_env(),
                               capture_output=True, text=True, timeout=120)  # fmt: skip
        assert again.returncode == 2 and "nothing to sync" in again.stderr
    finally:
        server2.stop()
