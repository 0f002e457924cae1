#!/usr/bin/env bash
# GPU check of the trainer, a few minutes on one CUDA machine:
#   1. updates run on the GPU (the checkpointed parameters are cuda tensors) while environments
#      step on the CPU,
#   2. the collector's CPU copy of the actor follows the GPU actor after every update (otherwise
#      the GPU run would drift from the CPU run by far more than kernel rounding),
#   3. a GPU run and a CPU run of the same seed stay close (not bitwise: different kernels),
#   4. resume on the GPU: a run stopped at 10240 frames and resumed to 20480 ends with the same
#      parameters as the straight 20480-frame run, within RESUME_TOL (default 1e-5).
# Usage: bash benchmarks/gpu_check.sh [OUT_DIR]   (OUT_DIR defaults to ./gpu_check)
#        ACCEL=cpu bash benchmarks/gpu_check.sh OUT_DIR   checks the script itself without a GPU.
set -euo pipefail
OUT=${1:-${OUT:-./gpu_check}}
ACCEL=${ACCEL:-gpu}
RESUME_TOL=${RESUME_TOL:-1e-5}
mkdir -p "$OUT"
python -c "import ngac" 2>/dev/null || python -m pip install -q -e .
ACCEL=$ACCEL python - <<'PY'
import os, torch
if os.environ["ACCEL"] == "gpu":
    assert torch.cuda.is_available(), "no CUDA device visible"
    print("device:", torch.cuda.get_device_name(0), "torch", torch.__version__)
else:
    print("ACCEL=cpu: checking the script on the CPU, torch", torch.__version__)
PY
COMMON="env=halfcheetah trainer.eval_episodes=2 trainer.eval_every_frames=100000000 trainer.checkpoint_every_frames=10240 trainer.progress_bar=false seed=0 logger.tracking_uri=sqlite:///$OUT/mlflow.db"
/usr/bin/time -v ngac train $COMMON trainer.total_frames=20480 trainer.accelerator=$ACCEL out_dir=$OUT/gpu 2> "$OUT/gpu_time.txt" | tee "$OUT/gpu.log"
ngac train $COMMON trainer.total_frames=20480 trainer.accelerator=cpu out_dir=$OUT/cpu | tee "$OUT/cpu.log"
ngac train $COMMON trainer.total_frames=10240 trainer.accelerator=$ACCEL out_dir=$OUT/gpu_resumed | tee "$OUT/gpu_half.log"
ngac train $COMMON trainer.total_frames=20480 trainer.accelerator=$ACCEL resume=$OUT/gpu_resumed/checkpoints/last.ckpt | tee "$OUT/gpu_resumed.log"
python - "$OUT" "$RESUME_TOL" "$ACCEL" <<'PY'
import sys, torch, mlflow
out, tol, accel = sys.argv[1], float(sys.argv[2]), sys.argv[3]
devices = {str(v.device) for v in torch.load(f"{out}/gpu/checkpoints/last.ckpt", weights_only=False)["state_dict"].values()}
print("the", accel, "run's checkpointed parameters were on:", devices)
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
for run in client.search_runs([client.get_experiment_by_name("ngac").experiment_id]):
    med = lambda key: (lambda v: sorted(v)[len(v) // 2] if v else float("nan"))(
        [m.value for m in client.get_metric_history(run.info.run_id, key)])
    print(run.data.params["trainer.accelerator"], run.data.params.get("trainer.total_frames"),
          "median sps", med("charts/sps"), "median update_ms", med("perf/update_ms"),
          "median collect_ms", med("perf/collect_ms"), "median critic_ms", med("perf/critic_ms"))
assert d <= tol, f"resumed GPU run differs from the straight one by {d:.3e} > {tol:g}"
PY
echo "gpu_check: OK"
