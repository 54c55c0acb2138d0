#!/bin/bash
# Live-progress latency: the time from the trainer writing an event (its
# time_ms) to a viewer receiving it, as median and 99th percentile, with
# 1, 100 and 1,000 viewers of one training. It builds the live load test
# (tests/integration/test_load_live.c) without sanitizers and runs it
# against the release programs, so that neither side pays for
# AddressSanitizer. Needs `make` (the release programs) first.
#   bench/live_latency.sh [VIEWERS...]      (default: 1 100 1000)
set -eu
cd "$(dirname "$0")/.."

build=${BUILD:-build}
out=$build/bench/load_live
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(1 100 1000)

for p in backend gateway train; do
    if [ ! -x "$build/bin/$p" ]; then
        echo "bench/live_latency.sh: $build/bin/$p is missing; run make" >&2
        exit 1
    fi
done
mkdir -p "$build/bench"
# The same flags as the release programs, plus the test support code.
# shellcheck disable=SC2046
gcc -std=c11 -O2 -g -D_GNU_SOURCE -Icommon -Ikernels -Ibackend \
    -I"$build/gen" -Itests/support \
    $(pkg-config --cflags libcjson libsodium sqlite3) \
    tests/integration/test_load_live.c tests/support/*.c \
    "$build/rel/libtrainyard.a" \
    $(pkg-config --libs libwebsockets sqlite3 libcjson libsodium yaml-0.1 \
      libjpeg spng libzip openblas zlib) \
    -lcivetweb -lhpdf -ldnnl -lm -lpthread -fopenmp -lcmocka -o "$out"

echo "bench: live latency, $(nproc) cores: $(lscpu | sed -n 's/^Model name: *//p')"
for n in "${counts[@]}"; do
    TRAINYARD_BIN=$build/bin LOAD_LIVE_VIEWERS=$n LOAD_LIVE_STALLED=0 \
        "$out" 2>&1 | grep -A1 '^live load: [0-9]* readers' || {
        echo "bench/live_latency.sh: the run with $n viewers failed" >&2
        exit 1
    }
done
