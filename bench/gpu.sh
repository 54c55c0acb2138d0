#!/bin/bash
# Build and check the CUDA code on a machine with an NVIDIA GPU, in under
# 8 minutes: `make cuda`, then the CUDA kernel tests, which compare every
# CUDA kernel with its CPU counterpart. Run from anywhere:
#
#   bench/gpu.sh
#
# Needs the CUDA toolkit with cuDNN 9 (nvcc in /usr/local/cuda/bin or on
# PATH), the packages of `make deps`, and an NVIDIA driver. The machine
# needs no network. Time limits per step: BUILD_TIMEOUT (default 300 s)
# and TEST_TIMEOUT (default 120 s).
set -euo pipefail

cd "$(dirname "$0")/.."
build_timeout=${BUILD_TIMEOUT:-300}
test_timeout=${TEST_TIMEOUT:-120}
build=${BUILD:-build}

if ! nvidia-smi -L >/dev/null 2>&1; then
    echo "bench/gpu.sh: nvidia-smi lists no GPU; run this on a machine" \
         "with an NVIDIA GPU and driver" >&2
    exit 1
fi
echo "== machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
nvcc_bin=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
"$nvcc_bin" --version | tail -n 1

echo "== make cuda (limit ${build_timeout} s)"
start=$SECONDS
timeout "$build_timeout" make -j"$(nproc)" BUILD="$build" cuda
echo "built in $((SECONDS - start)) s"

echo "== CUDA kernel tests (limit ${test_timeout} s)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
start=$SECONDS
status=0
timeout "$test_timeout" "$build/cuda/tests/test_cuda_kernels" 2>&1 \
    | tee "$log" || status=$?
echo "tests ran in $((SECONDS - start)) s"
if [ "$status" -ne 0 ]; then
    echo "bench/gpu.sh: CUDA kernel tests failed (exit $status)" >&2
    exit 1
fi
# nvidia-smi lists a GPU, so a skip here is a failure. The usual causes
# are a driver older than CUDA 13 needs or a GPU older than compute
# capability 8.0, and the SKIP lines above give the reason.
if grep -q '^SKIP cuda' "$log"; then
    echo "bench/gpu.sh: CUDA kernel tests were skipped on a GPU machine" >&2
    exit 1
fi

# ---------------------------------------------------------------------------
# TODO: training throughput against PyTorch. The training program does not
# exist yet. When it does, this step will train the same YOLO model on the
# same images with Trainyard's CUDA backend and with PyTorch (Ultralytics).
# Both run a fixed number of steps after a warm-up, and the step prints
# images per second for each, with the GPU, batch size and image size.
# Until then this script stops after the tests.
# ---------------------------------------------------------------------------
echo "== training throughput: not measured yet (no training program)"
