#!/bin/bash
# Build and check the CUDA code on a machine with an NVIDIA GPU, then time
# training on the GPU against PyTorch, in one command that stops within
# 8 minutes (TOTAL_TIMEOUT, below):
#
#   bench/gpu.sh
#
# 1. `make cuda` and the programs (build/bin/train links the CUDA kernels
#    when nvcc exists).
# 2. The CUDA tests: every CUDA kernel against its CPU counterpart
#    (test_cuda_kernels), training on the GPU against the CPU plus a
#    real `train device=0` run (test_cuda_train), and the detection loss
#    and decoding with NMS against their CPU versions (test_cuda_det_loss,
#    test_cuda_det_nms). On a GPU machine a skipped test is a failure.
# 3. Training images per second on the GPU, our engine
#    (build/bench/train_cpu with device 0) against PyTorch
#    (bench/train_torch.py --device cuda), with the same network, batch
#    and image size: bench/conv5-cls.yaml at 28x28, batch 64,
#    yolov8n-cls at 224x224, batch 64, and the detector yolov8n (10
#    classes) at 640x640, batch 16, with the YOLOv8 loss on 4 synthetic
#    boxes per image. Each side trains on one random batch that stays on
#    the GPU, in float32 (TF32 off on both sides), for BENCH_SECONDS after
#    10 warm-up steps (3 for the detector). Prints both figures and the ratio trainyard /
#    pytorch for each network.
#
# Needs the CUDA toolkit with cuDNN 9 (nvcc in /usr/local/cuda/bin or on
# PATH), the packages of `make deps`, an NVIDIA driver, and PyTorch with
# CUDA for $PYTHON (default: python3 or /usr/bin/python3, whichever has
# PyTorch). It downloads nothing. Time limits:
# BUILD_TIMEOUT (default 300 s) for the build, TEST_TIMEOUT (default
# 120 s) per test program, BENCH_SECONDS (default 10) of timing per run,
# and BENCH_TIMEOUT (default 120 s) per benchmark run. Those add up to
# more than 8 minutes, so TOTAL_TIMEOUT (default 470 s) bounds the whole
# script: each step gets its own limit or the time left, whichever is
# less, and the script fails once the time is spent.
# NOTE: this script has not run on a GPU yet. By estimate, the build takes
# 1 to 3 minutes on 16 cores, the four test programs under 2 minutes and
# the six benchmark runs about 20 s each (start-up, warm-up steps and
# BENCH_SECONDS), about 5 minutes in all.
set -euo pipefail

cd "$(dirname "$0")/.."
build_timeout=${BUILD_TIMEOUT:-300}
test_timeout=${TEST_TIMEOUT:-120}
bench_seconds=${BENCH_SECONDS:-10}
bench_timeout=${BENCH_TIMEOUT:-120}
total_timeout=${TOTAL_TIMEOUT:-470}
build=${BUILD:-build}
export BUILD="$build"
# The first of python3 on PATH and Debian's /usr/bin/python3 that has
# PyTorch, unless PYTHON names one.
if [ -z "${PYTHON:-}" ]; then
    for candidate in python3 /usr/bin/python3; do
        if "$candidate" -c 'import torch' >/dev/null 2>&1; then
            PYTHON=$candidate
            break
        fi
    done
fi
python=${PYTHON:-python3}

fail() {
    echo "bench/gpu.sh: $*" >&2
    exit 1
}

# set_limit WHAT SECONDS: set limit to SECONDS or to what is left of
# TOTAL_TIMEOUT, whichever is less; fail when less than 5 s is left.
set_limit() {
    local left=$((total_timeout - SECONDS))
    if [ "$left" -lt 5 ]; then
        fail "TOTAL_TIMEOUT (${total_timeout} s) is spent before $1;" \
             "raise TOTAL_TIMEOUT to run the rest"
    fi
    limit=$2
    if [ "$left" -lt "$limit" ]; then
        limit=$left
    fi
}

if ! nvidia-smi -L >/dev/null 2>&1; then
    fail "nvidia-smi lists no GPU; run this on a machine with an NVIDIA" \
         "GPU and driver"
fi
# Checked before the build, so that a machine without PyTorch fails in
# seconds rather than after the build and the tests.
if ! torch_version=$("$python" -c 'import torch
assert torch.cuda.is_available(), "torch.cuda.is_available() is False"
print(torch.__version__, "CUDA", torch.version.cuda, "cuDNN",
      torch.backends.cudnn.version())' 2>&1); then
    reason=${torch_version##*$'\n'}
    fail "PyTorch with CUDA is needed for the comparison, and $python" \
         "failed: ${reason:-no output}; set PYTHON to an interpreter" \
         "that has it"
fi

echo "== machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
nvcc_bin=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
"$nvcc_bin" --version | tail -n 1
echo "pytorch $torch_version"

set_limit "the build" "$build_timeout"
echo "== make cuda and the programs (limit ${limit} s)"
start=$SECONDS
timeout "$limit" make -j"$(nproc)" BUILD="$build" cuda all \
    || fail "the build failed or ran past ${limit} s"
echo "built in $((SECONDS - start)) s"

log=$(mktemp)
trap 'rm -f "$log"' EXIT

# run_test NAME: run one CUDA test program; fail on a failure or a skip.
run_test() {
    local name=$1 status=0
    set_limit "$name" "$test_timeout"
    echo "== $name (limit ${limit} s)"
    start=$SECONDS
    timeout "$limit" "$build/cuda/tests/$name" 2>&1 | tee "$log" \
        || status=$?
    echo "$name ran in $((SECONDS - start)) s"
    if [ "$status" -ne 0 ]; then
        fail "$name failed (exit $status)"
    fi
    # nvidia-smi lists a GPU, so a skip here is a failure. The usual causes
    # are a driver older than CUDA 13 needs or a GPU older than compute
    # capability 8.0, and the SKIP lines above give the reason.
    if grep -q '^SKIP cuda' "$log"; then
        fail "$name skipped tests on a GPU machine (see the SKIP lines" \
             "above)"
    fi
}
run_test test_cuda_kernels
run_test test_cuda_train
run_test test_cuda_det_loss
run_test test_cuda_det_nms

# bench_pair LABEL MODEL_YAML TORCH_MODEL IMGSZ BATCH [CLASSES]: time both
# sides and print the ratio. CLASSES overrides the YAML's nc (default 0:
# keep it) and must match the PyTorch model's classes.
bench_pair() {
    local label=$1 yaml=$2 torch_model=$3 imgsz=$4 batch=$5 classes=${6:-0}
    local ours theirs
    echo "== $label: ${imgsz}x${imgsz}, batch $batch, ${bench_seconds} s" \
         "each"
    set_limit "$label on our engine" "$bench_timeout"
    ours=$(timeout "$limit" "$build/bench/train_cpu" "$batch" 0 \
           "$bench_seconds" 0 "$yaml" "$imgsz" "$classes") \
        || fail "$label: our benchmark failed"
    echo "$ours"
    set_limit "$label on PyTorch" "$bench_timeout"
    theirs=$(timeout "$limit" "$python" bench/train_torch.py \
             "$batch" "$(nproc)" "$bench_seconds" --device cuda \
             --model "$torch_model" --imgsz "$imgsz") \
        || fail "$label: the PyTorch benchmark failed"
    echo "$theirs"
    awk -v a="${ours##* }" -v b="${theirs##* }" -v l="$label" \
        'BEGIN { if (b > 0) printf "%s ratio trainyard / pytorch: %.2f\n",
                                   l, a / b
                 else printf "%s ratio: none, PyTorch made no step\n", l }'
}

echo "== training throughput on the GPU (float32, TF32 off)"
bench_pair conv5-cls bench/conv5-cls.yaml conv5-cls 28 64
bench_pair yolov8n-cls yolov8n-cls.yaml yolov8n-cls 224 64
bench_pair yolov8n yolov8n.yaml yolov8n 640 16 10
