"""The critic update on a GPU: eager against one CUDA graph per Adam step and against ``torch.compile``.

    python benchmarks/critic_gpu.py [--repeats 10] [--epochs 10] [--minibatch 64] [--batch 1024]

HalfCheetah's sizes (17 observations, the default 64x64 tanh critic, 1024-sample batches, 10 x 64 =
160 Adam steps). Every variant starts from the same critic and Adam state and draws the same minibatch
indices, so they differ only by kernels; the maximum parameter difference to eager is printed.

* ``eager``: ``agents/guard.py``'s ``fit_value`` with fused Adam, as the agent runs it;
* ``graph``: one step (gather, forward, backward, fused capturable Adam) captured once as a CUDA graph
  and replayed per minibatch, the minibatch's indices copied into a static buffer first;
* ``compile``: the same step function under ``torch.compile`` (default mode).

Compilation and capture are timed apart (``setup ms``) from the updates. Prints a Markdown table: median
ms per update and per step, and the ratio to eager per repeat.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import torch


def make(args, dev):
    from ngac.agents.networks import make_critic

    torch.manual_seed(0)
    net = make_critic(17, [64, 64], "tanh").module.to(dev)
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(args.batch, 17, generator=g).to(dev)
    target = (obs[:, :3].sum(-1) + 0.1 * torch.randn(args.batch, generator=g, device="cpu").to(dev)).to(dev)
    return net, obs, target


def indices(args, dev, seed):
    torch.manual_seed(seed)
    return [i for _ in range(args.epochs) for i in torch.randperm(args.batch, device=dev).split(args.minibatch)]


def eager(net, opt, obs, target, idxs):
    for idx in idxs:
        loss = 0.5 * (net(obs[idx]).squeeze(-1) - target[idx]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


class Stepper:
    """One Adam step on the minibatch in ``self.idx`` (a static buffer), as a function of nothing."""

    def __init__(self, net, opt, obs, target, minibatch):
        self.net, self.opt, self.obs, self.target = net, opt, obs, target
        self.idx = torch.zeros(minibatch, dtype=torch.long, device=obs.device)

    def __call__(self):
        loss = 0.5 * (self.net(self.obs[self.idx]).squeeze(-1) - self.target[self.idx]).pow(2).mean()
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=False)
        return loss.detach()


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def save(net, opt) -> list[torch.Tensor]:
    return [t.detach().clone() for t in tensors(net, opt)]


@torch.no_grad()
def load(net, opt, saved: list[torch.Tensor]) -> None:
    """In place: a captured graph (and compiled code) hold these very tensors."""
    for t, v in zip(tensors(net, opt), saved):
        t.copy_(v)


def tensors(net, opt) -> list[torch.Tensor]:
    out = list(net.parameters())
    for q in net.parameters():
        out += [v for _, v in sorted(opt.state[q].items()) if isinstance(v, torch.Tensor)]
    return out


def graphed(stepper: Stepper):
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up on a side stream, as CUDA graphs require
        for _ in range(3):
            stepper()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        stepper()
    return graph


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--minibatch", type=int, default=64)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--variants", default="eager,graph,compile")
    p.add_argument("--device", default="cuda", help="cpu: a dry run of the script (eager and compile only)")
    args = p.parse_args(argv)
    dev = torch.device(args.device)
    if dev.type == "cuda":
        assert torch.cuda.is_available(), "needs a CUDA device"
    elif "graph" in args.variants:
        p.error("--variants graph needs --device cuda")
    else:
        torch.set_num_threads(1)  # as the trainer runs; more threads than free cores slow a 64-row step 20x
    if args.batch % args.minibatch:
        p.error("--batch must be a multiple of --minibatch (CUDA graphs need one minibatch shape)")
    names = args.variants.split(",")
    net0, obs, target = make(args, dev)
    nets, opts, runners, setup = {}, {}, {}, {}
    for name in names:
        net = copy.deepcopy(net0)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True, capturable=name == "graph")
        eager(net, opt, obs, target, indices(args, dev, 123))  # a warm Adam state, the same for all
        nets[name], opts[name] = net, opt
        sync(dev)
        t0 = time.perf_counter()
        if name == "eager":
            runners[name] = lambda idxs, n=net, o=opt: eager(n, o, obs, target, idxs)
        else:
            st = Stepper(net, opt, obs, target, args.minibatch)
            state = save(net, opt)
            if name == "graph":
                step = graphed(st).replay
            else:
                step = torch.compile(st)
                st.idx.copy_(indices(args, dev, 7)[0])
                step()  # compile now, not inside the timed updates
            load(net, opt, state)  # the warm-up steps moved the critic: put it back

            def run(idxs, st=st, step=step):
                for idx in idxs:
                    st.idx.copy_(idx)
                    step()

            runners[name] = run
        sync(dev)
        setup[name] = (time.perf_counter() - t0) * 1e3
    start = {n: save(nets[n], opts[n]) for n in names}
    times = {n: [] for n in names}
    diffs = {n: 0.0 for n in names}
    for r in range(args.repeats + 1):
        idxs = indices(args, dev, r)
        ends = {}
        for name in names[r % len(names) :] + names[: r % len(names)]:
            load(nets[name], opts[name], start[name])
            sync(dev)
            t0 = time.perf_counter()
            runners[name](idxs)
            sync(dev)
            if r:
                times[name].append((time.perf_counter() - t0) * 1e3)
            ends[name] = torch.cat([q.detach().reshape(-1) for q in nets[name].parameters()])
        for name in names:
            diffs[name] = max(diffs[name], float((ends[name] - ends[names[0]]).abs().max()))
    steps = args.epochs * args.batch // args.minibatch
    base = times[names[0]]
    where = torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu"
    print(f"critic update on {where}, torch {torch.__version__}: {args.epochs} epochs x "
          f"{args.minibatch} of {args.batch} ({steps} Adam steps), {args.repeats} repeats, rotated")  # fmt: skip
    print(f"| variant | setup ms | ms per update (median) | ms per step | / {names[0]} (median per repeat) "
          f"| max abs param diff to {names[0]} |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for name in names:
        ratio = statistics.median(a / b for a, b in zip(times[name], base))
        med = statistics.median(times[name])
        print(f"| {name} | {setup[name]:.0f} | {med:.2f} | {med / steps:.4f} | {ratio:.2f} | {diffs[name]:.2e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
