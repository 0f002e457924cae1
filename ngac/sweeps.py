"""Sweeps: one MLflow parent run per ``ngac train -m``, children grouped under it.

A Hydra callback creates the parent run (tags ``ngac.role=sweep_parent`` and ``sweep=<name>``)
before the launcher starts the jobs, and hands its id to them through the environment (the
joblib launcher's worker processes inherit it). Each job tags its run ``sweep=<name>`` and
``mlflow.parentRunId=<parent>``, so the MLflow UI nests the sweep under one row and its compare
view shows it in one click. When the sweep ends, ``ngac compare`` runs on it and its plots and
tables are logged to the parent run.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

SWEEP_ENV = "NGAC_SWEEP"
SWEEP_PARENT_ENV = "NGAC_SWEEP_PARENT_RUN_ID"


def sweep_name(config: DictConfig) -> str:
    if config.logger.get("sweep"):
        return str(config.logger.sweep)
    parts = Path(str(config.hydra.sweep.dir)).parts[-2:]
    return "sweep-" + "_".join(parts)


GROUP_TAGS = {"algo": "algo", "curvature": "backend", "agent": "agent"}


def swept_keys(config: DictConfig) -> list[str]:
    """The keys a sweep ranges over: the sweeper's params and comma-separated overrides."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

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
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from mlflow import MlflowClient

        from ngac.agents.tracking import check_tracking_server, resolve_tracking_uri
        from ngac.validate import ConfigError

        uri = resolve_tracking_uri(config.logger.tracking_uri)
        try:
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
            exp_id,
            run_name=name,
            tags={"ngac.role": "sweep_parent", "sweep": name, "sweep_overrides": overrides},
        )
        self.client, self.uri, self.name, self.run_id = client, uri, name, run.info.run_id
        self.out_dir = Path(str(config.hydra.sweep.dir)) / "compare"
        os.environ[SWEEP_ENV] = name
        os.environ[SWEEP_PARENT_ENV] = run.info.run_id
        print(f"sweep {name}: MLflow parent run {run.info.run_id} at {uri}")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not hasattr(self, "run_id"):
            return
        from ngac.agents.tracking import _fail_fast

        status = "FINISHED"
        try:
            from ngac.compare import compare_runs

            result = compare_runs(
                self.uri, self.name, self.out_dir, group_by=group_key(config), parent_run_id=self.run_id
            )
            print(f"sweep {self.name}: comparison in {self.out_dir} and in the parent run's artifacts")
            del result
        except Exception as exc:  # noqa: BLE001 - a failed comparison must not fail the sweep
            warnings.warn(f"sweep {self.name}: comparison failed ({type(exc).__name__}: {exc})", stacklevel=2)
        try:
            with _fail_fast():
                self.client.set_terminated(self.run_id, status=status)
        except Exception as exc:  # noqa: BLE001
            warnings.warn(f"sweep {self.name}: could not close the parent run ({type(exc).__name__})", stacklevel=2)
        os.environ.pop(SWEEP_ENV, None)
        os.environ.pop(SWEEP_PARENT_ENV, None)
