"""``hydra/launcher=slurm``: hydra-submitit-launcher's SLURM launcher, with what a real cluster needs.

- **A job shape that no node offers is a one-line error before anything is submitted**
  (:func:`prepare_sweep`, called by :class:`ngac.sweeps.SweepParentRun` before the sweep's parent
  run exists): ``cpus_per_task``, ``mem_gb``, ``gpus_per_node``, ``nodes`` and ``timeout_min``
  against ``sinfo``'s view of the partition. A submitted job that pends for a reason that never
  clears (``PartitionConfig``, a per-job QOS limit, ...) is reported in one line and the sweep's
  jobs are cancelled, instead of waiting forever.
- **Without SLURM accounting, submitit's "Bypassing sacct error" warnings become one line**
  (:class:`QuietSacct`); ngac follows the jobs with ``squeue`` and their result files, so a job
  that leaves the queue without a result ends the wait instead of hanging it.
- **A job that reaches its time limit, or is preempted, is requeued and continues from a
  checkpoint taken at that moment**: SLURM sends ``SIGUSR2`` ``signal_delay_s`` before the limit;
  ngac turns it into its own stop signal (the update finishes, ``last.ckpt`` is written), then
  submitit's checkpoint hook resubmits the same Hydra job (same overrides, same output folder) with
  ``scontrol requeue``, at most ``max_num_timeout`` times for time limits. The requeued job resumes
  from that checkpoint into the same MLflow run (:mod:`ngac.requeue`).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as _SubmititSlurmLauncher
from omegaconf import OmegaConf
from submitit.slurm.slurm import SlurmInfoWatcher

from ngac.validate import ConfigError

log = logging.getLogger(__name__)
SQUEUE_EVERY_S = 5.0
GONE_GRACE_S = 30.0  # a job out of the queue this long without a result file has died
NEVER_STARTS = {"PartitionConfig", "PartitionNodeLimit", "PartitionTimeLimit", "BadConstraints", "InvalidQOS",
                "InvalidAccount", "JobHeldAdmin"}  # fmt: skip


def never_starts(reason: str) -> bool:
    """A pending reason that waiting does not clear (per-job limits, a shape the partition lacks)."""
    return reason in NEVER_STARTS or (reason.startswith(("QOSMax", "AssocMax")) and "PerJob" in reason)


# --------------------------------------------------------------------------- job shape
@dataclass
class Node:
    name: str
    cpus: int
    mem_mb: int
    gpus: int


def _run(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def _gpus(gres: str) -> int:
    """GPUs in a ``sinfo`` GRES string such as ``gpu:4``, ``gpu:a100:2(S:0-1)`` or ``(null)``."""
    total = 0
    for item in gres.split(","):
        parts = re.sub(r"\(.*?\)", "", item).split(":")
        if parts[0] == "gpu" and len(parts) > 1 and parts[-1].isdigit():
            total += int(parts[-1])
    return total


def _minutes(limit: str) -> float:
    """``sinfo``'s time limit (``infinite``, ``30:00``, ``4:00:00``, ``1-00:00:00``) in minutes."""
    if limit in ("infinite", "UNLIMITED", "n/a", ""):
        return float("inf")
    days, _, rest = limit.rpartition("-")
    fields = [int(x) for x in rest.split(":")]
    h, m, s = ([0] * (3 - len(fields)) + fields) if len(fields) > 1 else (0, fields[0], 0)
    return (int(days or 0) * 24 + h) * 60 + m + s / 60


def partition_nodes(partition: str | None) -> tuple[str, list[Node], float] | None:
    """(partition name, its nodes, its time limit in minutes) from ``sinfo``; None without ``sinfo``."""
    names = _run(["sinfo", "-h", "-o", "%P"])
    if names is None:
        return None
    parts = [p.strip() for p in names.split()]
    if partition is None:
        default = [p[:-1] for p in parts if p.endswith("*")]
        if not default:
            return None
        partition = default[0]
    elif partition not in [p.rstrip("*") for p in parts]:
        known = ", ".join(p.rstrip("*") for p in parts)
        raise ConfigError(f"hydra.launcher.partition={partition} is not a SLURM partition here; partitions: {known}")
    rows = _run(["sinfo", "-h", "-N", "-p", partition, "-o", "%N|%c|%m|%G|%l"]) or ""
    nodes, limit = [], float("inf")
    for row in rows.splitlines():
        name, cpus, mem, gres, tlimit = row.strip().split("|")
        nodes.append(Node(name, int(cpus.rstrip("+")), int(mem.rstrip("+")), _gpus(gres)))
        limit = _minutes(tlimit)
    return partition, nodes, limit


def shape_problems(params: Any, partition: str, nodes: list[Node], limit_min: float) -> list[str]:
    """What in the requested job shape no node of ``partition`` offers, one clause per resource."""
    get = params.get
    tasks = int(get("tasks_per_node") or 1)
    cpus = int(get("cpus_per_task") or 1) * tasks
    mem_gb = get("mem_gb")
    gpus = int(get("gpus_per_node") or 0)
    wanted = int(get("nodes") or 1)
    where = f"in partition {partition}"
    if not nodes:
        return [f"partition {partition} has no nodes"]
    problems = []

    def largest(attr: str) -> Node:
        return max(nodes, key=lambda n: getattr(n, attr))

    def node_words(n: Node) -> str:
        return f"node {n.name}" if len(nodes) == 1 else f"the largest node ({n.name})"

    if cpus > (n := largest("cpus")).cpus:
        asked = f"hydra.launcher.cpus_per_task={get('cpus_per_task')}" + (
            f" x tasks_per_node={tasks}" if tasks > 1 else ""
        )
        problems.append(f"{asked} exceeds the {n.cpus} CPUs of {node_words(n)} {where}; "
                        f"set hydra.launcher.cpus_per_task<={n.cpus // tasks}")  # fmt: skip
    if mem_gb is not None and float(mem_gb) * 1024 > (n := largest("mem_mb")).mem_mb:
        problems.append(f"hydra.launcher.mem_gb={mem_gb} exceeds the {n.mem_mb} MB of {node_words(n)} {where}; "
                        f"set hydra.launcher.mem_gb<={n.mem_mb // 1024}")  # fmt: skip
    if gpus > (n := largest("gpus")).gpus:
        problems.append(f"hydra.launcher.gpus_per_node={gpus} exceeds the {n.gpus} GPUs of {node_words(n)} {where}; "
                        f"set hydra.launcher.gpus_per_node<={n.gpus}")  # fmt: skip
    fit = [n for n in nodes if n.cpus >= cpus and n.mem_mb >= float(mem_gb or 0) * 1024 and n.gpus >= gpus]
    if not problems and len(fit) < wanted:
        problems.append(f"hydra.launcher.nodes={wanted} but only {len(fit)} node(s) {where} fit one task's shape")
    timeout = get("timeout_min")
    if timeout is not None and timeout > limit_min:
        problems.append(f"hydra.launcher.timeout_min={timeout} exceeds the {limit_min:.0f}-minute limit of "
                        f"partition {partition}; set hydra.launcher.timeout_min<={limit_min:.0f}")  # fmt: skip
    return problems


def check_job_shape(params: Any) -> None:
    """Raise :class:`ConfigError` (one line) when no node of the partition can run one job.

    Does nothing where ``sinfo`` is missing or fails: ``sbatch`` then speaks for itself.
    """
    found = partition_nodes(params.get("partition"))
    if found is None:
        return
    if problems := shape_problems(params, *found):
        raise ConfigError("; ".join(problems))


# --------------------------------------------------------------------------- sacct noise
class QuietSacct(SlurmInfoWatcher):
    """Submitit's ``sacct`` poller, minus the noise where there is no accounting.

    Submitit's own prints ``sacct``'s error and a "Bypassing sacct error" warning at every poll
    (three lines with Hydra's log handlers). This one says it once, in one line; the states then
    come from ``squeue`` and the result files (:func:`wait_for`).
    """

    said = False

    def update(self) -> None:
        command = self._make_command()
        if command is None:
            return
        self._num_calls += 1
        out = subprocess.run(command, capture_output=True, check=False)
        if out.returncode == 0:
            self._info_dict.update(self.read_info(out.stdout))
        elif not self.said:
            self.said = True
            why = (out.stderr.decode(errors="replace").strip().splitlines() or [f"exit {out.returncode}"])[0]
            print(f"ngac: sacct does not answer ({why}); following the jobs with squeue", file=sys.stderr)
        self._last_status_check = time.time()
        for job_id in self._registered - self._finished:
            if self.is_done(job_id, mode="cache"):
                self._finished.add(job_id)


# --------------------------------------------------------------------------- waiting
def squeue_states(job_ids: list[str]) -> dict[str, tuple[str, str]] | None:
    """{job id: (state, reason)} for the listed jobs still in the queue; None if ``squeue`` fails."""
    base_ids = sorted({j.split("_")[0] for j in job_ids})
    out = _run(["squeue", "-h", "-r", "-j", ",".join(base_ids), "-o", "%i|%T|%r"])
    if out is None:
        return None
    states = {}
    for row in out.splitlines():
        jid, state, reason = (row.strip().split("|") + ["", ""])[:3]
        states[jid] = (state, reason)
    return states


def unschedulable_message(job_id: str, reason: str, params: Any) -> str:
    found = partition_nodes(params.get("partition"))
    head = f"SLURM job {job_id} can never start (pending reason {reason})"
    problems = shape_problems(params, *found) if found else []
    if problems:
        return f"{head}: {'; '.join(problems)}"
    asked = ", ".join(f"{k}={params.get(k)}" for k in ("cpus_per_task", "mem_gb", "gpus_per_node", "nodes",
                                                        "timeout_min", "partition", "qos", "account"))  # fmt: skip
    return f"{head}; it asks hydra.launcher {asked}: compare with `scontrol show partition` and your QOS limits"


def wait_for(jobs: list[Any], params: Any) -> list[Any]:
    """Each job's result; one line and the jobs cancelled when one pends for a reason that never clears.

    Submitit alone waits on ``sacct``; without accounting a job that dies without a result file
    would be waited on forever. Here a job out of ``squeue`` for ``GONE_GRACE_S`` without one has died.
    """
    last_squeue, missing_since, gone = float("-inf"), {}, set()
    while remaining := [j for j in jobs if j.job_id not in gone and not j.done()]:
        now = time.monotonic()
        if now - last_squeue >= SQUEUE_EVERY_S and (states := squeue_states([j.job_id for j in remaining])) is not None:
            last_squeue = now
            for j in remaining:
                state, reason = states.get(j.job_id, ("", ""))
                if state == "PENDING" and never_starts(reason):
                    _run(["scancel", *sorted({x.job_id.split("_")[0] for x in jobs})])
                    print(f"ngac: error: {unschedulable_message(j.job_id, reason, params)}; cancelled the sweep's jobs",
                          file=sys.stderr)  # fmt: skip
                    sys.exit(2)
                if state:
                    missing_since.pop(j.job_id, None)
                elif now - missing_since.setdefault(j.job_id, now) >= GONE_GRACE_S:
                    gone.add(j.job_id)
        time.sleep(1)
    results = []
    for j in jobs:
        if j.job_id in gone and not j.paths.result_pickle.exists():
            raise RuntimeError(f"SLURM job {j.job_id} left the queue without a result; see {j.paths.stderr}")
        results.append(j.results()[0])
    return results


# --------------------------------------------------------------------------- the launcher
SUBMITIT_SLURM = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"


class SlurmLauncher(_SubmititSlurmLauncher):
    """Submitit's SLURM launcher with the checks, the quiet wait and the requeue above.

    Hydra instantiates launchers only from its plugin registry, by names under ``hydra_plugins``;
    :func:`prepare_sweep` registers this subclass under the name of submitit's, which
    ``configs/hydra/launcher/slurm.yaml`` keeps as its ``_target_``.
    """

    def launch(self, job_overrides: Any, initial_job_idx: int) -> Any:
        import submitit

        assert self.config is not None  # the job shape was checked by prepare_sweep
        init_keys = {"submitit_folder", "max_num_timeout"}
        executor = submitit.AutoExecutor(
            cluster="slurm", folder=self.params["submitit_folder"], slurm_max_num_timeout=self.params["max_num_timeout"]
        )
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{k if k in base else f"slurm_{k}": v for k, v in self.params.items() if k not in init_keys}
        )
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(f"Submitit 'slurm' sweep output dir : {sweep_dir}")
        job_params = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            job_params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))
        jobs = executor.map_array(self, *zip(*job_params))
        watcher = QuietSacct(delay_s=60)
        for j in jobs:
            j.watcher = watcher
            watcher.register_job(j.job_id)
        return wait_for(jobs, self.params)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run one Hydra job inside its SLURM allocation; requeue it when SLURM signals the time limit."""
        usr2 = signal.SIGUSR2
        requeue_now = signal.getsignal(usr2)  # submitit's checkpoint_and_try_requeue (process_job set it)
        idle_sigterm = signal.getsignal(signal.SIGTERM)  # submitit's: logs and ignores SIGTERM
        asked: list[int] = []

        def on_usr2(signum: int, frame: Any) -> None:
            if signal.getsignal(signal.SIGTERM) == idle_sigterm and callable(requeue_now):
                requeue_now(signum, frame)  # no run is going: nothing to save, requeue at once
                return
            if not asked:
                print("ngac: SLURM time limit or preemption signal: checkpoint, then requeue", file=sys.stderr)
            asked.append(signum)
            os.kill(os.getpid(), signal.SIGTERM)  # ngac's stop signal: finish the update, write last.ckpt

        signal.signal(usr2, on_usr2)
        try:
            return super().__call__(*args, **kwargs)
        except BaseException:
            if asked and callable(requeue_now):  # the run stopped on our signal, after its checkpoint
                signal.signal(usr2, signal.SIG_IGN)
                requeue_now(usr2, None)  # self.checkpoint: the same job and folder; scontrol requeue; exit
            raise
        finally:
            signal.signal(usr2, signal.SIG_IGN)  # done: a late signal must not run the job again


def prepare_sweep(launcher_cfg: Any) -> None:
    """Before a SLURM sweep (``ngac.sweeps.SweepParentRun``): check the job shape, use ngac's launcher."""
    from hydra.core.plugins import Plugins

    check_job_shape(launcher_cfg)
    Plugins.instance().class_name_to_class[SUBMITIT_SLURM] = SlurmLauncher
