#!/bin/bash
# Build the live load test (tests/integration/test_load_live.c) with the
# release flags and without sanitizers into $BUILD/bench/load_live, for
# the benchmarks that drive it. Needs `make` (the release library) first.
#   bench/build_load_live.sh
set -eu
cd "$(dirname "$0")/.."

build=${BUILD:-build}
for p in backend gateway train; do
    if [ ! -x "$build/bin/$p" ]; then
        echo "bench/build_load_live.sh: $build/bin/$p is missing; run make" >&2
        exit 1
    fi
done
mkdir -p "$build/bench"
# shellcheck disable=SC2046
gcc -std=c11 -O2 -g -D_GNU_SOURCE -Icommon -Ikernels -Ibackend \
    -I"$build/gen" -Itests/support \
    $(pkg-config --cflags libcjson libsodium sqlite3) \
    tests/integration/test_load_live.c tests/support/*.c \
    "$build/rel/libtrainyard.a" \
    $(pkg-config --libs libwebsockets sqlite3 libcjson libsodium yaml-0.1 \
      libjpeg spng libzip openblas zlib libssl libcrypto) \
    -lcivetweb -lhpdf -ldnnl -lm -lpthread -fopenmp -lcmocka \
    -o "$build/bench/load_live"
