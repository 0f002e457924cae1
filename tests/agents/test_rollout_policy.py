"""The collector's lean sampling path must be the actor's distribution, to the last digit."""

from __future__ import annotations

import math

import pytest
import torch
from tensordict import TensorDict
from torchrl.envs.utils import ExplorationType, set_exploration_type

from ngac.agents.networks import RolloutPolicy, make_actor

N = 40_000


def _actor(kind: str, act_dim: int):
    torch.manual_seed(0)
    actor = make_actor(5, act_dim, kind, [16, 16], "tanh", -0.3).double()
    with torch.no_grad():  # move away from the near-zero initial head so the test has signal
        for p in actor.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return actor


def _obs(n: int = N) -> TensorDict:
    return TensorDict({"observation": torch.randn(n, 5, dtype=torch.float64)}, [n])


@pytest.mark.parametrize("kind,act_dim", [("continuous", 3), ("discrete", 4)])
def test_log_prob_is_the_actor_distribution_log_prob(kind, act_dim):
    actor = _actor(kind, act_dim)
    policy = RolloutPolicy(actor)
    out = policy(_obs(256))
    with torch.no_grad():
        ref = actor.get_dist(out.select("observation")).log_prob(out["action"])
    torch.testing.assert_close(out[policy.log_prob_key], ref, rtol=0, atol=1e-12)
    assert policy.log_prob_key == actor.log_prob_keys[0]


def test_gaussian_samples_have_the_actor_mean_and_std():
    actor = _actor("continuous", 3)
    td = _obs()
    out = RolloutPolicy(actor)(td.clone())
    with torch.no_grad():
        dist = actor.get_dist(td.clone())
    z = (out["action"] - dist.mean) / dist.stddev  # standard normal if the sampler is right
    assert abs(float(z.mean())) < 4 / math.sqrt(z.numel())
    assert abs(float(z.std()) - 1) < 0.02


def test_categorical_samples_have_the_actor_probabilities():
    actor = _actor("discrete", 4)
    td = TensorDict({"observation": torch.randn(1, 5, dtype=torch.float64).expand(N, 5)}, [N])
    out = RolloutPolicy(actor)(td.clone())
    with torch.no_grad():
        probs = actor.get_dist(td[:1].clone()).probs[0]
    freq = torch.bincount(out["action"], minlength=4).double() / N
    assert torch.all((freq - probs).abs() < 4 * (probs * (1 - probs) / N).sqrt() + 1e-3)


@pytest.mark.parametrize("kind,act_dim", [("continuous", 3), ("discrete", 4)])
def test_deterministic_mode_matches_the_actor(kind, act_dim):
    actor = _actor(kind, act_dim)
    td = _obs(64)
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        mine, ref = RolloutPolicy(actor)(td.clone()), actor(td.clone())
    torch.testing.assert_close(mine["action"], ref["action"])
    torch.testing.assert_close(mine["action_log_prob"], ref["action_log_prob"], rtol=0, atol=1e-12)


def test_shares_the_actor_parameters():
    actor = _actor("continuous", 3)
    policy = RolloutPolicy(actor)
    td = _obs(8)
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        before = policy(td.clone())["action"]
        actor.module[0].module.mean[-1].bias.add_(1.0)  # what an update does to the actor
        after = policy(td.clone())["action"]
    torch.testing.assert_close(after, before + 1.0)


def test_refuses_a_foreign_actor():
    from tensordict.nn import TensorDictModule
    from torchrl.modules import ProbabilisticActor, TanhNormal

    net = TensorDictModule(torch.nn.Linear(5, 6), in_keys=["observation"], out_keys=["loc"])
    foreign = ProbabilisticActor(net, in_keys=["loc"], distribution_class=TanhNormal)
    with pytest.raises(TypeError, match="make_actor"):
        RolloutPolicy(foreign)
