"""The critic update alone: the old loop (a host sync, a vote and Lightning's wrappers per step) against
the agent's ``_update_critic``, on the same data, inside a Lightning fit, in one process.

    taskset -c 0 python benchmarks/critic_update.py [--repeats 15] [--epochs 10] [--minibatch 64] [--device cpu]

HalfCheetah's sizes (17 observations, the default 64x64 critic, 1024-sample batches). Every variant
starts from the same critic and Adam state and the same seed, so all must end bitwise equal (checked).
Variants, interleaved and rotated per repeat so that machine drift falls on all of them:

* ``old``: per step ``loss.item()``, ``all_ranks`` (a vote; a collective under DDP), ``manual_backward``
  and Lightning's optimiser wrapper (the loop before issue 20);
* ``no-sync``: the same without ``item`` and the vote, still through Lightning's wrappers;
* ``new``: ``NaturalGradientAgent._update_critic`` (no per-step sync, torch's optimiser, one check).

Prints the median ms per update and per step of each, and new/old per repeat (median, min, max).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import lightning as L
import torch
import yaml

from ngac.agents import NaturalGradientAgent

REPO = Path(__file__).resolve().parent.parent


def old_loop(agent: NaturalGradientAgent, obs: torch.Tensor, target: torch.Tensor, sync: bool = True) -> None:
    opt, ccfg, net = agent.optimizers(), agent.cfg["critic"], agent.critic.module
    for _ in range(ccfg["epochs"]):
        for idx in torch.randperm(target.shape[0], device=target.device).split(ccfg["minibatch_size"]):
            loss = 0.5 * (net(obs[idx]).squeeze(-1) - target[idx]).pow(2).mean()
            if sync and not agent.all_ranks(math.isfinite(loss.item())):
                continue
            opt.zero_grad()
            agent.manual_backward(loss)
            opt.step()


VARIANTS = {
    "old": lambda a, o, t: old_loop(a, o, t, sync=True),
    "no-sync": lambda a, o, t: old_loop(a, o, t, sync=False),
    "new": lambda a, o, t: a._update_critic(o, t),
}


class Bench(NaturalGradientAgent):
    def __init__(self, args: argparse.Namespace, *a, **k) -> None:
        super().__init__(*a, **k)
        self.args = args
        self.times: dict[str, list[float]] = {v: [] for v in VARIANTS}

    def training_step(self, batch, batch_idx) -> None:
        args, dev = self.args, self.device
        g = torch.Generator().manual_seed(0)
        obs = torch.randn(args.batch, 17, generator=g).to(dev)
        target = (obs[:, :3].sum(-1) + 0.1 * torch.randn(args.batch, generator=g)).to(dev)
        VARIANTS["new"](self, obs, target)  # Adam's state exists: every variant starts from a warm optimiser
        opt = self.optimizers(use_pl_optimizer=False)
        start_params = {k: v.clone() for k, v in self.critic.state_dict().items()}
        start_opt = _clone(opt.state_dict())
        ends: dict[str, list[torch.Tensor]] = {}
        names = list(VARIANTS)
        for r in range(args.repeats + 1):  # repeat 0 warms up every variant and is dropped
            for name in names[r % len(names) :] + names[: r % len(names)]:
                self.critic.load_state_dict(start_params)
                opt.load_state_dict(_clone(start_opt))
                torch.manual_seed(r)
                sync(dev)
                t0 = time.perf_counter()
                VARIANTS[name](self, obs, target)
                sync(dev)
                if r:
                    self.times[name].append((time.perf_counter() - t0) * 1e3)
                ends[name] = [p.detach().clone() for p in self.critic.parameters()]
            ref = ends["old"]
            self.equal = all(all(torch.equal(a, b) for a, b in zip(ref, e)) for e in ends.values())
            if not self.equal:
                raise AssertionError(f"repeat {r}: the variants ended with different critics")


def _clone(state: dict) -> dict:
    import copy

    return copy.deepcopy(state)


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--minibatch", type=int, default=64)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    agent_cfg = yaml.safe_load((REPO / "configs" / "agent" / "nac.yaml").read_text())
    agent_cfg["critic"].update(epochs=args.epochs, minibatch_size=args.minibatch)
    model = Bench(args, agent_cfg, {"name": "identity"}, 17, 6, "continuous")
    trainer = L.Trainer(
        accelerator="gpu" if args.device.startswith("cuda") else "cpu", devices=1, max_epochs=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(model, torch.utils.data.DataLoader(torch.zeros(1, 1), batch_size=1))
    steps = args.epochs * math.ceil(args.batch / args.minibatch)
    med = {k: statistics.median(v) for k, v in model.times.items()}
    ratio = [n / o for n, o in zip(model.times["new"], model.times["old"])]
    print(f"critic update, {args.epochs} epochs x minibatch {args.minibatch} of {args.batch} ({steps} steps), "
          f"{args.device}, torch {torch.__version__}, {args.repeats} repeats; all variants bitwise equal: {model.equal}")  # fmt: skip
    print("| variant | ms per update (median) | min | max | ms per step |")
    print("|---|---|---|---|---|")
    for k, v in model.times.items():
        print(f"| {k} | {med[k]:.1f} | {min(v):.1f} | {max(v):.1f} | {med[k] / steps:.3f} |")
    print(f"new / old per repeat: median {statistics.median(ratio):.2f} (min {min(ratio):.2f}, max {max(ratio):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
