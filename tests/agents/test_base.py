"""The on-policy base: advantage normalisation, the checkpoint hooks, the metric table."""

from __future__ import annotations

from pathlib import Path

import torch

from ngac.agents import AGENTS, NaturalGradientAgent, PPOAgent
from ngac.agents import metrics as M
from ngac.agents.base import normalize_advantages

AGENT_CFG = {
    "hidden_sizes": [8],
    "activation": "tanh",
    "init_log_std": -0.5,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "normalize_advantages": True,
    "step_rule": "trust_region",
    "lr": 0.01,
    "max_kl": 0.01,
    "line_search": {"max_backtracks": 10, "shrink": 0.5},
    "explode_factor": 100.0,
    "critic": {"hidden_sizes": [8], "lr": 1e-3, "epochs": 1, "minibatch_size": 4},
}


def test_normalize_advantages_batch_of_one_stays_finite():
    assert torch.equal(normalize_advantages(torch.tensor([3.0])), torch.tensor([3.0]))
    out = normalize_advantages(torch.tensor([1.0, 2.0, 3.0, 6.0]))
    assert abs(float(out.mean())) < 1e-6 and abs(float(out.std()) - 1) < 1e-6


def test_checkpoint_hooks_round_trip_counters_and_curvature_state():
    a = NaturalGradientAgent(AGENT_CFG, {"name": "kfac", "damping": 0.1}, 3, 2, "continuous")
    a.frames, a.updates, a.skipped_updates = 640, 20, 1
    a.curvature.num_updates = 20
    a.run_meta = {"config": {"x": 1}, "mlflow_run_id": "abc"}
    ckpt: dict = {}
    a.on_save_checkpoint(ckpt)
    assert ckpt["ngac"]["format"] == "ngac-checkpoint" and ckpt["ngac"]["mlflow_run_id"] == "abc"
    b = NaturalGradientAgent(AGENT_CFG, {"name": "kfac", "damping": 0.1}, 3, 2, "continuous")
    b.on_load_checkpoint(ckpt)
    assert (b.frames, b.updates, b.skipped_updates) == (640, 20, 1)
    assert b.curvature.num_updates == 20
    assert b.run_meta["config"] == {"x": 1}


def test_ppo_has_no_curvature_and_names_itself():
    cfg = {"agent": {**AGENT_CFG, "name": "ppo", "clip_epsilon": 0.2, "entropy_coeff": 0.0, "critic_coeff": 0.5}}
    agent = PPOAgent.from_config(cfg, 3, 2, "continuous")
    assert not hasattr(agent, "curvature") and not PPOAgent.uses_curvature
    assert PPOAgent.algo_name(cfg) == "ppo"
    assert NaturalGradientAgent.algo_name({"curvature": {"name": "diagonal"}}) == "diagonal"
    assert set(AGENTS) == {"nac", "ppo"}


def test_readme_lists_every_metric_with_its_unit():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [name for name in M.METRICS if f"`{name}`" not in readme]
    assert not missing, f"README metric table lacks {missing}; paste ngac.agents.metrics.markdown_table()"
    assert all(unit for unit, _ in M.METRICS.values())


def test_explained_variance_is_the_critic_gae_used_not_the_refitted_one():
    """losses/explained_variance scores the values GAE read (before the critic update), as CleanRL and SB3 do:
    a critic refitted to these very targets would score its own fit."""
    from tensordict import TensorDict
    from torchrl.objectives.value import GAE

    from ngac.agents.base import explained_variance

    torch.manual_seed(0)
    agent = NaturalGradientAgent(AGENT_CFG, {"name": "identity"}, 3, 2, "continuous")
    n, t = 4, 8
    done = torch.zeros(n, t, 1, dtype=torch.bool)
    batch = TensorDict(
        {
            "observation": torch.randn(n, t, 3),
            "action": torch.randn(n, t, 2),
            "next": {
                "observation": torch.randn(n, t, 3),
                "reward": torch.randn(n, t, 1),
                "done": done,
                "terminated": done.clone(),
                "episode_return": torch.zeros(n, t, 1),
                "episode_length": torch.zeros(n, t, 1, dtype=torch.long),
            },
        },
        batch_size=[n, t],
    )
    reference = batch.clone()
    with torch.no_grad():
        GAE(gamma=0.99, lmbda=0.95, value_network=agent.critic)(reference)
    flat = reference.reshape(-1)
    before = explained_variance(flat["state_value"].squeeze(-1), flat["value_target"].squeeze(-1))

    def refit(flat_batch, adv, target):  # stands in for the critic update: a different critic afterwards
        with torch.no_grad():
            for p in agent.critic.parameters():
                p.add_(1.0)
        return {}

    agent.optimise = refit
    agent.training_step(iter([(batch, 0, 0)]))
    with torch.no_grad():
        after = explained_variance(agent.critic(flat.select("observation"))["state_value"].squeeze(-1),
                                   flat["value_target"].squeeze(-1))  # fmt: skip
    assert agent.last_metrics[M.EXPLAINED_VARIANCE] == before
    assert abs(after - before) > 1e-3
