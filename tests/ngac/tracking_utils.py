"""Helpers shared by the tracking tests (a uniquely named module: every test folder has a conftest)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HEALTH_TIMEOUT_S = 90
# Overrides for a tiny `ngac train` run (pendulum, 2 envs, 32-frame updates), shared by the tests.
TINY_RUN = [
    "env=pendulum",
    "env.num_envs=2",
    "agent.frames_per_batch=32",
    "trainer.eval_episodes=1",
    "trainer.eval_every_frames=1000000",
    "trainer.progress_bar=false",
    "agent.critic.minibatch_size=16",
    "agent.critic.epochs=1",
    "env.max_episode_steps=20",
]
BIN = Path(sys.executable).parent


def ngac_command() -> list[str]:
    exe = shutil.which("ngac", path=str(BIN))
    return [exe] if exe else [sys.executable, "-m", "ngac.cli"]


def mlflow_command() -> list[str]:
    exe = shutil.which("mlflow", path=str(BIN))
    return [exe] if exe else [sys.executable, "-m", "mlflow"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without any MLflow settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(extra)
    return env


# ------------------------------------------------------------------ REST
def rest(base: str, path: str, body: dict | None = None, params: dict | None = None, timeout: float = 10) -> dict:
    url = base + path + ("?" + urllib.parse.urlencode(params, doseq=True) if params else "")
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read() or b"{}")


def search_runs(base: str, experiment_ids: list[str], filter_string: str = "") -> list[dict]:
    runs, token = [], None
    while True:
        body = {"experiment_ids": experiment_ids, "filter": filter_string, "max_results": 1000}
        if token:
            body["page_token"] = token
        page = rest(base, "/api/2.0/mlflow/runs/search", body)
        runs += page.get("runs", [])
        token = page.get("next_page_token")
        if not token:
            return runs


def tags_of(run: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def params_of(run: dict) -> dict[str, str]:
    return {p["key"]: p["value"] for p in run["data"].get("params", [])}


def metric_history(base: str, run_id: str, key: str) -> list[dict]:
    return rest(base, "/api/2.0/mlflow/metrics/get-history", params={"run_id": run_id, "metric_key": key}).get(
        "metrics", []
    )


# ------------------------------------------------------------------ server
@dataclass
class Server:
    url: str
    port: int
    root: Path
    proc: subprocess.Popen
    log: Path

    def alive(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                return r.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        try:  # uvicorn is a child in the same group: make sure nothing of it is left
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.proc.poll() is None:
            self.proc.wait(timeout=15)


def start_server(root: Path) -> Server:
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = root / "server.log"
    cmd = [
        *mlflow_command(), "server",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", "1",
        "--backend-store-uri", f"sqlite:///{root}/srv.db",
        "--artifacts-destination", str(root / "artifacts"),
        "--serve-artifacts",
    ]  # fmt: skip
    env = clean_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(url=f"http://127.0.0.1:{port}", port=port, root=root, proc=proc, log=log)
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            server.stop()
            raise RuntimeError(f"mlflow server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        if server.alive():
            return server
        time.sleep(0.25)
    server.stop()
    raise RuntimeError(f"mlflow server not healthy after {HEALTH_TIMEOUT_S}s:\n{log.read_text()[-3000:]}")
