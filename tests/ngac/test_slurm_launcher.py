"""The SLURM launcher config renders a job script without a cluster."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra

submitit = pytest.importorskip("submitit")


def test_slurm_launcher_renders_sbatch(tmp_path):
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="ngac.configs", version_base=None):
        cfg = compose(
            "config",
            overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_node=1"],
            return_hydra_config=True,
        )
    GlobalHydra.instance().clear()
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert launcher.partition == "gpu" and launcher.timeout_min == 240 and launcher.cpus_per_task == 4

    # The function submitit's SlurmExecutor renders its sbatch file with (no srun needed).
    from submitit.slurm.slurm import _make_sbatch_string

    script = _make_sbatch_string(
        command="ngac train seed=0",
        folder=tmp_path,
        time=launcher.timeout_min,
        partition=launcher.partition,
        cpus_per_task=launcher.cpus_per_task,
        gpus_per_node=launcher.gpus_per_node,
        ntasks_per_node=launcher.tasks_per_node,
        mem=f"{launcher.mem_gb}GB",
        setup=list(launcher.setup),
        array_parallelism=launcher.array_parallelism,
    )
    for line in (
        "#SBATCH --partition=gpu",
        "#SBATCH --time=240",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --mem=16GB",
        "export OMP_NUM_THREADS=1",
    ):
        assert line in script, line
