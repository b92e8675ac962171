#!/bin/bash
# The real-data presets on one lent GPU, all at once, inside a fixed wall-clock budget:
#   binarized-MNIST likelihood (pretrain.max_minutes fills the budget; its Bernoulli mixture on CPU beside it),
#   MNIST→USPS, USPS→MNIST and MNIST-100-labels, one process per (preset, seed) with adapt.repeats=1.
# Each job is the real CLI (`vaeflow stage ...`, what dvc.yaml calls) in its own directory, so each holds its
# own project lock. Small models on a big GPU are launch-bound: several processes keep it busy, through
# CUDA MPS when the driver offers it. Seeds 0,1,2 change the split, the VAE and the adaptation run alike.
#
# usage: bench/gpu_runs.sh DATA_ROOT OUT_DIR [BUDGET_SECONDS=480]
#   env: DEVICE (cuda), PYTHON (.venv/bin/python), SEEDS ("0 1 2"), EXTRA (more --set overrides, for a CPU smoke run)
# It writes OUT_DIR/runs/<job>/{log.txt,metrics/,plots/} and OUT_DIR/summary.json (bench/gpu_summary.py).
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
data=$(cd "$1" && pwd) || exit 2
out=$(mkdir -p "$2" && cd "$2" && pwd)
budget=${3:-480}
py=${PYTHON:-$root/.venv/bin/python}  # the project's venv (`make install`), as cpu_runs.sh
seeds=${SEEDS:-0 1 2}
export PYTHONPATH=$root${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
start=$(date +%s); deadline=$((start + budget))
note() { echo "[$(( $(date +%s) - start ))s] $*" | tee -a "$out/driver.log"; }

note "code $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'), budget ${budget}s, data $data"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
  | tee -a "$out/driver.log"
$py -c "import torch, pydantic, typer, sklearn; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" \
  2>&1 | tee -a "$out/driver.log"
# No CUDA device where one is asked for: stop now, not after a smoke run (the stages would refuse anyway).
if [ "${DEVICE:-cuda}" = cuda ] && ! $py -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
  note "DEVICE=cuda but torch sees no CUDA device (or $py cannot import torch): run on a GPU machine, or set DEVICE=cpu"
  exit 2
fi

if [ "${DEVICE:-cuda}" = cuda ] && command -v nvidia-cuda-mps-control >/dev/null; then
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps_pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps_log
  mkdir -p $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY
  if nvidia-cuda-mps-control -d && timeout 60 $py -c "import torch; assert torch.ones(1, device='cuda').sum().item() == 1"
  then note "CUDA MPS on"
  else echo quit | nvidia-cuda-mps-control 2>/dev/null; unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
       note "CUDA MPS unavailable: processes time-share the GPU"
  fi
fi

# A first stage on tiny digits: a broken install fails here in seconds, not after the budget.
smoke=$(mktemp -d); trap 'rm -rf "$smoke"' EXIT
if ! (cd "$smoke" && timeout 120 $py -m flows.cli stage prepare --params "$root/params.yaml" --set data.subset=100 >smoke.log 2>&1 \
      && timeout 120 $py -m flows.cli stage pretrain --params "$root/params.yaml" --set device=${DEVICE:-cuda} --set pretrain.epochs=1 \
         --set data.subset=100 >>smoke.log 2>&1) then
  note "smoke run failed:"; cat "$smoke/smoke.log"; exit 1
fi
note "smoke run ok"

job() {  # job NAME PRESET DEVICE "STAGES" overrides...
  local name=$1 preset=$2 dev=$3 stages=$4; shift 4
  local dir=$out/runs/$name
  mkdir -p "$dir" && cd "$dir" || return
  local sets=(--set device=$dev --set threads=1 --set "data.root=$data")
  for o in "$@" ${EXTRA:-}; do sets+=(--set "$o"); done
  for s in $stages; do
    local left=$((deadline - $(date +%s)))
    if [ $left -lt 10 ]; then note "$name: $s not started (budget spent)"; return; fi
    local t0=$(date +%s)
    timeout -s KILL $left $py -m flows.cli stage $s --params "$root/configs/$preset.yaml" "${sets[@]}" >>log.txt 2>&1
    local rc=$?
    echo "stage $s rc=$rc seconds=$(( $(date +%s) - t0 ))" >>log.txt
    note "$name: $s rc=$rc in $(( $(date +%s) - t0 ))s"
    [ $rc -eq 0 ] || return
  done
}

dev=${DEVICE:-cuda}
# prepare (~20 s) + IWAE k=5000 on 10,000 images and the figures after training: keep ~150 s for them.
train_min=$(awk -v b=$((deadline - $(date +%s))) 'BEGIN { m = (b - 150) / 60; printf "%.2f", (m < 0.5 ? 0.5 : m) }')
note "mnist_binary trains for at most $train_min min"
job binary mnist_binary $dev "prepare pretrain" "pretrain.max_minutes=$train_min" &
job binary_mixture mnist_binary cpu "prepare gmm" threads=4 &
for s in $seeds; do
  job mnist_usps_$s mnist_usps $dev "prepare pretrain adapt" seed=$s adapt.repeats=1 &
  job usps_mnist_$s usps_mnist $dev "prepare pretrain adapt" seed=$s adapt.repeats=1 &
  job mnist_100labels_$s mnist_100labels $dev "prepare pretrain adapt" seed=$s adapt.repeats=1 &
done
wait
note "all jobs ended"
[ -n "${CUDA_MPS_PIPE_DIRECTORY:-}" ] && echo quit | nvidia-cuda-mps-control
$py "$root/bench/gpu_summary.py" "$out" | tee "$out/summary.txt"
