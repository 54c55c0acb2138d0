#!/bin/bash
# Control-plane cost per epoch: the backend's time handling one trainer's
# events (parsing, transactions, the epoch charge, checkpoint rows, the
# fan-out to the gateway) as a share of the epoch's training time. The
# backend logs it in a "control plane" line after each epoch event.
# One viewer watches a training of EPOCHS epochs on IMAGES training
# images per class (16x16 pixels, batch 8), with the release programs.
#   bench/control_plane.sh [EPOCHS] [IMAGES]      (default: 5 400)
set -eu
cd "$(dirname "$0")/.."

build=${BUILD:-build}
epochs=${1:-5}
images=${2:-400}
bench/build_load_live.sh

echo "bench: control plane, $epochs epochs of $((images * 3)) images," \
     "$(nproc) cores: $(lscpu | sed -n 's/^Model name: *//p')"
TRAINYARD_BIN=$build/bin LOAD_LIVE_VIEWERS=1 LOAD_LIVE_STALLED=0 \
    LOAD_LIVE_EPOCHS=$epochs LOAD_LIVE_IMAGES=$images \
    "$build/bench/load_live" 2>&1 | grep '^live load: backend control plane' |
    sed 's/^live load: backend //'
