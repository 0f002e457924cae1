"""Data parallelism (issue 10 hook): every batch statistic goes through ``PolicyBatch.all_mean``.

Two CPU processes (torch.distributed, gloo) each hold half of a batch; with
``all_mean = all_reduce / world_size`` every backend must give, on every rank, the direction that one
process computes on the concatenated batch (float64, equal per-rank batch sizes), including stateful
backends over several updates, the hybrid's CG re-fit and the natural-gradient diagnostic.
"""

from __future__ import annotations

import datetime
import socket
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ngac.curvature import PolicyBatch, build_curvature

from .conftest import Problem, make_problem, new_data

WORLD = 2
HALF = 12
SPECS: list[dict[str, Any]] = [
    {"name": "identity", "diagnose_every": 1},
    {"name": "sherman_morrison", "diagnose_every": 1},
    {"name": "sherman_morrison", "fisher_vector": "advantage_weighted"},
    {"name": "sherman_morrison", "mode": "single_sample"},
    {"name": "sherman_morrison", "mode": "single_sample", "fisher_vector": "advantage_weighted"},
    {"name": "diagonal"},
    {"name": "kfac", "decay": 0.8, "inverse_every": 1},
    {"name": "kfac", "decay": 0.8, "inverse_every": 2, "solve": "eigen"},
    {"name": "cg", "iters": 20, "diagnose_every": 2},
    {"name": "cg", "iters": 20, "fisher": "kl_hessian"},
    {"name": "hybrid", "cg_every": 2, "cg_iters": 5, "diagnose_every": 1},
    {"name": "hybrid", "mode": "single_sample", "cg_every": 2, "cg_iters": 5},
    {"name": "woodbury", "diagnose_every": 1},
    {"name": "woodbury", "rank": 7, "seed": 5},
]
STEPS = 3  # updates per backend (kfac's EMA, the hybrid's CG re-fit and the Sherman-Morrison update after it)
KEYS = (
    "dFd",
    "lambda",
    "cos_to_gradient",
    "hybrid_fit_lambda",
    "diagnose_iters",
    "cos_to_natural",
    "cos_to_natural_fisher",
)
# The diagnostic solves only to |r| <= 1e-6 |g| over many CG iterations, which amplify rounding
# differences (summation order) well beyond 1e-10; its cosines are compared to 1e-7.
LOOSE = {"cos_to_natural": 1e-7, "cos_to_natural_fisher": 1e-7}


def batches() -> list[Problem]:
    base = make_problem(seed=0, batch=WORLD * HALF)
    return [base] + [new_data(base, seed=s) for s in range(1, STEPS)]


def shard(p: Problem, rank: int) -> Problem:
    rows = slice(rank * HALF, (rank + 1) * HALF)
    return Problem(p.policy, p.obs[rows], p.act[rows], p.adv[rows])


def run_all(part: callable, all_mean: Any, all_gather: Any = None) -> list[list[dict[str, Any]]]:
    """Every spec over STEPS updates; ``part(problem)`` picks this process's share of each batch."""
    out = []
    for spec in SPECS:
        curv = build_curvature(**spec)
        rows = []
        for p in batches():
            q = part(p)
            batch = PolicyBatch(q.policy, q.log_prob_fn, q.adv, kl_fn=q.kl_fn, all_mean=all_mean, all_gather=all_gather)
            d = curv.direction(batch)
            m = d.metrics()
            rows.append({"vector": d.vector.clone(), **{k: m[k] for k in KEYS if k in m}})
            curv.observe(kl=0.004, applied=True, eta=0.3, surrogate_gain=0.01)
        out.append(rows)
    return out


def worker(rank: int, port: int, folder: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD,
        timeout=datetime.timedelta(seconds=60),
    )  # fmt: skip
    try:

        def all_mean(t: torch.Tensor) -> torch.Tensor:
            t = t.clone()
            dist.all_reduce(t)
            return t / WORLD

        def all_gather(t: torch.Tensor) -> torch.Tensor:
            parts = [torch.empty_like(t) for _ in range(WORLD)]
            dist.all_gather(parts, t.contiguous())
            return torch.cat(parts)

        torch.save(run_all(lambda p: shard(p, rank), all_mean, all_gather), Path(folder) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_ranks_equal_one_process_on_the_concatenated_batch(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    port = free_port()
    procs = [ctx.Process(target=worker, args=(r, port, str(tmp_path))) for r in range(WORLD)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    alive = [proc for proc in procs if proc.is_alive()]
    for proc in alive:
        proc.kill()
    assert not alive, "a rank hung"
    assert all(proc.exitcode == 0 for proc in procs), [proc.exitcode for proc in procs]
    single = run_all(lambda p: p, None)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    for spec, ref_rows, *rank_rows in zip(SPECS, single, *ranks):
        for t, ref in enumerate(ref_rows):
            scale = float(ref["vector"].abs().max())
            for got in (rows[t] for rows in rank_rows):
                where = f"{spec} update {t}"
                torch.testing.assert_close(got["vector"], ref["vector"], rtol=1e-10, atol=1e-10 * scale, msg=where)
                assert got.keys() == ref.keys(), where
                for k in ref.keys() - {"vector"}:
                    assert abs(got[k] - ref[k]) <= LOOSE.get(k, 1e-10) * max(1.0, abs(ref[k])), f"{where}: {k}"
