"""``hydra/launcher=slurm`` against a real one-node SLURM (Debian's slurmctld, slurmd, munge), started here.

The fixture starts munged, slurmctld and slurmd as root with a private slurm.conf, key, ports and
state in a temporary folder (so it never touches a cluster already on the machine), and stops them
all at the end. Without root or the Debian packages the tests skip, except in CI (``CI=true``, or
``NGAC_REQUIRE_SLURM=1`` as ``.ci/run`` sets), where they fail: ``.ci/run`` installs the packages.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.ngac.tracking_utils import TINY_RUN, clean_env, free_port, ngac_command

pytest.importorskip("submitit")
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol", "scancel")
REPO = Path(__file__).parents[2]


@dataclass
class Cluster:
    """A running one-node SLURM: ``env`` points the SLURM commands (and the jobs) at its slurm.conf."""

    root: Path
    cpus: int
    mem_mb: int
    env: dict[str, str]
    procs: list[subprocess.Popen] = field(default_factory=list)

    def run(self, *cmd: str, check: bool = True) -> str:
        out = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=60, check=False)
        if check and out.returncode:
            raise RuntimeError(f"{' '.join(cmd)}: {out.stderr.strip()}")
        return out.stdout

    def jobs(self) -> list[str]:
        return self.run("squeue", "-h", "-r", "-o", "%i").split()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.root.glob("*.log")))

    def stop(self) -> None:
        if jobs := self.run("squeue", "-h", "-o", "%i", check=False).split():
            self.run("scancel", *jobs, check=False)
            deadline = time.monotonic() + 30
            while self.run("squeue", "-h", check=False).strip() and time.monotonic() < deadline:
                time.sleep(1)
        for proc in reversed(self.procs):  # slurmd, slurmctld, munged
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def start_cluster(root: Path) -> Cluster:
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])  # the daemons live in sbin
    where = {d: shutil.which(d, path=search) for d in DAEMONS}
    missing = [d for d, path in where.items() if path is None]
    if missing or os.geteuid() != 0:
        why = f"missing {', '.join(missing)} (apt-get install slurmd slurmctld slurm-client munge)" if missing else ""
        raise RuntimeError(why or "the SLURM daemons need root")
    (munge := root / "munge").mkdir(mode=0o700)
    key = munge / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    socket_path = munge / "socket"
    cpus = os.cpu_count() or 1
    mem_mb = int(int(Path("/proc/meminfo").read_text().split()[1]) / 1024 * 0.9)
    conf = root / "slurm.conf"
    conf.write_text(
        f"""ClusterName=ngactest
SlurmctldHost=localhost
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also sets how long a requeued job waits before it may start again (default 120 s)
AuthInfo=socket={socket_path},cred_expire=10
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
KillWait=5
# Start a requeued job as soon as it may start again (the scheduler's passes are 60 s and 30 s apart otherwise)
SchedulerParameters=sched_interval=5,bf_interval=2
NodeName=localhost CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""
    )
    env = clean_env(SLURM_CONF=str(conf), PATH=os.pathsep.join([str(Path(where["sbatch"]).parent), os.environ["PATH"]]))
    cluster = Cluster(root, cpus, mem_mb, env)
    daemons = [
        [where["munged"], "-F", "--force", f"--socket={socket_path}", f"--key-file={key}", f"--pid-file={munge}/pid",
         f"--log-file={root}/munged.log", f"--seed-file={munge}/seed"],
        [where["slurmctld"], "-D", "-f", str(conf)],
        [where["slurmd"], "-D", "-N", "localhost", "-f", str(conf)],
    ]  # fmt: skip
    try:
        for cmd in daemons:
            out = (root / f"{Path(cmd[0]).name}.out").open("w")
            cluster.procs.append(subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT))
            if cmd[0] == where["munged"]:
                _wait(lambda: socket_path.exists(), 20, "munged did not create its socket")
        _wait(lambda: cluster.run("sinfo", "-h", "-o", "%T", check=False).strip() == "idle", 60, "no idle node")
    except BaseException as exc:
        logs = cluster.logs()
        cluster.stop()
        raise RuntimeError(f"{exc}\n{logs}") from None
    return cluster


def _wait(ready, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"SLURM did not start: {what}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    try:
        cluster = start_cluster(tmp_path_factory.mktemp("slurm"))
    except RuntimeError as exc:
        if os.environ.get("CI") == "true" or os.environ.get("NGAC_REQUIRE_SLURM") == "1":  # set by .ci/run
            pytest.fail(f"SLURM could not start in CI: {exc}")
        pytest.skip(f"no local SLURM: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()


def sweep(slurm: Cluster, tmp_path: Path, *overrides: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """``ngac train -m hydra/launcher=slurm`` with tiny runs, a tmp store and sweep folder."""
    cmd = [*ngac_command(), "train", "-m", "hydra/launcher=slurm", *TINY_RUN,
           f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db", "logger.experiment_name=slurm",
           f"hydra.sweep.dir={tmp_path}/multirun", *overrides]  # fmt: skip
    env = dict(slurm.env, PYTHONPATH=str(REPO))
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def runs(tmp_path: Path):
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("slurm")
    found = client.search_runs([exp.experiment_id]) if exp else []
    parents = [r for r in found if r.data.tags.get("ngac.role") == "sweep_parent"]
    return client, parents, [r for r in found if r not in parents]


def test_a_sweep_lands_its_runs_under_one_parent_and_says_once_that_sacct_is_missing(slurm, tmp_path):
    out = sweep(slurm, tmp_path, "seed=0,1", "trainer.total_frames=256")
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-4000:]
    client, (parent,), children = runs(tmp_path)
    assert parent.info.status == "FINISHED"
    assert sorted(r.data.tags["seed"] for r in children) == ["0", "1"]
    for run in children:
        assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    # No accounting on this cluster: submitit's per-poll sacct warnings are one ngac line.
    noise = [ln for ln in text.splitlines() if "sacct" in ln or "accounting" in ln]
    assert noise == [
        "ngac: sacct does not answer (Slurm accounting storage is disabled); following the jobs with squeue"
    ]
    assert not slurm.jobs()


def test_a_job_shape_no_node_offers_is_one_line_before_anything_is_submitted(slurm, tmp_path):
    cpus = slurm.cpus + 2
    out = sweep(slurm, tmp_path, "seed=0,1", f"hydra.launcher.cpus_per_task={cpus}")
    assert out.returncode == 2, out.stderr[-3000:]
    assert out.stderr.strip().splitlines() == [
        f"ngac: error: hydra.launcher.cpus_per_task={cpus} exceeds the {slurm.cpus} CPUs of node localhost in "
        f"partition debug; set hydra.launcher.cpus_per_task<={slurm.cpus}"
    ], out.stderr
    assert not slurm.jobs() and not (tmp_path / "mlflow.db").exists() or not runs(tmp_path)[1]


def test_a_job_that_pends_for_good_is_reported_in_one_line_and_cancelled(slurm, tmp_path, capsys, monkeypatch):
    """Past the check (a shape sinfo cannot judge): the wait names the pending reason and the resource."""
    import submitit

    from ngac.slurm import wait_for

    monkeypatch.setenv("SLURM_CONF", slurm.env["SLURM_CONF"])
    params = {"cpus_per_task": slurm.cpus + 1, "mem_gb": 1, "timeout_min": 5, "nodes": 1, "partition": None}
    executor = submitit.AutoExecutor(folder=tmp_path / "%j", cluster="slurm")
    executor.update_parameters(timeout_min=5, cpus_per_task=params["cpus_per_task"], mem_gb=1)
    jobs = executor.map_array(print, ["never"])
    with pytest.raises(SystemExit) as exc:
        wait_for(jobs, params)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"ngac: error: SLURM job {jobs[0].job_id} can never start (pending reason PartitionConfig): "
        f"hydra.launcher.cpus_per_task={slurm.cpus + 1} exceeds the {slurm.cpus} CPUs of node localhost in "
        f"partition debug; set hydra.launcher.cpus_per_task<={slurm.cpus}; cancelled the sweep's jobs"
    ], err
    deadline = time.monotonic() + 30
    while slurm.jobs() and time.monotonic() < deadline:
        time.sleep(1)
    assert not slurm.jobs()


# About 60 s of training on a 2-core machine: SLURM sends the signal 20 to 50 s into the first
# allocation (it checks time limits every 30 s), and the run must still be training then.
REQUEUE_FRAMES = 48_000


def test_a_job_past_its_time_limit_is_requeued_and_finishes_its_run_from_the_checkpoint(slurm, tmp_path):
    """A 1-minute limit, SIGUSR2 10 s before it: the run writes last.ckpt, submitit requeues the
    job, and the continuation resumes from that checkpoint into the same MLflow run."""
    cmd = [*ngac_command(), "train", "-m", "hydra/launcher=slurm", *TINY_RUN, "seed=0",
           f"trainer.total_frames={REQUEUE_FRAMES}", "trainer.checkpoint_every_frames=10000000",
           "hydra.launcher.timeout_min=1", "hydra.launcher.signal_delay_s=10", "hydra.launcher.max_num_timeout=2",
           f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db", "logger.experiment_name=slurm",
           f"hydra.sweep.dir={tmp_path}/multirun"]  # fmt: skip
    env = dict(slurm.env, PYTHONPATH=str(REPO))
    with subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        deadline, extended = time.monotonic() + 300, False
        while proc.poll() is None and time.monotonic() < deadline:
            for job in slurm.run("scontrol", "show", "job", "-o", check=False).splitlines():
                if not extended and " Restarts=1 " in job and " JobState=PENDING " in job:
                    # The continuation gets time to finish (a real job's next allocation would have hours).
                    slurm.run("scontrol", "update", job.split()[0], "TimeLimit=10")
                    extended = True
            time.sleep(2)
        if proc.poll() is None:
            proc.kill()
        output = proc.communicate()[0]
    logs = "\n".join(p.read_text() for p in sorted((tmp_path / "multirun" / ".submitit").rglob("*_log.*")))
    assert proc.returncode == 0, f"{output[-3000:]}\n{logs[-4000:]}"
    assert extended, f"never requeued: the run ended before SLURM's signal (raise REQUEUE_FRAMES)\n{logs[-4000:]}"
    assert "ngac: SLURM time limit or preemption signal: checkpoint, then requeue" in logs, logs[-4000:]
    assert "Requeued job" in logs, logs[-4000:]
    client, (parent,), children = runs(tmp_path)
    assert parent.info.status == "FINISHED"
    (run,) = children  # the continuation reopened the first run; a fresh start would be a second one
    assert run.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "charts/frames")]
    assert sorted(steps) == list(range(32, REQUEUE_FRAMES + 1, 32)), "each update logged once, none lost"
