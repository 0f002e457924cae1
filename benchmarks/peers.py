"""ngac beside its peers on the same machine, at the same frames: SB3 A2C, SB3 PPO, sb3-contrib TRPO.

Every run is its own process (so the whole-process wall time counts imports and start-up), runs
alternate between the libraries (task -> seed -> method) so that drifts in machine speed fall on
all of them, and every run ends with deterministic evaluation episodes:

- SB3 / sb3-contrib: the library's defaults for ``"MlpPolicy"`` (A2C on 8 ``DummyVecEnv`` copies, PPO
  and TRPO on one), inside ``VecNormalize`` (observations and rewards, the library's defaults). The
  evaluation env is a fresh ``VecNormalize(training=False, norm_reward=False)`` holding the training
  run's observation statistics, frozen; returns are the raw episode returns (``Monitor``).
- ngac: ``ngac train env=<task> algo=<algo>`` with the task's config and the algo preset's defaults,
  a single evaluation at the end (``trainer.eval_every_frames`` = frames) and ``trainer.eval_episodes``.

Reported per run: the final evaluation return (mean over the episodes); the whole-process wall time
and ``frames / wall``; and the steady frames/s as ``benchmarks/throughput.py`` defines it for every
benchmark (the frames of the second half of training over the seconds they took, from a mark at each
rollout end, updates included). Per task and method: mean ± std (population, ``ddof=0``) over seeds.

    pip install -e '.[bench]'
    taskset -c 1 python benchmarks/peers.py --tasks InvertedPendulum-v5 HalfCheetah-v5 --frames 300000 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml
from throughput import mlflow_marks, steady_rate

SB3_ALGOS = ("a2c", "ppo", "trpo")
RESULT_TAG = "PEERS_RESULT "
REPO = Path(__file__).resolve().parent.parent


@dataclass
class Run:
    """One training run and its final evaluation."""

    task: str
    method: str  # sb3-a2c | sb3-ppo | sb3contrib-trpo | ngac-<algo>
    seed: int
    frames: int
    eval_return: float
    wall_s: float
    steady_sps: float

    @property
    def whole_sps(self) -> float:
        return self.frames / self.wall_s


def ngac_env_names() -> dict[str, str]:
    """Gymnasium id -> ngac ``env=`` option, read from configs/env/*.yaml."""
    names = {}
    for path in sorted((REPO / "configs" / "env").glob("*.yaml")):
        names[yaml.safe_load(path.read_text())["id"]] = path.stem
    return names


# ----------------------------------------------------------------------------- SB3 (worker side)
SB3_ENVS = {"a2c": 8, "ppo": 1, "trpo": 1}  # each algorithm's documented default number of environments


def sb3_model(algo: str, task: str, seed: int, vec_env: str = "dummy"):
    """An SB3 / sb3-contrib model with the library's defaults on ``VecNormalize(make_vec_env(task))``,
    ``SB3_ENVS[algo]`` environments in a ``DummyVecEnv`` (or ``SubprocVecEnv`` with ``vec_env="subproc"``)."""
    import torch
    from stable_baselines3 import A2C, PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecNormalize

    torch.set_num_threads(1)  # as ngac's trainer.num_threads default
    if algo == "trpo":
        from sb3_contrib import TRPO

        cls = TRPO
    else:
        cls = {"a2c": A2C, "ppo": PPO}[algo]
    vec_cls = {"dummy": DummyVecEnv, "subproc": SubprocVecEnv}[vec_env]
    env = VecNormalize(make_vec_env(task, n_envs=SB3_ENVS[algo], seed=seed, vec_env_cls=vec_cls))
    return cls("MlpPolicy", env, seed=seed, device="cpu")


def learn_marked(model, frames: int, clock=time.perf_counter) -> list[tuple[int, float]]:
    """``model.learn(frames)``, returning (frames, ``clock()``) marks: at the start, after every rollout
    (its update included) and at the end."""
    from stable_baselines3.common.callbacks import BaseCallback

    marks = [(0, clock())]

    class Marks(BaseCallback):
        def _on_rollout_end(self) -> None:
            marks.append((self.num_timesteps, clock()))

        def _on_step(self) -> bool:
            return True

    model.learn(total_timesteps=frames, callback=Marks())
    marks.append((model.num_timesteps, clock()))
    return marks


def sb3_worker(algo: str, task: str, frames: int, seed: int, episodes: int) -> dict[str, float]:
    """Train one SB3 / sb3-contrib model with its defaults and VecNormalize, then evaluate it."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    model = sb3_model(algo, task, seed)
    marks = learn_marked(model, frames)
    eval_env = VecNormalize(
        make_vec_env(task, n_envs=1, seed=seed + 10_000, vec_env_cls=DummyVecEnv), training=False, norm_reward=False
    )
    eval_env.obs_rms = model.get_env().obs_rms.copy()
    returns, _ = evaluate_policy(
        model, eval_env, n_eval_episodes=episodes, deterministic=True, return_episode_rewards=True
    )
    return {"eval_return": float(statistics.fmean(returns)), "steady_sps": steady_rate(marks, model.num_timesteps)}


# ----------------------------------------------------------------------------- runners (parent side)
def run_sb3(algo: str, task: str, frames: int, seed: int, episodes: int) -> Run:
    cmd = [sys.executable, __file__, "sb3-worker", algo, task, str(frames), str(seed), str(episodes)]
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith(RESULT_TAG)), None)
    if out.returncode or line is None:
        raise RuntimeError(f"sb3 {algo} on {task} seed {seed} failed (exit {out.returncode}): {out.stderr[-2000:]}")
    res = json.loads(line[len(RESULT_TAG) :])
    method = "sb3contrib-trpo" if algo == "trpo" else f"sb3-{algo}"
    return Run(task, method, seed, frames, res["eval_return"], wall, res["steady_sps"])


def run_ngac(algo: str, task: str, frames: int, seed: int, episodes: int, out_dir: Path, extra: list[str]) -> Run:
    """``ngac train`` in a subprocess, tracked in a private sqlite MLflow store under ``out_dir``."""
    env = ngac_env_names().get(task)
    if env is None:
        raise ValueError(f"task {task!r} has no configs/env entry; valid: {', '.join(sorted(ngac_env_names()))}")
    uri = f"sqlite:///{out_dir / 'mlflow.db'}"
    run_dir = out_dir / "runs" / f"ngac-{algo}-{task}-s{seed}-{time.strftime('%H%M%S')}"
    # The console script, not `python -m`: that would put the cwd first on sys.path, where a folder
    # named like a package would shadow it.
    cmd = [
        str(Path(sys.executable).with_name("ngac")),
        "train",
        f"env={env}",
        f"algo={algo}",
        f"seed={seed}",
        f"trainer.total_frames={frames}",
        f"trainer.eval_every_frames={frames}",
        f"trainer.eval_episodes={episodes}",
        "trainer.progress_bar=false",
        "logger.experiment_name=peers",
        "logger.log_checkpoint=false",
        f"logger.tracking_uri={uri}",
        f"out_dir={run_dir}",
        *extra,
    ]
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=out_dir)
    wall = time.perf_counter() - start
    text = out.stdout + out.stderr
    done = next((ln for ln in text.splitlines() if ln.startswith("done: ")), None)
    run_id = next((ln.rsplit("/", 1)[1] for ln in text.splitlines() if ln.startswith("MLflow run: ")), None)
    if out.returncode or done is None or run_id is None:
        raise RuntimeError(f"ngac {algo} on {task} seed {seed} failed (exit {out.returncode}): {text[-2000:]}")
    eval_return, sps = ngac_results(uri, run_id, frames)
    return Run(task, f"ngac-{algo}", seed, frames, eval_return, wall, sps)


def ngac_results(uri: str, run_id: str, frames: int) -> tuple[float, float]:
    """From the run's MLflow rows: the final ``eval/episode_return`` and the steady-state steps/s
    (from the timestamps of its ``charts/frames`` rows)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    eval_return = client.get_run(run_id).data.metrics["eval/episode_return"]  # the latest row: the final one
    return eval_return, steady_rate(mlflow_marks(uri, run_id), frames)


# ----------------------------------------------------------------------------- tables
def mean_std(xs: list[float]) -> str:
    return f"{statistics.fmean(xs):.1f} ± {statistics.pstdev(xs):.1f}" if len(xs) > 1 else f"{xs[0]:.1f}"


def summary(runs: list[Run]) -> str:
    """Markdown: per task and method, return mean ± std over seeds, wall time and steps/s."""
    rows = [
        "| task | method | seeds | final eval return | wall s | whole-process steps/s | steady steps/s |",
        "|---|---|---|---|---|---|---|",
    ]
    keys = list(dict.fromkeys((r.task, r.method) for r in runs))
    for task, method in keys:
        group = [r for r in runs if (r.task, r.method) == (task, method)]
        rows.append(
            f"| {task} | {method} | {len(group)} | {mean_std([r.eval_return for r in group])} "
            f"| {statistics.fmean(r.wall_s for r in group):.0f} | {statistics.fmean(r.whole_sps for r in group):.0f} "
            f"| {statistics.fmean(r.steady_sps for r in group):.0f} |"
        )
    return "\n".join(rows)


def write(runs: list[Run], out_dir: Path) -> None:
    with (out_dir / "runs.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*asdict(runs[0]), "whole_sps"])
        writer.writeheader()
        for r in runs:
            writer.writerow({**asdict(r), "whole_sps": r.whole_sps})
    (out_dir / "summary.md").write_text(summary(runs) + "\n")


# ----------------------------------------------------------------------------- CLI
def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", default=["InvertedPendulum-v5", "HalfCheetah-v5"], help="gymnasium ids")
    p.add_argument("--frames", type=int, default=300_000, help="environment frames per run")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--peers", nargs="*", default=list(SB3_ALGOS), choices=SB3_ALGOS, help="SB3 / sb3-contrib algos")
    p.add_argument("--algos", nargs="*", default=["sherman_morrison"], help="ngac algo= presets (configs/algo)")
    p.add_argument("--episodes", type=int, default=10, help="deterministic evaluation episodes per run")
    p.add_argument("--out-dir", type=Path, default=None, help="CSV, markdown and ngac runs (default: a tmp dir)")
    p.add_argument("--ngac-override", nargs="*", default=[], help="extra KEY=VALUE for every ngac run")
    args = p.parse_args(argv)
    if args.frames < 1 or args.episodes < 1:
        p.error(f"--frames={args.frames} and --episodes={args.episodes} must be positive integers")
    known = ngac_env_names()
    for task in args.tasks:
        if args.algos and task not in known:
            p.error(f"--tasks {task!r} has no ngac env config; valid: {', '.join(sorted(known))}")
    algos = sorted(p.stem for p in (REPO / "configs" / "algo").glob("*.yaml"))
    for algo in args.algos:
        if algo not in algos:
            p.error(f"--algos {algo!r} is not an ngac algo preset; valid: {', '.join(algos)}")
    return args


def main(argv: list[str]) -> int:
    if argv[:1] == ["sb3-worker"]:
        algo, task, frames, seed, episodes = argv[1], argv[2], int(argv[3]), int(argv[4]), int(argv[5])
        print(RESULT_TAG + json.dumps(sb3_worker(algo, task, frames, seed, episodes)), flush=True)
        return 0
    args = parse(argv)
    out_dir = (args.out_dir or Path(tempfile.mkdtemp(prefix="ngac-peers-"))).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    runs: list[Run] = []
    for task in args.tasks:
        for seed in args.seeds:
            for method in [*(f"ngac:{a}" for a in args.algos), *args.peers]:
                if method.startswith("ngac:"):
                    run = run_ngac(method[5:], task, args.frames, seed, args.episodes, out_dir, args.ngac_override)
                else:
                    run = run_sb3(method, task, args.frames, seed, args.episodes)
                runs.append(run)
                print(
                    f"{run.task} {run.method} seed {run.seed}: return {run.eval_return:.1f}, wall {run.wall_s:.0f} s, "
                    f"{run.whole_sps:.0f} steps/s whole, {run.steady_sps:.0f} steady",
                    flush=True,
                )
                write(runs, out_dir)
    print(summary(runs))
    print(f"wrote {out_dir / 'runs.csv'} and {out_dir / 'summary.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
