#!/usr/bin/env bash
# ../shared/gpu/CHECKLIST.md in one go, for the one short chance on a lent GPU: install from .whl/, the GPU-only
# tests, an 80-epoch ResNet-18 on real-size synthetic data (per-epoch time, peak memory, nvidia-smi utilisation),
# the bench on cuda, a 4-run sweep with --runs_per_gpu 2, and the sync-debug check. Each step has its own time
# limit, all of them within GPU_CHECK_BUDGET seconds (default 480); every figure goes to a file under $OUT (default:
# a new temporary folder), with steps.tsv (step, exit status, seconds; 124 = stopped by its limit).
# Without CUDA it runs a dry mode (tiny sizes, CPU; CUDA-only steps skipped with a line saying so) in under a
# minute, so that the script is debugged before a GPU is lent (tests/test_bench.py runs it).
#   bash bench/gpu_check.sh                       # from anywhere; runs from the repository root
#   OUT=/tmp/gpu GPU_CHECK_BUDGET=420 bash bench/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
OUT=${OUT:-$(mktemp -d -t audiosweep-gpu-check-XXXXXX)}
mkdir -p "$OUT"
BUDGET=${GPU_CHECK_BUDGET:-480}
START=$SECONDS
WORK=$(mktemp -d -t audiosweep-gpu-work-XXXXXX)
SAMPLER=
cleanup() {
  [[ -n $SAMPLER ]] && kill "$SAMPLER" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

say() { echo "[gpu_check $((SECONDS - START))s] $*" | tee -a "$OUT/log.txt"; }

# step NAME LIMIT CMD...: CMD under `timeout` (its limit, cut to what the budget has left), output into
# $OUT/NAME.log, one line into steps.tsv. Skipped when under 10 s of the budget are left.
step() {
  local name=$1 limit=$2 left t0 rc
  shift 2
  left=$((BUDGET - (SECONDS - START)))
  if ((left < 10)); then
    say "SKIP $name: the ${BUDGET} s budget is spent"
    printf '%s\tskipped\t0\n' "$name" >>"$OUT/steps.tsv"
    return 0
  fi
  ((limit > left)) && limit=$left
  say "$name (limit ${limit} s): $*"
  t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1
  rc=$?
  printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - t0))" >>"$OUT/steps.tsv"
  say "$name: exit $rc after $((SECONDS - t0)) s$( ((rc == 124)) && echo ' (stopped by its time limit)')"
  tail -n 3 "$OUT/$name.log" | sed 's/^/    /'
  return 0
}

skip() { # skip NAME WHY
  say "SKIP $1: $2"
  printf '%s\tskipped\t0\n' "$1" >>"$OUT/steps.tsv"
}

# sample NAME: nvidia-smi utilisation and memory every second into $OUT/NAME.csv, until unsample
sample() {
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -l 1 >"$OUT/$1.csv" 2>/dev/null &
  SAMPLER=$!
}
unsample() {
  [[ -n $SAMPLER ]] && kill "$SAMPLER" 2>/dev/null && wait "$SAMPLER" 2>/dev/null
  SAMPLER=
  python3 bench/gpu_check.py gpu-log "$OUT/$1.csv" "$OUT" >>"$OUT/log.txt" 2>&1
}

if python3 -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  DRY=0
else
  DRY=1
fi
export WANDB_MODE=disabled PYTHONUNBUFFERED=1
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "host: $(hostname)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "mode: $( ((DRY)) && echo 'dry (no CUDA: tiny sizes on the CPU)' || echo gpu)"
  echo "load_average: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)"
  echo "cpus: $(nproc)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /'
} >"$OUT/machine.txt"
printf 'step\texit\tseconds\n' >"$OUT/steps.tsv"
say "figures under $OUT; $(grep '^mode' "$OUT/machine.txt")"

# 0. Install the wheels .whl/ holds (../shared/gpu/wheels.sh), as CHECKLIST.md says. Only on the GPU machine: its
# Python 3.12 wheels would shadow this machine's packages.
if ((DRY)); then
  skip install "dry mode: the CHECKLIST's pip line is for the GPU machine's Python 3.12"
  export PYTHONPATH=$PWD
elif compgen -G ".whl/*.whl" >/dev/null; then
  step install 60 python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  skip install "no .whl/ here (bash ../shared/gpu/wheels.sh makes it); the installed packages are used"
  export PYTHONPATH=$PWD
fi
python3 -c 'import fastai, soundfile, torch, torchaudio, wandb, audiosweep' >"$OUT/imports.log" 2>&1 ||
  say "WARNING: an import fails (see imports.log): add its wheel to ../shared/gpu/wheels.sh"

# Synthetic data, real size on the GPU machine: written in the background while the tests run.
DATA=$WORK/ESC-50
if ((DRY)); then
  python3 bench/gpu_check.py data "$DATA" --dry >"$OUT/data.log" 2>&1 &
else
  python3 bench/gpu_check.py data "$DATA" >"$OUT/data.log" 2>&1 &
fi
DATA_PID=$!

# 1. The GPU-only tests (a CPU would only skip them: listed in dry mode, not run).
mapfile -t GPU_TESTS < <(python3 bench/gpu_check.py gpu-tests)
printf '%s\n' "${GPU_TESTS[@]}" >"$OUT/gpu_tests.txt"
if ((${#GPU_TESTS[@]} == 0)); then
  skip gpu_tests "no test names CUDA"
elif ((DRY)); then
  skip gpu_tests "dry mode: the ${#GPU_TESTS[@]} tests in gpu_tests.txt need CUDA"
else
  step gpu_tests 60 python3 -m pytest -q -p no:cacheprovider "${GPU_TESTS[@]}"
fi
wait "$DATA_PID"
say "data: $(tail -n 1 "$OUT/data.log")"

# 2. ResNet-18 at the report's best settings (config defaults), 80 epochs, on 1600/400 real-size clips.
if ((DRY)); then
  TRAIN_ARGS=(--arch simple_cnn --sample_rate 16000 --n_fft 512 --win_length 400 --hop_length 160 --n_mels 32
    --batch_size 8 --n_epochs 1 --allow_missing true --esc10 true)
else
  TRAIN_ARGS=(--arch resnet18 --n_epochs 80)
fi
((DRY)) || sample train_gpu
step train 190 python3 bench/gpu_check.py train "$OUT" -- --pretrained false \
  --data_dir "$DATA" --cache_dir "$WORK/cache" --results_dir "$WORK/train" --wandb_mode disabled "${TRAIN_ARGS[@]}"
((DRY)) || unsample train_gpu
python3 bench/gpu_check.py epochs "$WORK/train" "$OUT" >>"$OUT/log.txt" 2>&1

# 3. The bench on cuda (one rate, ResNet-18 only: the budget).
if ((DRY)); then
  BENCH_ARGS=(--device cpu --n_clips 24 --baseline_clips 6 --aug_baseline_clips 4 --aug_train_clips 8 --epochs 80
    --archs simple_cnn --train_bs 2 --train_batches 1 --sample_rate 16000 --n_fft 512 --win_length 400
    --hop_length 160 --n_mels 32 --batch_size 8 --skip_augmented)
else
  BENCH_ARGS=(--device cuda --archs resnet18 --baseline_clips 200)
fi
step bench 100 python3 bench/pipeline.py --data_dir "$DATA" --rates "$( ((DRY)) && echo 16000 || echo 44100)" \
  "${BENCH_ARGS[@]}"
cp "$OUT/bench.log" "$OUT/bench.txt"

# 4. A 4-run sweep through the runner, two runs at a time on the GPU.
SWEEP=$WORK/gpu_check_sweep.yaml
{
  echo "# bench/gpu_check.sh: 4 short ResNet-18 runs, to time the runner with several runs per GPU."
  echo "name: gpu_check"
  echo "program: train.py"
  echo "method: grid"
  echo "metric: {name: accuracy, goal: maximize}"
  echo "parameters:"
  echo "  trial_num: {values: [1, 2, 3, 4]}"
  echo "  data_dir: {value: $DATA}"
  echo "  cache_dir: {value: $WORK/cache}"
  echo "  pretrained: {value: false}"
  echo "  allow_missing: {value: true}"
  echo "  esc10: {value: true}"
  if ((DRY)); then
    echo "  arch: {value: simple_cnn}"
    echo "  n_epochs: {value: 1}"
    for kv in "sample_rate 16000" "n_fft 512" "win_length 400" "hop_length 160" "n_mels 32" "batch_size 8"; do
      echo "  ${kv% *}: {value: ${kv#* }}"
    done
  else
    echo "  arch: {value: resnet18}"
    echo "  n_epochs: {value: 3}"
  fi
} >"$SWEEP"
cp "$SWEEP" "$OUT/sweep.yaml"
if ((DRY)); then
  RUNNER=(--workers 2)
else
  RUNNER=(--gpus 1 --runs_per_gpu 2)
  sample sweep_gpu
fi
T0=$SECONDS
step sweep 90 python3 -m audiosweep.sweep run "$SWEEP" "${RUNNER[@]}" --results_dir "$WORK/sweeps" \
  --wandb_mode disabled
((DRY)) || unsample sweep_gpu
python3 bench/gpu_check.py sweep "$WORK/sweeps" "$((SECONDS - T0))" "$OUT" >>"$OUT/log.txt" 2>&1

# 5. Host syncs in the training loop (issue 26, item 4).
if ((DRY)); then
  step sync_debug 30 python3 bench/gpu_check.py sync "$OUT" --dry
  say "sync_debug: no CUDA, so torch.cuda.set_sync_debug_mode cannot run: batches ran on the CPU, nothing counted"
else
  step sync_debug 40 python3 bench/gpu_check.py sync "$OUT"
fi

say "done in $((SECONDS - START)) s; figures:"
for f in machine.txt steps.tsv train_memory.txt train_epochs.txt train_gpu_summary.txt sweep.txt \
  sweep_gpu_summary.txt sync_debug.txt; do
  [[ -f $OUT/$f ]] && { echo "== $f"; cat "$OUT/$f"; } | tee -a "$OUT/summary.txt"
done
grep -E '^(ratio|augmented ratio|machine):' "$OUT/bench.txt" | tee -a "$OUT/summary.txt"
echo "$OUT"
