"""Helpers of ``workers_throughput.py``: its CPU monitor, and the child processes it runs.

Each child mode runs in its own process and prints one JSON line:

    python benchmarks/workers_probe.py raw N SECONDS    # SyncVectorEnv(N), random actions, after "GO" on stdin
    python benchmarks/workers_probe.py sb3 dummy|subproc FRAMES SEED  # SB3 A2C, 8 envs, VecNormalize
    python benchmarks/workers_probe.py ngac-timed OUT.json [--one-worker-process N] NGAC_TRAIN_ARGS...

``ngac-timed`` is ``ngac train`` with wall-clock timers wrapped around the pieces of one vector step
(the gymnasium step, TorchRL's GymWrapper step, ngac's three transforms, the rollout policy, and, with
``env.workers > 1``, ParallelEnv's step and its wait for the workers). The timers accumulate in this
process only: with workers, what runs inside them is seen through their CPU time instead.
``--one-worker-process N`` (a benchmark-only patch) steps the N training copies in one ParallelEnv worker:
the multi-process machinery with a free core for each of its two processes, on a 2-core machine.
"""

from __future__ import annotations

import json
import resource
import sys
import threading
import time
from collections import defaultdict

import psutil

TAG = "PROBE_RESULT "


# ----------------------------------------------------------------------------- parent side: CPU monitor
def machine_busy() -> float:
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + t.irq + t.softirq


def our_cpu() -> float:
    """CPU seconds of this process and of every child it has waited for."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


class Monitor(threading.Thread):
    """CPU seconds of every process in a tree, sampled every ``period`` s: ``{pid: [(epoch, cpu_s)]}``."""

    def __init__(self, pid: int, period: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.root, self.period = psutil.Process(pid), period
        self.series: dict[int, list[tuple[float, float]]] = {}
        self.roles: dict[int, tuple[str, float]] = {}  # pid -> (role, create_time)
        self.machine: list[tuple[float, float]] = []
        self.done = threading.Event()

    def role(self, p: psutil.Process) -> str:
        """main; worker (a spawned child, or a child of a forkserver: those keep its command line); helper."""
        if p.pid == self.root.pid:
            return "main"
        cmd, parent = " ".join(p.cmdline()), p.ppid()
        if ("spawn_main" in cmd and parent == self.root.pid) or ("forkserver" in cmd and parent != self.root.pid):
            return "worker"
        return "helper"  # resource tracker, forkserver, short-lived probes

    def sample(self) -> None:
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return
        now = time.time()
        for p in procs:
            try:
                if p.pid not in self.roles:
                    self.roles[p.pid] = (self.role(p), p.create_time())
                t = p.cpu_times()
                self.series.setdefault(p.pid, []).append((now, t.user + t.system))
            except psutil.Error:
                continue
        self.machine.append((now, machine_busy()))

    def run(self) -> None:
        while not self.done.is_set():
            self.sample()
            self.done.wait(self.period)


def at(series: list[tuple[float, float]], t: float) -> float:
    """Linear interpolation of a cumulative series at ``t`` (clamped to its ends)."""
    if t <= series[0][0]:
        return series[0][1]
    for (t0, v0), (t1, v1) in zip(series, series[1:]):
        if t0 <= t <= t1:
            return v0 + (v1 - v0) * (t - t0) / max(t1 - t0, 1e-9)
    return series[-1][1]


def cores(mon: Monitor, ta: float, tb: float) -> dict[str, float]:
    """Cores used in ``[ta, tb]`` by the main process, each worker (by start order), helpers, others."""
    out: dict[str, float] = {"main": 0.0, "helpers": 0.0}
    dt = tb - ta
    workers = sorted((c, pid) for pid, (r, c) in mon.roles.items() if r == "worker")
    for i, (_, pid) in enumerate(workers):
        s = mon.series[pid]
        out[f"w{i}"] = (at(s, tb) - at(s, ta)) / dt if len(s) > 1 else 0.0
    for pid, (r, _) in mon.roles.items():
        if r != "worker" and len(mon.series[pid]) > 1:
            out["main" if r == "main" else "helpers"] += (at(mon.series[pid], tb) - at(mon.series[pid], ta)) / dt
    ours = sum(out.values())
    out["others"] = max((at(mon.machine, tb) - at(mon.machine, ta)) / dt - ours, 0.0)
    return out


# ----------------------------------------------------------------------------- child side
def raw(n: int, seconds: float) -> dict:
    """Random-action stepping of ``SyncVectorEnv(n)`` for ``seconds``, from a "GO" line on stdin."""
    import gymnasium as gym
    import numpy as np
    from gymnasium.vector import AutoresetMode, SyncVectorEnv

    env = SyncVectorEnv([lambda: gym.make("HalfCheetah-v5") for _ in range(n)], autoreset_mode=AutoresetMode.SAME_STEP)
    env.reset(seed=0)
    low, high = env.single_action_space.low, env.single_action_space.high
    actions = np.random.default_rng(0).uniform(low, high, size=(64, n, low.shape[0])).astype(np.float32)
    for a in actions[:20]:  # warm-up
        env.step(a)
    print("READY", flush=True)  # several of these start together
    sys.stdin.readline()
    t0 = time.perf_counter()
    steps = 0
    while time.perf_counter() - t0 < seconds:
        env.step(actions[steps % 64])
        steps += 1
    dt = time.perf_counter() - t0
    env.close()
    return {"frames": steps * n, "seconds": dt, "vector_steps": steps}


def sb3(vec: str, frames: int, seed: int) -> dict:
    """SB3 A2C with its defaults (8 envs, n_steps 5) in VecNormalize, as benchmarks/peers.py runs it;
    marks in epoch seconds, the Monitor's clock."""
    from peers import learn_marked, sb3_model

    model = sb3_model("a2c", "HalfCheetah-v5", seed, vec_env=vec)
    marks = learn_marked(model, frames, clock=time.time)
    model.get_env().close()
    return {"frames": model.num_timesteps, "marks": marks}


class Timers:
    """name -> [seconds, calls], and a snapshot of them at the start of every training step."""

    def __init__(self) -> None:
        self.acc: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
        self.steps: list[tuple[float, dict[str, list[float]]]] = []

    def wrap(self, cls: type, attr: str, name: str) -> None:
        fn = getattr(cls, attr)
        acc = self.acc

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                slot = acc[name]
                slot[0] += time.perf_counter() - t0
                slot[1] += 1

        setattr(cls, attr, timed)

    def mark(self) -> None:
        self.steps.append((time.perf_counter(), {k: list(v) for k, v in self.acc.items()}))


def ngac_timed(out: str, args: list[str]) -> dict:
    from torchrl.envs import ParallelEnv
    from torchrl.envs.libs.gym import GymWrapper

    from ngac.agents.base import OnPolicyAgent
    from ngac.agents.networks import RolloutPolicy
    from ngac.cli import main
    from ngac.envs.transforms import EpisodeStats, ObsNorm, RewardScale
    from ngac.envs.wrappers import ResumableSyncVectorEnv

    if args[0] == "--one-worker-process":  # the training env's copies in ONE ParallelEnv worker (K=1 there)
        import ngac.envs.factory as factory
        from ngac.envs.parallel import parallel_env

        local, n_train, args = factory.vector_part, int(args[1]), args[2:]

        def one_worker(env_id, max_steps, continuous, n, seed, part=0):
            if n != n_train:  # evaluation envs stay in this process
                return local(env_id, max_steps, continuous, n, seed, part)
            return parallel_env(env_id, max_steps, continuous, n, seed, 1)

        factory.vector_part = one_worker
    timers = Timers()
    timers.wrap(ResumableSyncVectorEnv, "step", "sim")
    timers.wrap(GymWrapper, "_step", "gymwrapper")
    for cls in (ObsNorm, EpisodeStats, RewardScale):
        timers.wrap(cls, "_step", "transforms")
    timers.wrap(RolloutPolicy, "forward", "policy")
    timers.wrap(ParallelEnv, "_step", "parallel_step")
    timers.wrap(ParallelEnv, "_wait_for_workers", "parallel_wait")
    step = OnPolicyAgent.training_step

    def marked(self, dataloader_iter):
        timers.mark()  # before the batch is collected
        return step(self, dataloader_iter)

    OnPolicyAgent.training_step = marked
    rc = main(["train", *args])
    result = {"rc": rc, "steps": timers.steps}
    with open(out, "w") as fh:
        json.dump(result, fh)
    return {"rc": rc, "batches": len(timers.steps)}


def run(argv: list[str]) -> int:
    mode, rest = argv[0], argv[1:]
    if mode == "raw":
        res = raw(int(rest[0]), float(rest[1]))
    elif mode == "sb3":
        res = sb3(rest[0], int(rest[1]), int(rest[2]))
    elif mode == "ngac-timed":
        res = ngac_timed(rest[0], rest[1:])
    else:
        print(f"unknown mode {mode!r}; valid: raw, sb3, ngac-timed", file=sys.stderr)
        return 2
    print(TAG + json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
