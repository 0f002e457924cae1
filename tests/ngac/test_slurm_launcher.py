"""The SLURM launcher without a cluster: the job script it renders (a stand-in `sbatch` keeps it), its
defaults, and ngac's checks (``ngac.slurm``) on made-up ``sinfo`` answers. A real one-node SLURM is
in test_slurm_cluster.py."""

from __future__ import annotations

import os

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra

submitit = pytest.importorskip("submitit")

from ngac.slurm import (  # noqa: E402 - needs the slurm extra
    SUBMITIT_SLURM,
    Node,
    QuietSacct,
    SlurmLauncher,
    _gpus,
    _minutes,
    never_starts,
    prepare_sweep,
    shape_problems,
)


def test_slurm_launcher_renders_sbatch(tmp_path, monkeypatch):
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="ngac.configs", version_base=None):
        cfg = compose(
            "config",
            overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_node=1"],
            return_hydra_config=True,
        )
    GlobalHydra.instance().clear()
    launcher = cfg.hydra.launcher
    assert launcher.partition == "gpu" and launcher.timeout_min == 240 and launcher.gpus_per_node == 1

    # Submit through submitit's public executor to a stand-in `sbatch` that keeps the script.
    bin_dir, captured = tmp_path / "bin", tmp_path / "captured.sh"
    bin_dir.mkdir()
    fake = bin_dir / "sbatch"
    fake.write_text(f'#!/bin/sh\ncp "$1" {captured}\necho "Submitted batch job 4242"\n')
    fake.chmod(0o755)
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")  # submitit only checks that it exists
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    executor = submitit.SlurmExecutor(folder=tmp_path / "jobs")
    executor.update_parameters(
        time=launcher.timeout_min,
        partition=launcher.partition,
        cpus_per_task=launcher.cpus_per_task,
        gpus_per_node=launcher.gpus_per_node,
        ntasks_per_node=launcher.tasks_per_node,
        mem=f"{launcher.mem_gb}GB",
        setup=list(launcher.setup),
    )
    job = executor.submit(print, "ngac train seed=0")
    assert job.job_id == "4242"
    script = captured.read_text()
    for line in (
        "#SBATCH --partition=gpu",
        "#SBATCH --time=240",
        "#SBATCH --cpus-per-task=1",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --mem=4GB",
        "export OMP_NUM_THREADS=1",
    ):
        assert line in script, line


def test_slurm_launcher_defaults_fit_a_laptop_and_requeue():
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="ngac.configs", version_base=None):
        cfg = compose("config", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    GlobalHydra.instance().clear()
    launcher = cfg.hydra.launcher
    assert launcher._target_ == SUBMITIT_SLURM  # ngac.sweeps swaps in ngac.slurm.SlurmLauncher
    assert (launcher.cpus_per_task, launcher.mem_gb, launcher.gpus_per_node) == (1, 4, 0)
    assert launcher.max_num_timeout > 0 and launcher.signal_delay_s > 0


def test_prepare_sweep_registers_ngacs_launcher_under_submitits_name(monkeypatch):
    from hydra.core.plugins import Plugins

    monkeypatch.setattr("ngac.slurm.partition_nodes", lambda partition: None)  # no sinfo here
    registry = Plugins.instance().class_name_to_class
    monkeypatch.setitem(registry, SUBMITIT_SLURM, registry.get(SUBMITIT_SLURM))
    prepare_sweep({"cpus_per_task": 1})
    assert registry[SUBMITIT_SLURM] is SlurmLauncher


@pytest.mark.parametrize(
    "limit,minutes",
    [("infinite", float("inf")), ("30:00", 30), ("4:00:00", 240), ("1-00:00:00", 1440), ("2-12:30:00", 3630)],
)
def test_sinfo_time_limits(limit, minutes):
    assert _minutes(limit) == minutes


def test_sinfo_gres_gpus():
    assert _gpus("(null)") == 0 and _gpus("gpu:4") == 4 and _gpus("gpu:a100:2(S:0-1),gpu:v100:1") == 3


def test_a_shape_no_node_offers_names_each_resource_and_its_limit():
    nodes = [Node("n1", 8, 32_000, 0), Node("g1", 16, 64_000, 2)]
    params = {"cpus_per_task": 32, "mem_gb": 128, "gpus_per_node": 4, "nodes": 1, "timeout_min": 600}
    assert shape_problems(params, "gpu", nodes, 480) == [
        "hydra.launcher.cpus_per_task=32 exceeds the 16 CPUs of the largest node (g1) in partition gpu; "
        "set hydra.launcher.cpus_per_task<=16",
        "hydra.launcher.mem_gb=128 exceeds the 64000 MB of the largest node (g1) in partition gpu; "
        "set hydra.launcher.mem_gb<=62",
        "hydra.launcher.gpus_per_node=4 exceeds the 2 GPUs of the largest node (g1) in partition gpu; "
        "set hydra.launcher.gpus_per_node<=2",
        "hydra.launcher.timeout_min=600 exceeds the 480-minute limit of partition gpu; "
        "set hydra.launcher.timeout_min<=480",
    ]
    ok = {"cpus_per_task": 4, "mem_gb": 4, "gpus_per_node": 1, "nodes": 1, "timeout_min": 60}
    assert shape_problems(ok, "gpu", nodes, 480) == []
    assert shape_problems({**ok, "nodes": 2}, "gpu", nodes, 480) == [
        "hydra.launcher.nodes=2 but only 1 node(s) in partition gpu fit one task's shape"
    ]


@pytest.mark.parametrize(
    "reason,never",
    [("PartitionConfig", True), ("QOSMaxCpuPerJobLimit", True), ("Resources", False), ("Priority", False),
     ("BeginTime", False), ("AssocGrpCpuLimit", False)],
)  # fmt: skip
def test_pending_reasons_that_never_clear(reason, never):
    assert never_starts(reason) is never


def test_sacct_without_accounting_is_one_line(tmp_path, monkeypatch, capsys):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sacct").write_text("#!/bin/sh\necho 'Slurm accounting storage is disabled' >&2\nexit 1\n")
    (bin_dir / "sacct").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    watcher = QuietSacct(delay_s=60)
    watcher.register_job("42_0")
    for _ in range(3):
        watcher.update()
    assert watcher.get_state("42_0", mode="cache") == "UNKNOWN"
    assert capsys.readouterr().err.splitlines() == [
        "ngac: sacct does not answer (Slurm accounting storage is disabled); following the jobs with squeue"
    ]


def test_a_requeued_job_resumes_from_its_own_last_checkpoint(tmp_path, monkeypatch):
    from ngac.requeue import requeued_checkpoint

    last = tmp_path / "checkpoints" / "last.ckpt"
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    last.parent.mkdir()
    last.write_bytes(b"ckpt")
    assert requeued_checkpoint(tmp_path) is None  # a first start: a checkpoint there is not ours to resume
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert requeued_checkpoint(tmp_path) == last
    last.unlink()
    assert requeued_checkpoint(tmp_path) is None  # requeued before its first checkpoint: start over
