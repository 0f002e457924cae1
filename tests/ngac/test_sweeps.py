"""The sweep parent run: its end-of-sweep comparison groups by what the sweep ranges over, it prints the
MLflow UI links, and it is never left RUNNING."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from mlflow import MlflowClient
from omegaconf import DictConfig, OmegaConf

from ngac.sweeps import SWEEP_ENV, SWEEP_PARENT_ENV, SweepParentRun, group_key, sweep_name
from tests.ngac.tracking_utils import clean_env


@pytest.mark.parametrize(
    "overrides,expected",
    [
        (["experiment=damping"], "param:curvature.damping"),
        (["experiment=sm_mode"], "param:curvature.mode"),
        (["experiment=backends"], "algo"),
        (["curvature=identity,kfac", "seed=0,1"], "backend"),
        (["seed=0,1,2"], "algo"),
        (["agent.max_kl=0.01,0.02"], "param:agent.max_kl"),
    ],
)
def test_end_of_sweep_comparison_groups_by_the_swept_key(overrides, expected):
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="ngac.configs", version_base=None):
        cfg = compose("config", overrides=[o for o in overrides if "," not in o], return_hydra_config=True)
    GlobalHydra.instance().clear()
    OmegaConf.set_struct(cfg, False)
    cfg.hydra.overrides.task = overrides
    assert group_key(cfg) == expected


def sweep_config(tmp_path: Path) -> DictConfig:
    """The composed config of ``ngac train -m`` with a tmp sqlite store, experiment and sweep folder."""
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="ngac.configs", version_base=None):
        cfg = compose(
            "config",
            overrides=[
                f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
                "logger.experiment_name=sweeps",
                f"hydra.sweep.dir={tmp_path}/multirun",
            ],
            return_hydra_config=True,
        )
    GlobalHydra.instance().clear()
    OmegaConf.set_struct(cfg, False)
    cfg.hydra.overrides.task = ["curvature=identity,kfac", "seed=0,1"]
    return cfg


def test_parent_run_compares_closes_and_prints_the_ui_links(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a sqlite store keeps artifacts in ./mlruns
    monkeypatch.delenv(SWEEP_ENV, raising=False)
    monkeypatch.delenv(SWEEP_PARENT_ENV, raising=False)
    cfg = sweep_config(tmp_path)
    callback = SweepParentRun()
    callback.on_multirun_start(cfg)
    uri, name, parent = f"sqlite:///{tmp_path}/mlflow.db", sweep_name(cfg), os.environ[SWEEP_PARENT_ENV]
    assert os.environ[SWEEP_ENV] == name == f"sweep-{tmp_path.name}_multirun"
    client = MlflowClient(uri)
    exp_id = client.get_experiment_by_name("sweeps").experiment_id
    assert client.get_run(parent).data.tags["ngac.role"] == "sweep_parent"
    for backend in ("identity", "kfac"):  # what the jobs would log
        child = client.create_run(exp_id, tags={"backend": backend, "sweep": name, "env": "Pendulum-v1"})
        client.log_metric(child.info.run_id, "eval/episode_return", 1.0, step=64)
        client.set_terminated(child.info.run_id)
    callback.on_multirun_end(cfg)

    assert client.get_run(parent).info.status == "FINISHED"
    assert SWEEP_ENV not in os.environ and SWEEP_PARENT_ENV not in os.environ
    listed = {f.path for f in client.list_artifacts(parent, "compare")}
    assert {"compare/learning_curves.png", "compare/summary.md", "compare/summary.csv"} <= listed
    assert (tmp_path / "multirun" / "compare" / "summary.csv").exists()
    out = capsys.readouterr().out.splitlines()
    assert f"sweep {name}: MLflow training runs: run `mlflow ui --backend-store-uri {uri}`, then open " \
        f"http://127.0.0.1:5000/#/experiments/{exp_id}/runs" in out  # fmt: skip
    assert f"sweep {name}: MLflow run: http://127.0.0.1:5000/#/experiments/{exp_id}/runs/{parent}" in out


SWEEP_STOPS = """
import sys
from tests.ngac.test_sweeps import sweep_config
from ngac.sweeps import SweepParentRun
from pathlib import Path

SweepParentRun().on_multirun_start(sweep_config(Path(sys.argv[1])))
raise RuntimeError("a job failed")  # Hydra never calls on_multirun_end
"""


def test_a_sweep_that_stops_early_marks_its_parent_failed(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", SWEEP_STOPS, str(tmp_path)],
        cwd=tmp_path, env=clean_env(PYTHONPATH=str(Path(__file__).parents[2])), capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 1 and "a job failed" in proc.stderr, proc.stderr[-2000:]
    assert "stopped before its end" in proc.stderr
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp_id = client.get_experiment_by_name("sweeps").experiment_id
    (parent,) = client.search_runs([exp_id])
    assert parent.data.tags["ngac.role"] == "sweep_parent" and parent.info.status == "FAILED"
