"""The comparison logged at the end of a sweep groups by what the sweep ranges over."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf


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
    from ngac.sweeps import group_key

    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="ngac.configs", version_base=None):
        cfg = compose("config", overrides=[o for o in overrides if "," not in o], return_hydra_config=True)
    GlobalHydra.instance().clear()
    OmegaConf.set_struct(cfg, False)
    cfg.hydra.overrides.task = overrides
    assert group_key(cfg) == expected
