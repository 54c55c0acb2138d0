#!/bin/bash
# Live-progress latency: the time from the trainer writing an event (its
# time_ms) to a viewer receiving it, as median and 99th percentile, with
# 1, 100 and 1,000 viewers of one training (EPOCHS epochs of the tiny
# data set, about 4 events an epoch). A viewer receives an event when the
# kernel delivers it to the viewer's socket. The second line adds the
# wait until the test's one thread reads it. It runs the live load test
# built without sanitizers (bench/build_load_live.sh) against the release
# programs, so that neither side pays for AddressSanitizer. Needs `make`
# first.
#   bench/live_latency.sh [VIEWERS...]      (default: 1 100 1000)
#   EPOCHS=N (default 20), RUNS=N runs of each count (default 1)
set -eu
cd "$(dirname "$0")/.."

build=${BUILD:-build}
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(1 100 1000)
bench/build_load_live.sh

echo "bench: live latency, $(nproc) cores: $(lscpu | sed -n 's/^Model name: *//p')"
for n in "${counts[@]}"; do
    for _ in $(seq "${RUNS:-1}"); do
        TRAINYARD_BIN=$build/bin LOAD_LIVE_VIEWERS=$n LOAD_LIVE_STALLED=0 \
            LOAD_LIVE_EPOCHS=${EPOCHS:-20} "$build/bench/load_live" 2>&1 |
            grep -A3 '^live load: [0-9]* readers' || {
            echo "bench/live_latency.sh: the run with $n viewers failed" >&2
            exit 1
        }
    done
done
