"""End-to-end training throughput against the raw environment step rate, in one run.

    python benchmarks/train_throughput.py [--frames 51200] [--repeats 3] [--env halfcheetah] [KEY=VALUE ...]

For each repeat, interleaved so machine noise hits all of them alike:
  * raw: a plain gymnasium ``SyncVectorEnv`` of the same task and number of copies, random actions
    (the physical limit of the configuration: no policy, no TorchRL, no learning);
  * raw1: one plain gymnasium env, random actions (REFERENCE.md's "physical limit for one core");
  * train: ``ngac train`` at its defaults (plus any KEY=VALUE overrides), in-process, for
    ``--frames`` frames: collection, GAE, critic and actor updates, MLflow logging. Its rate is the
    steady frames/s of ``benchmarks/throughput.py`` (the second half of training, from a mark at every
    batch end), the raw rates are raw stepping as defined there.

Prints a Markdown table of medians and the train/raw ratios, and writes it to
``benchmarks/out/train_throughput.md``.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from throughput import raw_rate, steady_rate


def train_rate(overrides: list[str], frames: int) -> tuple[float, dict[str, float]]:
    import lightning as L
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from ngac.run import TrainingRun

    tmp = tempfile.mkdtemp(prefix="ngac-bench-")
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="ngac.configs", version_base=None):
        cfg = compose(
            "config",
            overrides=[
                f"trainer.total_frames={frames}",
                "trainer.eval_every_frames=100000000",
                "trainer.checkpoint_every_frames=100000000",
                "trainer.eval_episodes=1",
                "trainer.progress_bar=false",
                f"logger.tracking_uri=sqlite:///{tmp}/mlflow.db",
                f"out_dir={tmp}/run",
                *overrides,
            ],
        )
    GlobalHydra.instance().clear()
    OmegaConf.set_struct(cfg, False)
    run = TrainingRun(cfg)
    marks: list[tuple[float, float]] = []
    build = run._build

    class Marks(L.Callback):  # (frames, seconds) at every batch end, the update included
        def on_train_batch_end(self, trainer, pl_module, *args) -> None:
            marks.append((pl_module.frames, time.perf_counter()))

    def marked_build(stop):
        trainer, model, data = build(stop)
        trainer.callbacks.append(Marks())
        return trainer, model, data

    run._build = marked_build
    run.fit()
    return steady_rate(marks, run.model.frames), phase_medians(f"sqlite:///{tmp}/mlflow.db", run.mlflow_run_id)


PHASES = ("perf/collect_ms", "perf/gae_ms", "perf/critic_ms", "perf/update_ms")


def phase_medians(uri: str, run_id: str) -> dict[str, float]:
    """Median per-batch time of each phase, read back from the run's MLflow metrics."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    out = {}
    for key in PHASES:
        values = [m.value for m in client.get_metric_history(run_id, key)]
        out[key] = statistics.median(values) if values else float("nan")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=51200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--env", default="halfcheetah")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from ngac.envs import TASKS

    env_id = TASKS[args.env]
    overrides = [f"env={args.env}", *args.overrides]
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="ngac.configs", version_base=None):
        composed = compose("config", overrides=overrides)
    num_envs, frames_per_batch = composed.env.num_envs, composed.agent.frames_per_batch
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()

    rows: dict[str, list[float]] = {"raw": [], "raw1": [], "train": [], "ratio": [], "ratio1": []}
    phases: dict[str, list[float]] = {k: [] for k in PHASES}
    for r in range(args.repeats):
        raw = raw_rate(env_id, num_envs, 400)
        raw1 = raw_rate(env_id, 1, 4000)
        train, phase = train_rate(overrides, args.frames)
        for k in PHASES:
            phases[k].append(phase[k])
        rows["raw"].append(raw)
        rows["raw1"].append(raw1)
        rows["train"].append(train)
        rows["ratio"].append(train / raw)
        rows["ratio1"].append(train / raw1)
        print(f"repeat {r}: raw({num_envs}) {raw:.0f}/s, raw(1) {raw1:.0f}/s, train {train:.0f}/s", flush=True)

    med = {k: statistics.median(v) for k, v in rows.items()}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
        platform.processor(),
    )
    lines = [
        f"Command: `python benchmarks/train_throughput.py --frames {args.frames} --repeats {args.repeats} --env {args.env}"
        + (" " + " ".join(args.overrides) if args.overrides else "")
        + "`",
        f"Commit {commit}, {time.strftime('%Y-%m-%d')}, {cpu}, {os.cpu_count()} cores, torch {torch.__version__}, 1 thread; "
        f"medians of {args.repeats} interleaved repeats.",
        "",
        "| what | steps/s (median) | min | max |",
        "|---|---|---|---|",
        f"| raw gymnasium SyncVectorEnv, {num_envs} copies, random actions | {med['raw']:.0f} | {min(rows['raw']):.0f} | {max(rows['raw']):.0f} |",
        f"| raw gymnasium, 1 env, random actions | {med['raw1']:.0f} | {min(rows['raw1']):.0f} | {max(rows['raw1']):.0f} |",
        f"| ngac train, steady (collection + GAE + updates + logging), {' '.join(overrides)} | {med['train']:.0f} | {min(rows['train']):.0f} | {max(rows['train']):.0f} |",
        f"| ratio train / raw({num_envs}) | {med['ratio']:.2f} | {min(rows['ratio']):.2f} | {max(rows['ratio']):.2f} |",
        f"| ratio train / raw(1) | {med['ratio1']:.2f} | {min(rows['ratio1']):.2f} | {max(rows['ratio1']):.2f} |",
    ]
    # Per batch: the same frames at the raw rate, against where training's wall-clock went.
    ph = {k: statistics.median(v) for k, v in phases.items()}
    batch_ms = frames_per_batch / med["train"] * 1e3
    raw_ms = frames_per_batch / med["raw"] * 1e3
    critic_ms = 0.0 if math.isnan(ph["perf/critic_ms"]) else ph["perf/critic_ms"]  # PPO logs no critic phase
    actor_ms = ph["perf/update_ms"] - critic_ms
    parts = {
        "collection (envs + policy + TorchRL)": ph["perf/collect_ms"],
        "GAE": ph["perf/gae_ms"],
        "critic (Adam epochs)": ph["perf/critic_ms"],
        "actor (curvature + step rule)": actor_ms,
    }
    parts["other (Lightning, logging, callbacks)"] = max(
        batch_ms - sum(v for v in parts.values() if not math.isnan(v)), 0.0
    )
    lines += [
        "",
        f"Where one batch of {frames_per_batch} frames goes (medians of the per-batch `perf/*` metrics):",
        "",
        "| phase | ms per batch | share |",
        "|---|---|---|",
        *[f"| {k} | {v:.1f} | {v / batch_ms:.0%} |" for k, v in parts.items()],
        f"| **total** (frames / steady train rate) | {batch_ms:.1f} | 100% |",
        f"| raw SyncVectorEnv({num_envs}) for the same frames | {raw_ms:.1f} | {raw_ms / batch_ms:.0%} |",
    ]
    text = "\n".join(lines)
    print(text)
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "train_throughput.md").write_text(text + "\n")
    plot(parts, raw_ms, frames_per_batch, num_envs, out / "train_throughput.png")


def plot(parts: dict[str, float], raw_ms: float, frames: int, num_envs: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 2.6))
    left = 0.0
    colors = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3"]
    for (name, ms), c in zip(parts.items(), colors):
        ax.barh(1, ms, left=left, color=c, label=f"{name}: {ms:.0f} ms")
        left += ms
    ax.barh(0, raw_ms, color="#999999", label=f"raw SyncVectorEnv({num_envs}), random actions: {raw_ms:.0f} ms")
    ax.axvline(raw_ms / 0.8, color="k", ls="--", lw=1)
    ax.text(raw_ms / 0.8, 1.45, " 0.8x target", fontsize=8, va="bottom")
    ax.set_yticks([0, 1], ["raw env", "ngac train"])
    ax.set_xlabel(f"ms per batch of {frames} frames (median)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
