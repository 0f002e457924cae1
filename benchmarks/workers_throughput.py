"""``env.workers``: ngac with 1 and 2 environment processes beside SB3 A2C and raw stepping, in one run.

    python benchmarks/workers_throughput.py [--frames 153600] [--repeats 3] [--profile-frames 102400]
    python benchmarks/workers_throughput.py --quick        # 8192 frames, 1 repeat: a smoke test

HalfCheetah-v5 at ngac's defaults (32 envs, 1024-frame batches, sherman_morrison). Every
configuration is its own whole process, the configurations interleaved and rotated per repeat:

* ``raw32``: gymnasium ``SyncVectorEnv(32)``, random actions, one process (no policy, no TorchRL);
* ``raw2x16``: two processes stepping ``SyncVectorEnv(16)`` at the same time (what 2 processes get);
* ``ngac-w1`` / ``ngac-w2``: ``ngac train env=halfcheetah env.workers=K`` (one final evaluation);
* ``a2c-dummy`` / ``a2c-subproc``: SB3 A2C, 8 envs in ``DummyVecEnv`` / ``SubprocVecEnv``, VecNormalize.

Reported, medians over repeats: whole-process wall time and frames / wall; steady frames/s as
``benchmarks/throughput.py`` defines it for every benchmark (the frames of the second half of training
over the seconds they took; ngac's ``charts/frames`` rows in MLflow, SB3's rollout ends); each process's CPU (main process, each env worker, helpers) in cores over that same
window, sampled from /proc every 0.2 s, and the rest of the machine's CPU (other users) meanwhile.
Then one instrumented run per layout (``workers_probe.py ngac-timed``: K=1, K=2, and the 32 copies in
ONE ParallelEnv worker, i.e. the multi-process path with a core for each of its two processes) splits a
vector step: simulation, TorchRL's GymWrapper, ngac's transforms, the policy, the wait for the workers,
ParallelEnv's own work, the rest of TorchRL, and the update. Everything is written under a temporary
folder (``--out-dir``), except the plot. To measure a fixed commit while the working tree moves, run
it with ``PYTHONPATH`` pointing at an exported copy of the package (the runs inherit it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from throughput import mlflow_marks, steady_rate, steady_window
from workers_probe import TAG, Monitor, cores, machine_busy, our_cpu

HERE = Path(__file__).resolve().parent
PROBE = HERE / "workers_probe.py"
CONFIGS = ("raw32", "raw2x16", "ngac-w1", "ngac-w2", "a2c-dummy", "a2c-subproc")
NUM_ENVS = 32  # ngac's HalfCheetah default: one vector step = 32 frames
LABELS = {"1": "workers=1", "2": "workers=2", "1p": "1 ParallelEnv worker"}


def launch(cmd: list[str], cwd: Path, stdin: bool = False) -> subprocess.Popen:
    return subprocess.Popen(
        cmd, cwd=cwd, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        stdin=subprocess.PIPE if stdin else None,
    )  # fmt: skip


def whole(cmd: list[str], cwd: Path) -> tuple[str, float, float, float, Monitor]:
    """Run ``cmd`` to the end under a Monitor: output, wall s, our CPU s, others' cores."""
    cpu0, busy0, t0 = our_cpu(), machine_busy(), time.perf_counter()
    proc = launch(cmd, cwd)
    mon = Monitor(proc.pid)
    mon.start()
    out, _ = proc.communicate()
    wall = time.perf_counter() - t0
    mon.done.set()
    mon.join()
    # rusage misses grandchildren no process waited for (SubprocVecEnv's forkserver and its workers)
    cpu = max(our_cpu() - cpu0, sum(s[-1][1] for s in mon.series.values()))
    others = max((machine_busy() - busy0 - cpu) / wall, 0.0)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed (exit {proc.returncode}): {out[-3000:]}")
    return out, wall, cpu, others, mon


def result(out: str) -> dict:
    return json.loads(next(ln for ln in out.splitlines() if ln.startswith(TAG))[len(TAG) :])


def raw(procs: int, n: int, seconds: float, cwd: Path) -> dict:
    """``procs`` processes of ``SyncVectorEnv(n)`` stepping at once (each waits for GO after warm-up)."""
    busy0, cpu0 = machine_busy(), our_cpu()
    ps = [launch([sys.executable, str(PROBE), "raw", str(n), str(seconds)], cwd, stdin=True) for _ in range(procs)]
    for p in ps:
        while (line := p.stdout.readline()) and line.strip() != "READY":
            pass
    t0 = time.perf_counter()
    for p in ps:
        p.stdin.write("GO\n")
        p.stdin.flush()
    res = [result(p.communicate()[0]) for p in ps]
    wall = time.perf_counter() - t0
    others = max((machine_busy() - busy0 - (our_cpu() - cpu0)) / wall, 0.0)
    return {"steady": sum(r["frames"] / r["seconds"] for r in res), "others": others}


def window(marks: list[tuple[float, float]], frames: int) -> tuple[float, float, float]:
    """The steady window of ``throughput.py``: (start epoch, end epoch, steady frames/s)."""
    ta, tb = steady_window(marks, frames)
    return ta, tb, steady_rate(marks, frames)


def ngac_args(k: int, frames: int, tmp: Path, name: str) -> list[str]:
    return [
        "env=halfcheetah", f"env.workers={k}", f"trainer.total_frames={frames}", "trainer.progress_bar=false",
        f"trainer.eval_every_frames={frames}", "logger.experiment_name=workers",
        f"logger.tracking_uri=sqlite:///{tmp / 'mlflow.db'}", f"out_dir={tmp / 'runs' / name}",
    ]  # fmt: skip


def mlflow_metrics(tmp: Path, out: str) -> dict[str, list[tuple[float, float]]]:
    """(step, value) and, for charts/frames, (frames, epoch) rows of the run named in ``out``."""
    from mlflow.tracking import MlflowClient

    run_id = next(ln.rsplit("/", 1)[1] for ln in out.splitlines() if ln.startswith("MLflow run: "))
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}")
    keys = ("perf/collect_ms", "perf/gae_ms", "perf/critic_ms", "perf/update_ms", "eval/seconds")
    rows = {k: sorted((m.step, m.value) for m in client.get_metric_history(run_id, k)) for k in keys}
    rows["marks"] = mlflow_marks(f"sqlite:///{tmp / 'mlflow.db'}", run_id)
    return rows


def train(config: str, frames: int, tmp: Path, name: str) -> dict:
    """One whole-process training run: wall, whole and steady steps/s, CPU split over the steady window."""
    if config.startswith("ngac"):
        k = int(config[-1])
        cmd = [str(Path(sys.executable).with_name("ngac")), "train", *ngac_args(k, frames, tmp, name)]
    else:
        cmd = [sys.executable, str(PROBE), "sb3", config.split("-")[1], str(frames), "0"]
    out, wall, cpu, others_whole, mon = whole(cmd, tmp)
    if config.startswith("ngac"):
        rows = mlflow_metrics(tmp, out)
        marks, eval_s = rows["marks"], rows["eval/seconds"][-1][1]
    else:
        marks, eval_s = [tuple(m) for m in result(out)["marks"]], 0.0
    ta, tb, steady = window(marks, frames)
    split = cores(mon, ta, tb)
    return {"config": config, "wall": wall, "whole": frames / wall, "steady": steady, "cpu_s": cpu,
            "others_whole": others_whole, "eval_s": eval_s, "cores": split}  # fmt: skip


def timed(k: str, frames: int, tmp: Path) -> dict:
    """An instrumented ngac run (k: "1", "2", or "1p": the copies in one ParallelEnv worker):
    per-batch means after the first 10 batches of each piece, in ms."""
    path = tmp / f"timers-w{k}.json"
    one = ["--one-worker-process", str(NUM_ENVS)] if k == "1p" else []
    cmd = [sys.executable, str(PROBE), "ngac-timed", str(path), *one, *ngac_args(int(k[0]), frames, tmp, f"timed-w{k}")]
    out, wall, cpu, others, mon = whole(cmd, tmp)
    steps = json.loads(path.read_text())["steps"]
    first = min(10, len(steps) // 3)
    (t0, a), (t1, b) = steps[first], steps[-1]
    n = len(steps) - 1 - first
    ms = {key: 1e3 * (b[key][0] - a.get(key, [0, 0])[0]) / n for key in b}
    rows = mlflow_metrics(tmp, out)
    for key in ("perf/collect_ms", "perf/gae_ms", "perf/critic_ms", "perf/update_ms"):
        vals = [v for _, v in rows[key][first:-1]]
        ms[key.split("/")[1]] = statistics.fmean(vals) if vals else 0.0
    ms["batch"] = 1e3 * (t1 - t0) / n
    ta, tb, steady = window(rows["marks"], frames)
    return {"k": k, "ms": ms, "steady": steady, "cores": cores(mon, ta, tb), "wall": wall}


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def worker_cores(r: dict) -> list[float]:
    return [v for k, v in r["cores"].items() if k[0] == "w" and k[1:].isdigit()]


def report(runs: list[dict], profile: list[dict], meta: str) -> str:
    by = {c: [r for r in runs if r["config"] == c] for c in CONFIGS}
    raw32 = med([r["steady"] for r in by["raw32"]])
    lines = [meta, "", "| configuration | wall s | whole-process steps/s | steady steps/s | steady / raw32 "
             "| CPU s, all processes | other users' cores |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for c, rs in by.items():
        sps = med([r["steady"] for r in rs])
        if c.startswith("raw"):
            lines.append(f"| {c} | - | - | {sps:.0f} | {sps / raw32:.2f} | - | {med([r['others'] for r in rs]):.2f} |")
            continue
        lines.append(
            f"| {c} | {med([r['wall'] for r in rs]):.1f} | {med([r['whole'] for r in rs]):.0f} | {sps:.0f} "
            f"| {sps / raw32:.2f} | {med([r['cpu_s'] for r in rs]):.0f} | {med([r['cores']['others'] for r in rs]):.2f} |"
        )
    pairs = list(zip(by["raw32"], by["ngac-w1"]))
    steady = [w["steady"] / r["steady"] for r, w in pairs]
    whole_ = [w["whole"] / r["steady"] for r, w in pairs]
    lines += ["", f"ngac-w1 / raw32 per repeat, steady: {', '.join(f'{x:.2f}' for x in steady)} "
              f"(median {med(steady):.2f}); whole-process: {', '.join(f'{x:.2f}' for x in whole_)} (median {med(whole_):.2f})."]  # fmt: skip
    evals = " and ".join(f"{med([r['eval_s'] for r in by[c]]):.1f} s ({c})" for c in ("ngac-w1", "ngac-w2"))
    lines += ["", f"ngac's whole-process wall includes its final evaluation (10 episodes): {evals}."]
    lines += ["", "CPU over the steady window, in cores (CPU ms per 1000 frames in brackets), medians:", "",
              "| configuration | main process | env workers, each | env workers, sum | helpers | other users |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for c in CONFIGS[2:]:
        rs = by[c]
        sps = med([r["steady"] for r in rs])

        def cell(xs: list[float], sps=sps) -> str:
            return f"{med(xs):.2f} ({1e6 * med(xs) / sps:.0f})"

        ws = [worker_cores(r) for r in rs]
        n = len(ws[0])
        each = (
            " / ".join(f"{med([w[i] for w in ws]):.2f}" for i in range(n))
            if n <= 2
            else f"{n} x {med([statistics.fmean(w) for w in ws]):.2f}"
        )
        lines.append(
            f"| {c} | {cell([r['cores']['main'] for r in rs])} | {each or '-'} | {cell([sum(w) for w in ws]) if n else '-'} "
            f"| {med([r['cores']['helpers'] for r in rs]):.2f} | {med([r['cores']['others'] for r in rs]):.2f} |"
        )
    if profile:
        lines += ["", *split_table(profile, raw32)]
    return "\n".join(lines)


def pieces(p: dict) -> dict[str, float]:
    """ms per vector step (32 frames) of one instrumented run."""
    per = {k: v * NUM_ENVS / 1024 for k, v in p["ms"].items()}
    get = per.get
    out = {
        "simulation (gymnasium vector step)": get("sim", 0.0),
        "TorchRL GymWrapper around it": get("gymwrapper", 0.0) - get("sim", 0.0),
        "main process waits for the workers (spinning)": get("parallel_wait", 0.0),
        "ParallelEnv step less the wait (shared memory, pipes)": get("parallel_step", 0.0) - get("parallel_wait", 0.0),
        "ngac's 3 transforms": get("transforms", 0.0),
        "policy forward (RolloutPolicy)": get("policy", 0.0),
    }
    out["rest of TorchRL (collector, TransformedEnv, step_mdp)"] = per["collect_ms"] - sum(out.values())
    out["GAE"] = per["gae_ms"]
    out["critic update"] = per["critic_ms"]
    out["actor update"] = per["update_ms"] - per["critic_ms"]
    out["other (Lightning, logging, checkpoints)"] = per["batch"] - per["collect_ms"] - per["gae_ms"] - per["update_ms"]
    return out


def split_table(profile: list[dict], raw32: float) -> list[str]:
    raw_ms = 1e3 * NUM_ENVS / raw32
    head = " | ".join(LABELS[p["k"]] for p in profile)
    out = [f"Where a vector step of {NUM_ENVS} frames goes, ms (instrumented runs, means over batches 11..N; "
           f"raw SyncVectorEnv(32) in this run: {raw_ms:.2f} ms):", "", f"| piece | {head} |",
           "|---|" + "---|" * len(profile)]  # fmt: skip
    table = [pieces(p) for p in profile]
    for name in table[0]:
        out.append(f"| {name} | " + " | ".join(f"{t[name]:.2f}" for t in table) + " |")
    out.append("| **total, wall per vector step** | " + " | ".join(f"{p['ms']['batch'] * NUM_ENVS / 1024:.2f}" for p in profile) + " |")  # fmt: skip
    out.append("| its steady steps/s | " + " | ".join(f"{p['steady']:.0f}" for p in profile) + " |")
    cpu = [f"{p['cores']['main']:.2f} / " + (" ".join(f"{w:.2f}" for w in worker_cores(p)) or "-") for p in profile]
    out.append("| CPU cores, main / each worker | " + " | ".join(cpu) + " |")
    return out


def plot(runs: list[dict], profile: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw={"width_ratios": [1, 1.3]})
    names = list(CONFIGS)
    steady = [med([r["steady"] for r in runs if r["config"] == c]) for c in names]
    whole_ = [med([r.get("whole", float("nan")) for r in runs if r["config"] == c]) for c in names]
    y = range(len(names))
    a.barh([i + 0.2 for i in y], steady, height=0.4, color="#4c72b0", label="steady")
    a.barh([i - 0.2 for i in y], whole_, height=0.4, color="#dd8452", label="whole process")
    a.set_yticks(list(y), names)
    a.invert_yaxis()
    a.set_xlabel("HalfCheetah steps/s (median)")
    a.legend(fontsize=8)
    colors = plt.cm.tab20.colors
    for j, p in enumerate(profile):
        left = 0.0
        for i, (name, ms) in enumerate(pieces(p).items()):
            b.barh(j, ms, left=left, color=colors[i], label=name if j == 0 else None)
            left += ms
    raw_ms = 1e3 * NUM_ENVS / med([r["steady"] for r in runs if r["config"] == "raw32"])
    b.barh(len(profile), raw_ms, color="#999999", label=f"raw SyncVectorEnv(32), random actions: {raw_ms:.2f} ms")
    b.set_yticks(range(len(profile) + 1), [*(LABELS[p["k"]] for p in profile), "raw32"])
    b.invert_yaxis()
    b.set_xlabel(f"ms per vector step of {NUM_ENVS} frames (instrumented run)")
    b.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=153_600, help="frames per training run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--profile-frames", type=int, default=102_400, help="frames per instrumented run (0: none)")
    p.add_argument("--raw-seconds", type=float, default=4.0)
    p.add_argument("--out-dir", type=Path, default=None, help="runs, JSON and markdown (default: a new temp dir)")
    p.add_argument("--plot", type=Path, default=HERE / "workers_throughput.png")
    p.add_argument("--quick", action="store_true", help="8192 frames, 1 repeat, plot into the out dir")
    args = p.parse_args(argv)
    out = (args.out_dir or Path(tempfile.mkdtemp(prefix="ngac-workers-"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.quick:
        args.frames, args.repeats, args.profile_frames, args.raw_seconds = 8192, 1, 8192, 1.0
        args.plot = out / "workers_throughput.png"
    from mlflow import MlflowClient

    # The first use of a sqlite store creates its tables (~6 s): once here, not in the first run measured.
    MlflowClient(f"sqlite:///{out / 'mlflow.db'}").search_experiments(max_results=1)
    t_start = time.time()
    runs: list[dict] = []
    for rep in range(args.repeats):
        order = CONFIGS[rep % len(CONFIGS) :] + CONFIGS[: rep % len(CONFIGS)]
        for c in order:
            if c.startswith("raw"):
                procs, n = (1, 32) if c == "raw32" else (2, 16)
                r = {"config": c, **raw(procs, n, args.raw_seconds, out)}
            else:
                r = train(c, args.frames, out, f"{c}-r{rep}")
            r["repeat"] = rep
            runs.append(r)
            print(
                f"repeat {rep} {c}: " + ", ".join(f"{k} {v:.1f}" for k, v in r.items() if isinstance(v, float)),
                flush=True,
            )
            (out / "runs.json").write_text(json.dumps(runs, indent=1))
    profile = [timed(k, args.profile_frames, out) for k in ("1", "2", "1p")] if args.profile_frames else []
    (out / "profile.json").write_text(json.dumps(profile, indent=1))
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
    ).stdout.strip()
    import ngac

    meta = (
        f"Commit {commit} (ngac imported from {Path(ngac.__file__).parent}), {time.strftime('%Y-%m-%d %H:%M', time.gmtime(t_start))}"
        f"-{time.strftime('%H:%M', time.gmtime())} UTC, {psutil.cpu_count()} cores, load average at the end "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.frames} frames per run, {args.repeats} repeat(s), "
        f"instrumented runs of {args.profile_frames} frames."
    )
    text = report(runs, profile, meta)
    (out / "summary.md").write_text(text + "\n")
    print(text)
    plot(runs, profile, args.plot)
    print(f"wrote {out / 'summary.md'}, {out / 'runs.json'} and {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
