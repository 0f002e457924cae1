"""``experiment=paper``: every combination of its sweep composes and validates, with the paper's fixed step
for AC, SMAC and AC-CG, TRPO's KL line search, no curvature for PPO, and a batch of ~1000 frames."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from ngac.cli import precheck

STEP_RULES = {"identity": "fixed", "sherman_morrison": "fixed", "cg": "fixed", "trpo": "line_search"}


def _compose(*overrides: str, hydra: bool = False) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="ngac.configs", version_base=None):
        cfg = compose("config", overrides=["experiment=paper", *overrides], return_hydra_config=hydra)
    GlobalHydra.instance().clear()
    return cfg


def _sweep() -> dict[str, list[str]]:
    params = _compose(hydra=True).hydra.sweeper.params
    return {key: str(value).split(",") for key, value in params.items()}


def test_the_sweep_covers_the_papers_tasks_methods_and_three_seeds():
    assert _sweep() == {
        "algo": ["identity", "sherman_morrison", "cg", "trpo", "ppo"],
        "env": ["pendulum", "halfcheetah", "hopper", "walker2d", "swimmer"],
        "seed": ["0", "1", "2"],
    }


@pytest.mark.parametrize("algo", ["identity", "sherman_morrison", "cg", "trpo", "ppo"])
def test_every_combination_composes_and_validates(algo):
    sweep = _sweep()
    # ngac's own pre-run check, on every (env, seed) of this algo: raises ConfigError on a bad combination
    precheck(["experiment=paper", f"algo={algo}", f"env={','.join(sweep['env'])}", f"seed={','.join(sweep['seed'])}"])
    for env in sweep["env"]:
        cfg = _compose(f"algo={algo}", f"env={env}")
        agent = OmegaConf.to_container(cfg.agent, resolve=True)
        assert agent["frames_per_batch"] == 1024
        assert cfg.logger.experiment_name == "paper"
        if algo == "ppo":
            assert agent["name"] == "ppo" and cfg.get("curvature") is None
        else:
            assert agent["name"] == "nac"
            assert agent["step_rule"] == STEP_RULES[algo]


def test_the_single_sample_run_group_and_a_step_rule_override_compose():
    combo = ["algo=sherman_morrison", "curvature.mode=single_sample", "env=walker2d"]
    precheck(["experiment=paper", *combo])
    cfg = _compose(*combo)
    assert (cfg.curvature.mode, cfg.agent.step_rule) == ("single_sample", "fixed")
    assert _compose("algo=identity", "agent.step_rule=trust_region").agent.step_rule == "trust_region"
