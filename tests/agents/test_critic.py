"""The critic's (and PPO's) minibatch loop without a host sync per step (issue 20, item 3).

With finite losses the new loop is the old one, bitwise: the old loop is kept here as a reference
(``loss.item()``, a vote, then the step, per minibatch). A non-finite loss anywhere in an update
leaves the networks and the optimiser state exactly as they were before it.
"""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
from tensordict import TensorDict

from ngac.agents import NaturalGradientAgent, PPOAgent
from ngac.agents import metrics as M
from ngac.agents.guard import Snapshot

from .test_base import AGENT_CFG

OBS, ACT, N = 5, 2, 96
NAC_CFG = {**AGENT_CFG, "critic": {"hidden_sizes": [16, 16], "lr": 1e-2, "epochs": 3, "minibatch_size": 20}}
PPO_CFG = {**NAC_CFG, "name": "ppo", "clip_epsilon": 0.2, "entropy_coeff": 0.01, "critic_coeff": 0.5,
           "epochs": 3, "minibatch_size": 20, "max_grad_norm": 0.5}  # fmt: skip


def _attach(agent):
    """The agent outside a trainer, with its configured optimiser (what Lightning would hand it)."""
    opt = agent.configure_optimizers()
    agent.optimizers = lambda use_pl_optimizer=True: opt
    return agent, opt


def _data(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(N, OBS, generator=g)
    target = obs[:, 0] - 2 * obs[:, 1] + 0.1 * torch.randn(N, generator=g)
    return obs, target


def _old_critic_loop(agent, opt, obs, target) -> list[float]:
    """The loop before issue 20: a host sync and a vote per minibatch, a non-finite step skipped."""
    ccfg, net, losses = agent.cfg["critic"], agent.critic.module, []
    for _ in range(ccfg["epochs"]):
        for idx in torch.randperm(target.shape[0]).split(ccfg["minibatch_size"]):
            loss = 0.5 * (net(obs[idx]).squeeze(-1) - target[idx]).pow(2).mean()
            value = loss.item()
            if not math.isfinite(value):
                continue
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(value)
    return losses


def _state(agent, opt) -> list[torch.Tensor]:
    tensors = [p.detach().clone() for p in agent.parameters()]
    for s in opt.state_dict()["state"].values():
        tensors += [v.clone() if isinstance(v, torch.Tensor) else torch.tensor(v) for v in s.values()]
    return tensors


def _equal(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def test_critic_update_is_bitwise_the_old_loop():
    torch.manual_seed(0)
    new, new_opt = _attach(NaturalGradientAgent(NAC_CFG, {"name": "identity"}, OBS, ACT, "continuous"))
    old = copy.deepcopy(new)
    old_opt = old.configure_optimizers()
    obs, target = _data()
    for update in range(3):  # the second and later updates start from a warm Adam state
        torch.manual_seed(100 + update)
        metrics, applied = new._update_critic(obs, target)
        torch.manual_seed(100 + update)
        losses = _old_critic_loop(old, old_opt, obs, target)
        assert applied and metrics[M.VALUE_LOSS] == sum(losses) / len(losses)
        assert _equal(_state(new, new_opt), _state(old, old_opt))
    assert new.skipped_updates == 0


@pytest.mark.parametrize("poison", [float("nan"), float("inf")])
@pytest.mark.parametrize("warm", [False, True])
def test_a_nonfinite_target_leaves_critic_and_optimiser_unchanged(poison, warm):
    torch.manual_seed(0)
    agent, opt = _attach(NaturalGradientAgent(NAC_CFG, {"name": "identity"}, OBS, ACT, "continuous"))
    obs, target = _data()
    if warm:
        agent._update_critic(obs, target)
    before, state_before = _state(agent, opt), copy.deepcopy(opt.state_dict())
    bad = target.clone()
    bad[N - 1] = poison  # in one minibatch of each epoch only: most steps are finite
    with pytest.warns(RuntimeWarning, match="critic update discarded"):
        metrics, applied = agent._update_critic(obs, bad)
    assert not applied and math.isnan(metrics[M.VALUE_LOSS])
    assert _equal(_state(agent, opt), before)
    assert opt.state_dict()["state"].keys() == state_before["state"].keys()
    assert all(p.grad is None for p in agent.critic.parameters())
    # and the critic still learns afterwards
    _, applied = agent._update_critic(obs, target)
    assert applied and not _equal(_state(agent, opt), before)


def _flat(obs, target, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return TensorDict({"observation": obs, "action": torch.randn(N, ACT, generator=g)}, batch_size=[N]), target


def test_a_discarded_critic_update_counts_once_per_update():
    torch.manual_seed(0)
    agent, _ = _attach(NaturalGradientAgent(NAC_CFG, {"name": "identity"}, OBS, ACT, "continuous"))
    obs, target = _data()
    flat, _ = _flat(obs, target)
    bad = target.clone()
    bad[0] = float("nan")
    adv = torch.randn(N)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        agent.optimise(flat, adv, bad)  # critic refused, actor applied
        assert agent.skipped_updates == 1
        agent.optimise(flat, torch.full_like(adv, float("nan")), bad)  # both refused: still one update
        assert agent.skipped_updates == 2
        agent.optimise(flat, adv, target)
        assert agent.skipped_updates == 2


# ------------------------------------------------------------------------------------------------ PPO
def _ppo_batch(agent, obs, target):
    flat, _ = _flat(obs, target)
    with torch.no_grad():
        dist = agent.actor.get_dist(flat.select("observation").clone(False))
        flat.set(agent.actor.log_prob_keys[0], dist.log_prob(flat["action"]))
    flat.set("value_target", target.unsqueeze(-1))
    return flat


def _old_ppo_loop(agent, opt, flat, adv) -> dict[str, list[float]]:
    """PPOAgent.optimise before issue 20 (a host sync per minibatch and per logged part)."""
    data = flat.clone(False)
    data.set("advantage", adv.unsqueeze(-1))
    sums: dict[str, list[float]] = {"loss_objective": [], "loss_critic": [], "kl_approx": [], "clip_fraction": []}
    for _ in range(agent.cfg["epochs"]):
        for idx in torch.randperm(data.shape[0]).split(agent.cfg["minibatch_size"]):
            out = agent.loss(data[idx])
            loss = out["loss_objective"] + out["loss_critic"] + out.get("loss_entropy", torch.zeros(()))
            if not bool(torch.isfinite(loss)):
                continue
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(agent.loss.parameters(), agent.cfg["max_grad_norm"])
            opt.step()
            for k in sums:
                if k in out.keys():
                    sums[k].append(float(out[k].detach().mean()))
    return sums


def test_ppo_update_is_bitwise_the_old_loop():
    torch.manual_seed(0)
    new, new_opt = _attach(PPOAgent(PPO_CFG, OBS, ACT, "continuous"))
    torch.manual_seed(0)  # not a deepcopy: the loss module's parameters must stay the networks'
    old = PPOAgent(PPO_CFG, OBS, ACT, "continuous")
    old_opt = old.configure_optimizers()
    assert _equal(_state(new, new_opt), _state(old, old_opt))
    obs, target = _data()
    flat, adv = _ppo_batch(new, obs, target), torch.randn(N)
    for update in range(2):
        torch.manual_seed(200 + update)
        metrics = new.optimise(flat, adv, target)
        torch.manual_seed(200 + update)
        sums = _old_ppo_loop(old, old_opt, flat, adv)
        assert metrics[M.VALUE_LOSS] == sum(sums["loss_critic"]) / len(sums["loss_critic"])
        assert metrics[M.CLIPFRAC] == sum(sums["clip_fraction"]) / len(sums["clip_fraction"])
        assert _equal(_state(new, new_opt), _state(old, old_opt))


def test_a_nonfinite_ppo_loss_leaves_networks_and_optimiser_unchanged():
    torch.manual_seed(0)
    agent, opt = _attach(PPOAgent(PPO_CFG, OBS, ACT, "continuous"))
    obs, target = _data()
    flat, adv = _ppo_batch(agent, obs, target), torch.randn(N)
    agent.optimise(flat, adv, target)  # a warm Adam state
    before = _state(agent, opt)
    bad = target.clone()
    bad[N - 1] = float("nan")
    flat.set("value_target", bad.unsqueeze(-1))
    with pytest.warns(RuntimeWarning, match="skipped"):
        metrics = agent.optimise(flat, adv, bad)
    assert agent.skipped_updates == 1 and math.isnan(metrics[M.VALUE_LOSS])
    assert _equal(_state(agent, opt), before)


def test_snapshot_restores_an_empty_optimiser_state_as_empty():
    net = torch.nn.Linear(3, 1)
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    snap = Snapshot(net.parameters(), opt)
    w = net.weight.detach().clone()
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    assert len(opt.state) == 1 or len(opt.state) == 2
    snap.restore()
    assert len(opt.state) == 0 and torch.equal(net.weight, w)
