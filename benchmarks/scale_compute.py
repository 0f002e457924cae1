r"""Actor-update cost and peak memory at d = 1e5, 1e6, 1e7 policy parameters (issue 10, item 4).

The policy is the one ngac trains (``agents.networks.make_actor``: Gaussian MLP, tanh, orthogonal
init, state-independent log-std), HalfCheetah-sized (obs 17, act 6), with its two hidden layers
widened to h (d = h^2 + 25 h + 12). One actor update direction is timed exactly as
``agents/nac.py`` asks for it: ``curvature.direction(PolicyBatch(actor, log_prob_fn, adv, kl_fn))``
with ``log_prob_fn`` recomputing ``actor.get_dist(obs).log_prob(action)``, so the Scores capture
(forward + one backward) and the backend's solve are both inside the time. Each backend takes its
options from ``configs/curvature/<name>.yaml`` (the defaults a run gets).

Timing: per d and device, one warm-up call per backend, then ``repeats`` rounds in which every
backend is called once, interleaved (identity, sherman_morrison, diagonal, kfac, ...); the time is
the median over rounds and the ratio the median of the per-round ratio backend / identity.
K-FAC refreshes its inverses every ``inverse_every = 10`` updates, so two K-FAC instances are timed:
``kfac[steady]`` (factors folded in, inverses not refreshed) and ``kfac[refresh]`` (``inverse_every=1``:
factors and Cholesky inverses every update); ``kfac[amortised]`` = 0.9 steady + 0.1 refresh per round,
the per-update cost of the default.

Peak memory: every (d, backend, device) in its own process, forked from a server that only imported
the libraries (``multiprocessing`` forkserver), so peaks never mix. The child builds the network and
the batch, reads its resident set, resets the kernel's high-water mark (``/proc/self/clear_refs``),
runs two updates (the first includes K-FAC's first inverses) and reads ``VmHWM``:
``peak_extra_mb`` = VmHWM - VmRSS before the updates (over the bare network + batch);
``over_identity_mb`` = that minus identity's; ``base_mb`` = the network + batch themselves. On CUDA
also ``gpu_extra_mb`` from ``torch.cuda.max_memory_allocated``.

Usage::

    python benchmarks/scale_compute.py --plot benchmarks/scale_compute.png   # d = 1e5, 1e6, 1e7 on the CPU
    python benchmarks/scale_compute.py --quick --out-dir /tmp/sc             # d = 1e5, 1 round (a smoke run)
    python benchmarks/scale_compute.py --d 1e6 --device cuda,cpu --threads 16 # GPU against CPU

Writes ``scale_compute.csv`` and ``scale_compute.md`` (the table) into ``--out-dir`` (a fresh
temporary folder unless given).
"""

from __future__ import annotations

import argparse
import csv
import math
import multiprocessing as mp
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
OBS, ACT = 17, 6  # HalfCheetah-v5
PRELOAD = ["torch", "tensordict", "yaml", "ngac.curvature", "ngac.agents.networks"]
BACKENDS = ["identity", "sherman_morrison", "diagonal", "kfac", "woodbury", "woodbury[rank=256]"]
TIMED = ["identity", "sherman_morrison", "diagonal", "kfac[steady]", "kfac[refresh]", "woodbury", "woodbury[rank=256]"]
ORDER = [*TIMED[:4], "kfac[amortised]", "kfac[refresh]", "woodbury", "woodbury[rank=256]"]
REPEATS = {100_000: 11, 1_000_000: 7, 10_000_000: 5}
FIELDS = ["device", "d", "hidden", "batch", "backend", "repeats", "ms", "ms_min", "ms_max", "ratio",
          "peak_extra_mb", "over_identity_mb", "base_mb", "gpu_extra_mb"]  # fmt: skip


def width_for(d: float) -> int:
    """Hidden width h whose d = h^2 + 25 h + 12 is nearest to ``d``."""
    return round((-25 + math.sqrt(625 + 4 * (d - 12))) / 2)


def num_params(h: int) -> int:
    return h * h + 25 * h + 12


def backend_spec(label: str) -> dict[str, Any]:
    name = label.split("[")[0]
    spec = yaml.safe_load((ROOT / "configs" / "curvature" / f"{name}.yaml").read_text())
    if label == "kfac[steady]":
        spec["inverse_every"] = 10**9  # after the first update the inverses are never refreshed
    elif label == "kfac[refresh]":
        spec["inverse_every"] = 1
    elif label == "woodbury[rank=256]":
        spec.update(rank=256, seed=0)
    return spec


def build(hidden: int, batch: int, device: str, seed: int = 0):
    """The actor ngac trains, widened, and one batch of on-policy data (as the agent holds it)."""
    from tensordict import TensorDict

    from ngac.agents.networks import make_actor

    torch.manual_seed(seed)
    actor = make_actor(OBS, ACT, "continuous", [hidden, hidden], "tanh", -0.5).to(device)
    obs_td = TensorDict({"observation": torch.randn(batch, OBS, device=device)}, batch_size=[batch], device=device)
    with torch.no_grad():
        old_dist = actor.get_dist(obs_td.clone(False))
        action = old_dist.sample()
    adv = torch.randn(batch, device=device)
    adv = (adv - adv.mean()) / adv.std()
    return actor, obs_td, action, adv, old_dist


def update(curv, actor, obs_td, action, adv, old_dist):
    """One actor update direction, built exactly as ``NaturalGradientAgent._update_actor`` builds it."""
    from ngac.agents.networks import mean_kl
    from ngac.curvature import PolicyBatch

    def log_prob_fn():
        return actor.get_dist(obs_td.clone(False)).log_prob(action)

    def kl_fn():
        return mean_kl(old_dist, actor.get_dist(obs_td.clone(False)))

    return curv.direction(PolicyBatch(actor, log_prob_fn, adv, kl_fn))


def time_device(device: str, d: float, batch: int, repeats: int) -> dict[str, list[float]]:
    from ngac.curvature import build_curvature

    data = build(width_for(d), batch, device)
    curvs = {label: build_curvature(**backend_spec(label)) for label in TIMED}
    for curv in curvs.values():  # warm-up (K-FAC: its first factors and inverses)
        update(curv, *data)
    times: dict[str, list[float]] = {label: [] for label in TIMED}
    for _ in range(repeats):
        for label, curv in curvs.items():
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            direction = update(curv, *data)  # direction() synchronises the device itself
            times[label].append((time.perf_counter() - start) * 1e3)
            if not direction.finite:
                raise RuntimeError(f"{label} gave a non-finite direction at d={d:g}")
    times["kfac[amortised]"] = [0.9 * s + 0.1 * r for s, r in zip(times["kfac[steady]"], times["kfac[refresh]"])]
    return times


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def mem_child(label: str, d: float, batch: int, device: str, threads: int, queue) -> None:
    """Runs in a fresh forked process: resident (and CUDA) peak of two updates over the network + batch."""
    import resource

    from ngac.curvature import build_curvature

    torch.set_num_threads(threads)
    before_build = _status_kib("VmRSS")
    data = build(width_for(d), batch, device)
    curv = build_curvature(**backend_spec(label))
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        gpu_before = torch.cuda.memory_allocated()
    before = _status_kib("VmRSS")
    try:  # reset the kernel's resident high-water mark (Linux >= 4.0): VmHWM is then these updates' peak
        Path("/proc/self/clear_refs").write_text("5")
        key = "VmHWM"
    except OSError:  # fall back to the lifetime high-water mark (includes the build)
        key = ""
    for _ in range(2):
        update(curv, *data)
    after = _status_kib(key) if key else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"peak_extra_mb": max(after - before, 0) / 1024, "base_mb": (before - before_build) / 1024}
    out["gpu_extra_mb"] = (torch.cuda.max_memory_allocated() - gpu_before) / 2**20 if cuda else float("nan")
    queue.put(out)


def peak_memory(ctx, label: str, d: float, batch: int, device: str, threads: int) -> dict[str, float]:
    queue = ctx.Queue()
    proc = ctx.Process(target=mem_child, args=(label, d, batch, device, threads, queue))
    proc.start()
    while True:
        try:
            result = queue.get(timeout=1.0)
            break
        except Exception:  # queue.Empty: still running, or died (e.g. out of memory): say so, do not stop
            if not proc.is_alive() and queue.empty():
                print(f"  memory child for {label} at d={d:g} on {device} died (exit code {proc.exitcode})")
                result = {"peak_extra_mb": float("nan"), "base_mb": float("nan"), "gpu_extra_mb": float("nan")}
                break
    proc.join()
    return result


def rows_for(device: str, d: float, batch: int, repeats: int, times: dict[str, list[float]], mem: dict) -> list[dict]:
    rows = []
    ident = times["identity"]
    for label in ORDER:
        t = times[label]
        m = mem.get(label, mem.get(label.split("[")[0], {}))
        rows.append(
            {
                "device": device,
                "d": num_params(width_for(d)),
                "hidden": width_for(d),
                "batch": batch,
                "backend": label,
                "repeats": repeats,
                "ms": statistics.median(t),
                "ms_min": min(t),
                "ms_max": max(t),
                "ratio": statistics.median(a / b for a, b in zip(t, ident)),
                "peak_extra_mb": m.get("peak_extra_mb", float("nan")),
                "over_identity_mb": m.get("peak_extra_mb", float("nan"))
                - mem.get("identity", {}).get("peak_extra_mb", float("nan")),
                "base_mb": m.get("base_mb", float("nan")),
                "gpu_extra_mb": m.get("gpu_extra_mb", float("nan")),
            }
        )
    return rows


def markdown(rows: list[dict]) -> str:
    gpu = any(r["device"].startswith("cuda") for r in rows)
    head = "| device | d | h | backend | ms (median) | min-max | ratio to identity | peak extra MB | over identity MB |"
    lines = [head + (" GPU extra MB |" if gpu else ""), "|---" * (9 + gpu) + "|"]
    for r in rows:
        line = (
            f"| {r['device']} | {r['d']:,} | {r['hidden']} | {r['backend']} | {r['ms']:.1f} | "
            f"{r['ms_min']:.1f}-{r['ms_max']:.1f} | {r['ratio']:.2f} | {r['peak_extra_mb']:.0f} | "
            f"{r['over_identity_mb']:+.1f} |"
        )
        lines.append(line + (f" {r['gpu_extra_mb']:.0f} |" if gpu else ""))
    cpu = {(r["d"], r["backend"]): r["ms"] for r in rows if r["device"] == "cpu"}
    speedups = [
        f"{r['backend']} at d={r['d']:,}: {cpu[(r['d'], r['backend'])] / r['ms']:.1f}x"
        for r in rows
        if r["device"].startswith("cuda") and (r["d"], r["backend"]) in cpu
    ]
    if speedups:
        lines += ["", "GPU speed-up over the CPU (CPU ms / GPU ms): " + "; ".join(speedups)]
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, mx) = plt.subplots(1, 2, figsize=(12, 5))
    for device in dict.fromkeys(r["device"] for r in rows):
        for label in ORDER:
            pts = sorted(
                (r["d"], r["ms"], r["peak_extra_mb"]) for r in rows if (r["device"], r["backend"]) == (device, label)
            )
            name = label if device == "cpu" else f"{label} ({device})"
            style = {"ls": ":" if label == "kfac[refresh]" else "-", "marker": "o"}
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=name, **style)
            if label != "kfac[amortised]":  # it shares kfac's memory figure
                mx.plot([p[0] for p in pts], [p[2] for p in pts], label=name, **style)
    batch = rows[0]["batch"]
    ax.set(xscale="log", yscale="log", xlabel="policy parameters d", ylabel="ms per actor update (median)",
           title=f"Actor update direction, batch {batch}, float32")  # fmt: skip
    mx.set(xscale="log", yscale="log", xlabel="policy parameters d", ylabel="MB",
           title="Peak resident memory over the network + batch")  # fmt: skip
    mx.axhline(2048, color="grey", lw=0.8, ls="--")
    for a in (ax, mx):
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def parse_list(text: str, cast) -> list:
    return [cast(x) for x in text.split(",") if x]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="d = 1e5 only, 1 round (a smoke run)")
    ap.add_argument("--d", default="1e5,1e6,1e7", help="comma-separated parameter counts (default 1e5,1e6,1e7)")
    ap.add_argument("--device", default="cpu", help="comma-separated devices, e.g. cuda,cpu (default cpu)")
    ap.add_argument("--batch", type=int, default=2048, help="samples per update (default 2048)")
    ap.add_argument("--repeats", type=int, default=0, help="rounds per d (default 11 / 7 / 5 at 1e5 / 1e6 / 1e7)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--no-memory", action="store_true", help="skip the per-backend memory processes")
    ap.add_argument("--out-dir", type=Path, default=None, help="folder for the csv and md (default: a temp folder)")
    ap.add_argument("--plot", type=Path, default=None, help="png path (default: <out-dir>/scale_compute.png)")
    args = ap.parse_args()
    sizes = [1e5] if args.quick else parse_list(args.d, float)
    devices = parse_list(args.device, str)
    out = args.out_dir or Path(tempfile.mkdtemp(prefix="scale_compute_"))
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    if not args.no_memory:
        from multiprocessing import forkserver

        forkserver.ensure_running()  # imports the libraries in the server while the timing runs
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    print(f"scale_compute: commit {commit.stdout.strip()}, torch {torch.__version__}, threads {args.threads}, "
          f"batch {args.batch}, devices {devices}, out {out}", flush=True)  # fmt: skip
    started = time.perf_counter()
    rows: list[dict] = []
    for d in sizes:
        repeats = 1 if args.quick else args.repeats or REPEATS.get(int(d), 3)
        for device in devices:
            t0 = time.perf_counter()
            times = time_device(device, d, args.batch, repeats)
            t1 = time.perf_counter()
            mem = (
                {}
                if args.no_memory
                else {b: peak_memory(ctx, b, d, args.batch, device, args.threads) for b in BACKENDS}
            )
            new = rows_for(device, d, args.batch, repeats, times, mem)
            rows += new
            print(markdown(new).split("\n", 2)[2], flush=True)
            print(f"  d={d:g} {device}: timing {t1 - t0:.0f} s, memory {time.perf_counter() - t1:.0f} s", flush=True)
    with open(out / "scale_compute.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    table = markdown(rows)
    (out / "scale_compute.md").write_text(table + "\n")
    plot(rows, args.plot or out / "scale_compute.png")
    print(table)
    print(f"scale_compute: {time.perf_counter() - started:.0f} s, results in {out}")


if __name__ == "__main__":
    sys.exit(main())
