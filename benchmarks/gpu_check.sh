#!/usr/bin/env bash
# GPU check of the trainer, one call of under 8 minutes on one CUDA machine (16 cores). Stages:
#   header      the card(s) (nvidia-smi), torch and CUDA versions, the commit.
#   scale       one actor update at d ~ 1e6 on the GPU against the CPU (all cores), every backend
#               (benchmarks/scale_compute.py --d 1e6 --device cuda,cpu): median ms, ratio to identity, peak memory.
#   critic      the critic update alone (160 Adam steps of 64 on a 64x64 MLP, HalfCheetah sizes): eager against one
#               CUDA graph per step and against torch.compile (benchmarks/critic_gpu.py); median ms, ratio to eager,
#               the largest parameter difference to eager. GPU only (ACCEL=cpu skips it).
#   backends_d1 every curvature backend (identity, sherman_morrison, diagonal, kfac, cg, hybrid) and algo=ppo train
#               briefly on Pendulum with trainer.accelerator=$ACCEL trainer.devices=1 (one sweep, MLflow in a sqlite
#               store in OUT_DIR); each run must finish, and on the GPU its checkpointed parameters must be cuda tensors.
#   halfcheetah updates on the GPU while environments step on the CPU; a GPU run and a CPU run of the same seed
#               stay close (not bitwise: different kernels), which also shows that the collector's CPU copy of the
#               actor follows the GPU actor; a GPU run stopped at 10240 frames and resumed to 20480 ends with the
#               parameters of the straight run, within RESUME_TOL (default 1e-5).
#   backends_d2 the backends_d1 sweep with trainer.devices=2, only where `nvidia-smi -L` lists two or more GPUs
#               (DEVICES2=1 forces it, e.g. on the CPU; DEVICES2=0 skips it). Last, with the time that is left.
# Every stage appends its results, its duration and the elapsed total to ONE file, OUT_DIR/gpu_check_results.txt;
# full logs go to OUT_DIR/logs/<stage>.log. A failing stage is recorded (with its log's last lines) and the
# others still run; the script exits 1 if any stage failed. Each stage has a time limit so the whole stays
# under BUDGET_S (default 470 s).
# Usage: bash benchmarks/gpu_check.sh [OUT_DIR]   (OUT_DIR defaults to ./gpu_check)
#        ACCEL=cpu bash benchmarks/gpu_check.sh OUT_DIR   checks the script itself without a GPU.
set -uo pipefail
OUT=${1:-${OUT:-./gpu_check}}
ACCEL=${ACCEL:-gpu}
RESUME_TOL=${RESUME_TOL:-1e-5}
BUDGET_S=${BUDGET_S:-470}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT/logs"
OUT=$(cd "$OUT" && pwd)
RESULTS=$OUT/gpu_check_results.txt
START=$SECONDS
FAILED=()
NGPU=$( (command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -c '^GPU') || echo 0)
NCPU=$(nproc)
export OUT ACCEL RESUME_TOL RESULTS HERE NGPU NCPU

note() { echo "$*" | tee -a "$RESULTS"; }

run_stage() {  # run_stage NAME LIMIT_S FUNCTION: FUNCTION under min(LIMIT_S, what is left of BUDGET_S)
    local name=$1 limit=$2 fn=$3 t0=$SECONDS rc left
    left=$((BUDGET_S - (SECONDS - START) - 15))
    if ((left < limit)); then limit=$left; fi
    if ((limit < 30)); then
        FAILED+=("$name")
        note "--- $name FAILED: not started, only $((limit + 15)) s of the ${BUDGET_S} s budget left"
        return
    fi
    note "--- $name (limit ${limit} s)"
    timeout --kill-after=15 "$limit" bash -c "$fn" >"$OUT/logs/$name.log" 2>&1
    rc=$?
    if ((rc != 0)); then
        FAILED+=("$name")
        note "$name FAILED: exit $rc (124: over its ${limit} s limit); last lines of logs/$name.log:"
        tail -n 25 "$OUT/logs/$name.log" | sed 's/^/    /' >>"$RESULTS"
    fi
    note "--- $name: $((SECONDS - t0)) s (elapsed $((SECONDS - START)) s)"
}

header() {
    python -c "import ngac" 2>/dev/null || python -m pip install -q -e "$HERE/.."
    {
        echo "commit $(git -C "$HERE/.." rev-parse --short HEAD 2>/dev/null || echo unknown), ACCEL=$ACCEL, $NCPU CPU cores, $NGPU GPU(s)"
        if ((NGPU > 0)); then nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader; fi
        python - <<'PY'
import os, platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda,
      "cuda devices visible to torch:", torch.cuda.device_count())
if os.environ["ACCEL"] == "gpu":
    assert torch.cuda.is_available(), "no CUDA device visible"
    print("device 0:", torch.cuda.get_device_name(0))
else:
    print("ACCEL=cpu: checking the script on the CPU")
PY
    } | tee -a "$RESULTS"
}

scale() {  # d ~ 1e6 actor update, GPU against CPU (all cores), every backend
    local devs=cpu repeats=3
    if [[ $ACCEL == gpu ]]; then devs=cuda,cpu repeats=5; fi
    python "$HERE/scale_compute.py" --d 1e6 --device "$devs" --threads "$NCPU" --repeats "$repeats" \
        --out-dir "$OUT/scale" &&
        { echo "d ~ 1e6, batch 2048, $repeats rounds, CPU with $NCPU threads:"; cat "$OUT/scale/scale_compute.md"; } >>"$RESULTS"
}

critic() {  # the critic's hot loop on the GPU: eager, CUDA graphs, torch.compile
    python "$HERE/critic_gpu.py" --repeats 10 | tee -a "$RESULTS"
}

backends() {  # backends DEVICES: every backend and PPO, briefly, in one sweep
    local devices=$1
    local jobs=$((NCPU >= 8 ? 7 : 2))
    if ((devices > 1)); then jobs=1; fi
    NGAC_SWEEP_JOBS=$jobs ngac train -m algo=identity,sherman_morrison,diagonal,kfac,cg,hybrid,ppo env=pendulum \
        trainer.total_frames=2048 trainer.eval_episodes=2 trainer.eval_every_frames=100000000 \
        trainer.checkpoint_every_frames=100000000 trainer.progress_bar=false seed=0 \
        trainer.accelerator="$ACCEL" trainer.devices="$devices" \
        logger.tracking_uri="sqlite:///$OUT/mlflow.db" logger.experiment_name="gpu_check_d$devices" \
        hydra.sweep.dir="$OUT/sweep_d$devices" || return 1
    python - "$OUT" "$ACCEL" "$devices" <<'PY' | tee -a "$RESULTS"
import math, os, sys, mlflow, torch
out, accel, devices = sys.argv[1], sys.argv[2], sys.argv[3]
client = mlflow.MlflowClient(f"sqlite:///{out}/mlflow.db")
runs = [r for r in client.search_runs([client.get_experiment_by_name(f"gpu_check_d{devices}").experiment_id])
        if "algo" in r.data.tags]
bad = []
for run in sorted(runs, key=lambda r: r.data.tags["algo"]):
    algo, p, m = run.data.tags["algo"], run.data.params, run.data.metrics
    ckpt = os.path.join(p.get("out_dir", ""), "checkpoints", "last.ckpt")
    where = sorted({str(v.device) for v in torch.load(ckpt, weights_only=False)["state_dict"].values()}) \
        if os.path.isfile(ckpt) else ["no checkpoint"]
    ups = [x.value for x in client.get_metric_history(run.info.run_id, "perf/update_ms")]
    print(f"devices={devices} {algo:<17} {run.info.status:<9} accelerator={p.get('trainer.accelerator')} "
          f"devices={p.get('trainer.devices')} frames={m.get('charts/frames', float('nan')):.0f} "
          f"eval_return={m.get('eval/episode_return', float('nan')):.1f} "
          f"update_ms={sorted(ups)[len(ups) // 2] if ups else float('nan'):.1f} params_on={','.join(where)}")
    if run.info.status != "FINISHED" or not math.isfinite(m.get("eval/episode_return", float("nan"))):
        bad.append(algo)
    if accel == "gpu" and not any(w.startswith("cuda") for w in where):
        bad.append(f"{algo} (parameters not on the GPU)")
want = {"identity", "sherman_morrison", "diagonal", "kfac", "cg", "hybrid", "ppo"}
missing = want - {r.data.tags["algo"] for r in runs}
assert not bad and not missing, f"failed: {bad}, missing: {sorted(missing)}"
PY
}

halfcheetah() {  # GPU updates, GPU vs CPU, exact resume on the GPU
    local common="env=halfcheetah trainer.eval_episodes=2 trainer.eval_every_frames=100000000 trainer.checkpoint_every_frames=10240 trainer.progress_bar=false seed=0 logger.tracking_uri=sqlite:///$OUT/mlflow.db logger.experiment_name=gpu_check_halfcheetah"
    # shellcheck disable=SC2086
    {
        ngac train $common trainer.total_frames=20480 trainer.accelerator="$ACCEL" out_dir="$OUT/gpu" hydra.run.dir="$OUT/hydra/gpu" &&
            ngac train $common trainer.total_frames=20480 trainer.accelerator=cpu out_dir="$OUT/cpu" hydra.run.dir="$OUT/hydra/cpu" &&
            ngac train $common trainer.total_frames=10240 trainer.accelerator="$ACCEL" out_dir="$OUT/gpu_resumed" hydra.run.dir="$OUT/hydra/gpu_resumed" &&
            ngac train $common trainer.total_frames=20480 trainer.accelerator="$ACCEL" \
                resume="$OUT/gpu_resumed/checkpoints/last.ckpt" hydra.run.dir="$OUT/hydra/resume"
    } || return 1
    python - "$OUT" "$RESUME_TOL" "$ACCEL" <<'PY' | tee -a "$RESULTS"
import sys, torch, mlflow
out, tol, accel = sys.argv[1], float(sys.argv[2]), sys.argv[3]
devices = {str(v.device) for v in torch.load(f"{out}/gpu/checkpoints/last.ckpt", weights_only=False)["state_dict"].values()}
print("HalfCheetah: the", accel, "run's checkpointed parameters were on:", devices)
assert accel != "gpu" or any(d.startswith("cuda") for d in devices), "the updates did not run on the GPU"
load = lambda p: torch.load(p, weights_only=False, map_location="cpu")
g = load(f"{out}/gpu/checkpoints/last.ckpt")
c = load(f"{out}/cpu/checkpoints/last.ckpt")
r = load(f"{out}/gpu_resumed/checkpoints/last.ckpt")
def maxdiff(a, b):
    return max((a["state_dict"][k].float() - b["state_dict"][k].float()).abs().max().item() for k in a["state_dict"])
print("frames: gpu", g["ngac"]["frames"], "cpu", c["ngac"]["frames"], "resumed", r["ngac"]["frames"])
print(f"max |param_gpu - param_cpu| after 20 updates: {maxdiff(g, c):.3e}")
d = maxdiff(g, r)
print(f"max |param_gpu - param_gpu_resumed| after 20 updates: {d:.3e} (tolerance {tol:g})")
client = mlflow.MlflowClient(f"sqlite:///{out}/mlflow.db")
for run in client.search_runs([client.get_experiment_by_name("gpu_check_halfcheetah").experiment_id]):
    med = lambda key: (lambda v: sorted(v)[len(v) // 2] if v else float("nan"))(
        [m.value for m in client.get_metric_history(run.info.run_id, key)])
    print(run.data.params["trainer.accelerator"], run.data.params.get("trainer.total_frames"),
          "median sps", med("charts/sps"), "median update_ms", med("perf/update_ms"),
          "median collect_ms", med("perf/collect_ms"), "median critic_ms", med("perf/critic_ms"))
assert d <= tol, f"resumed GPU run differs from the straight one by {d:.3e} > {tol:g}"
PY
}

backends_d1() { backends 1; }
backends_d2() { backends 2; }
export -f note header scale critic backends backends_d1 backends_d2 halfcheetah

note "=== gpu_check $(date -u '+%Y-%m-%d %H:%M:%S UTC') on $(hostname), OUT=$OUT, budget ${BUDGET_S} s"
run_stage header 120 header
run_stage scale 120 scale
if [[ $ACCEL == gpu ]]; then run_stage critic 60 critic; else note "--- critic skipped: ACCEL=$ACCEL (needs a GPU)"; fi
run_stage backends_d1 120 backends_d1
run_stage halfcheetah 180 halfcheetah
DEVICES2=${DEVICES2:-auto}
if [[ $DEVICES2 == 1 || ($DEVICES2 == auto && $NGPU -ge 2) ]]; then
    # trainer.devices=2 (data-parallel): refused by ngac's config checks until data-parallel training lands
    run_stage backends_d2 "$BUDGET_S" backends_d2
else
    note "--- backends_d2 skipped: $NGPU GPU(s) (needs 2, or DEVICES2=1)"
fi
if ((${#FAILED[@]})); then
    note "gpu_check: FAILED stages: ${FAILED[*]} (total $((SECONDS - START)) s)"
    exit 1
fi
note "gpu_check: OK (total $((SECONDS - START)) s)"
