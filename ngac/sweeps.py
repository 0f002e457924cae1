"""Sweeps: one MLflow parent run per ``ngac train -m``, children grouped under it.

A Hydra callback creates the parent run (tags ``ngac.role=sweep_parent`` and ``sweep=<name>``)
before the launcher starts the jobs, and hands its id to them through the environment (the
joblib launcher's worker processes inherit it). Each job tags its run ``sweep=<name>`` and
``mlflow.parentRunId=<parent>``, so the MLflow UI nests the sweep under one row. When the sweep
ends, ``ngac compare`` runs on it, its plots and tables are logged to the parent run, and the
links that open the sweep in the MLflow UI are printed (:func:`ngac.links.ui_links`). A sweep
that stops before its end (a job's error) marks the parent run FAILED on exit.

A stop signal to the parent (SIGTERM, Ctrl-C, SIGHUP, SIGQUIT, SIGUSR1) stops the sweep the way
it stops one run: it is passed on as SIGTERM to the local launcher's worker processes, so every
running job writes its checkpoint and marks its run KILLED; the first job that ends so stops the
launcher, which starts no further job and ends its workers; the parent run is marked KILLED. A
second signal stops at once.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from mlflow import MlflowClient
from omegaconf import DictConfig

from ngac.compare import compare_runs
from ngac.links import ui_links
from ngac.mlflow_utils import fail_fast, resolve_tracking_uri
from ngac.validate import ConfigError, check_tracking_server

SWEEP_ENV = "NGAC_SWEEP"
SWEEP_PARENT_ENV = "NGAC_SWEEP_PARENT_RUN_ID"
PARENT_ROLE = "sweep_parent"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1)
LOCAL_WORKER = b"popen_loky_posix"
JOB_STOP_TIMEOUT_S = 600  # how long a stopped sweep waits for its running jobs' checkpoints  # in the command line of the joblib launcher's worker processes
GROUP_TAGS = {"algo": "algo", "curvature": "backend", "agent": "agent"}


def sweep_name(config: DictConfig) -> str:
    if config.logger.get("sweep"):
        return str(config.logger.sweep)
    parts = Path(str(config.hydra.sweep.dir)).parts[-2:]
    return "sweep-" + "_".join(parts)


def swept_keys(config: DictConfig) -> list[str]:
    """The keys a sweep ranges over: the sweeper's params and comma-separated overrides."""
    keys = [str(k) for k in (config.hydra.sweeper.get("params") or {})]
    for ov in OverridesParser.create().parse_overrides(list(config.hydra.overrides.task)):
        if ov.is_sweep_override():
            keys.append(ov.get_key_element().lstrip("+~"))
    return list(dict.fromkeys(keys))


def group_key(config: DictConfig) -> str:
    """What the end-of-sweep comparison groups by: the first swept key other than seed and env."""
    for key in swept_keys(config):
        if key not in ("seed", "env"):
            return GROUP_TAGS.get(key, f"param:{key}")
    return "algo"


class SweepParentRun(Callback):
    """The Hydra callback (``hydra.callbacks`` in ``configs/config.yaml``) that owns a sweep's parent run."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        uri = resolve_tracking_uri(config.logger.tracking_uri)
        try:
            if str(config.hydra.launcher.get("_target_", "")).endswith("submitit_launcher.SlurmLauncher"):
                from ngac.slurm import prepare_sweep  # a job shape no node offers fails here, in one line

                prepare_sweep(config.hydra.launcher)
            check_tracking_server(uri)
        except ConfigError as exc:
            print(f"ngac: error: {exc}", file=sys.stderr)
            sys.exit(2)
        client = MlflowClient(uri)
        name = sweep_name(config)
        exp = client.get_experiment_by_name(config.logger.experiment_name)
        exp_id = exp.experiment_id if exp else client.create_experiment(config.logger.experiment_name)
        overrides = " ".join(config.hydra.overrides.task)
        run = client.create_run(
            exp_id, run_name=name, tags={"ngac.role": PARENT_ROLE, "sweep": name, "sweep_overrides": overrides}
        )
        self.client, self.uri, self.name = client, uri, name
        self.experiment_id, self.run_id = exp_id, run.info.run_id
        self.out_dir = Path(str(config.hydra.sweep.dir)) / "compare"
        os.environ[SWEEP_ENV] = name
        os.environ[SWEEP_PARENT_ENV] = run.info.run_id
        self.signum: int | None = None
        self._previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
        for s in STOP_SIGNALS:
            signal.signal(s, self._on_signal)
        atexit.register(self._close, "FAILED")
        print(f"sweep {name}: MLflow parent run {run.info.run_id} at {uri}")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not hasattr(self, "run_id"):
            return
        try:
            result = compare_runs(
                self.uri, self.name, self.out_dir, group_by=group_key(config), parent_run_id=self.run_id
            )
            for line in result["warnings"]:
                print(f"ngac: warning: {line}", file=sys.stderr)
            print(f"sweep {self.name}: comparison in {self.out_dir} and in the parent run's artifacts")
        except Exception as exc:  # noqa: BLE001 - a failed comparison must not fail the sweep
            warnings.warn(f"sweep {self.name}: comparison failed ({type(exc).__name__}: {exc})", stacklevel=2)
        self._close("FINISHED")
        for line in ui_links(self.uri, self.experiment_id, self.run_id):
            print(f"sweep {self.name}: {line}")

    def _on_signal(self, signum: int, frame: Any) -> None:
        """Stop the jobs like one run is stopped (checkpoint, KILLED); a second signal stops at once."""
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        print(f"sweep {self.name}: signal {signum}: stopping the running jobs after their checkpoints", file=sys.stderr)
        workers = local_workers(os.getpid())
        for pid in workers:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        if workers:
            self._wait_for_jobs()

    def _wait_for_jobs(self, timeout_s: float = JOB_STOP_TIMEOUT_S) -> None:
        """Until no job run of this sweep is RUNNING. Meanwhile the launcher cannot act on the first
        job that ended (this handler holds the main thread): it would kill the workers still
        checkpointing. It starts no new job either way: a job that ended on the signal stops it."""
        query = f"tags.`mlflow.parentRunId` = '{self.run_id}' and attributes.status = 'RUNNING'"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with fail_fast():
                    if not self.client.search_runs([self.experiment_id], filter_string=query, max_results=1):
                        return
            except Exception:  # noqa: BLE001 - the store is down: wait for the deadline
                pass
            time.sleep(0.5)

    def _close(self, status: str) -> None:
        """Mark the parent run ``status`` once (the end of the sweep, or the exit of one that stopped early)."""
        atexit.unregister(self._close)
        for s, handler in getattr(self, "_previous", {}).items():
            signal.signal(s, handler)
        if status == "FAILED" and getattr(self, "signum", None) is not None:
            status = "KILLED"
        os.environ.pop(SWEEP_ENV, None)
        os.environ.pop(SWEEP_PARENT_ENV, None)
        try:
            with fail_fast():
                self.client.set_terminated(self.run_id, status=status)
        except Exception as exc:  # noqa: BLE001
            warnings.warn(
                f"sweep {self.name}: could not mark the parent run {status} ({type(exc).__name__})", stacklevel=2
            )
        if status != "FINISHED":
            print(
                f"sweep {self.name}: stopped before its end; parent run {self.run_id} marked {status}", file=sys.stderr
            )


def local_workers(parent: int) -> list[int]:
    """The joblib launcher's worker processes among ``parent``'s children (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == parent and LOCAL_WORKER in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return found
