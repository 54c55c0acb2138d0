#!/usr/bin/env bash
# Build the libFuzzer targets of tests/fuzz/ with clang, AddressSanitizer
# and UndefinedBehaviorSanitizer, then run each one for FUZZ_SECONDS
# (default 60) on a copy of its seed corpus, and print per target the
# seconds run, the inputs tried and the crashes found.
#
#   scripts/fuzz.sh                 build and run every target
#   scripts/fuzz.sh fuzz_proto ...  build and run only these targets
#
# Environment: FUZZ_SECONDS (per target), FUZZ_JOBS (targets run at once,
# default 1), FUZZ_BUILD_ONLY=1 (build, do not run), CLANG (compiler,
# default clang-14 when installed, else clang), BUILD (default build).
# Output goes to $BUILD/fuzz/: objects, target programs, working corpora
# in corpus/<target>/, logs in logs/<target>.log, and the inputs that
# crashed (crash-, leak-, timeout-, oom-) or ran slowly (slow-unit-) in
# crashes/<target>/, emptied before each run. The exit status is 1 when
# any target crashed.
set -euo pipefail

cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
OUT=$BUILD/fuzz
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_JOBS=${FUZZ_JOBS:-1}
if [[ -z ${CLANG:-} ]]; then
    CLANG=$(command -v clang-14 || command -v clang || true)
fi
if [[ -z $CLANG ]]; then
    echo "fuzz.sh: clang not found; install clang-14 and" \
         "libclang-rt-14-dev (make deps)" >&2
    exit 2
fi

# The same packages, defines and include folders as the Makefile.
PKGS="libwebsockets sqlite3 libcjson libsodium yaml-0.1 libjpeg spng
      libzip openblas zlib libssl libcrypto"
read -r -a PKG_CFLAGS <<<"$(pkg-config --cflags $PKGS)"
read -r -a PKG_LIBS <<<"$(pkg-config --libs $PKGS)"
CPPFLAGS=(-D_GNU_SOURCE -Icommon -Ikernels -Ibackend -I"$OUT/gen")
# No -Werror: clang warns about things gcc does not, and the release
# build with gcc is the one that enforces a clean compile. At -O1 clang
# does not vectorize the `omp simd` loops and warns on each one
# (-Wpass-failed), a warning about the optimizer, not the code.
CFLAGS=(-std=c11 -Wall -Wextra -Wno-pass-failed -g -O1 -fopenmp
        -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined
        -fno-sanitize-recover=undefined "${PKG_CFLAGS[@]}")
LDLIBS=(-Wl,--as-needed "${PKG_LIBS[@]}" -lcivetweb -lhpdf -ldnnl -lm
        -lpthread -fopenmp)

ALL_TARGETS=()
for f in tests/fuzz/fuzz_*.c; do
    ALL_TARGETS+=("$(basename "$f" .c)")
done
if (($# > 0)); then
    TARGETS=("$@")
else
    TARGETS=("${ALL_TARGETS[@]}")
fi

mkdir -p "$OUT/gen" "$OUT/obj" "$OUT/bin" "$OUT/logs"

# The embedded SQL migrations, as the Makefile generates them.
mapfile -t migrations < <(ls schema/db/*.sql | sort)
scripts/embed.sh schema_sql "${migrations[@]}" >"$OUT/gen/schema_sql.c.new"
if cmp -s "$OUT/gen/schema_sql.c.new" "$OUT/gen/schema_sql.c"; then
    rm "$OUT/gen/schema_sql.c.new"
else
    mv "$OUT/gen/schema_sql.c.new" "$OUT/gen/schema_sql.c"
fi

# Library sources: every .c file of the Makefile's LIB_DIRS but main.c.
LIB_SRCS=()
for dir in common kernels/cpu kernels/ref backend/daemon backend/engine \
           gateway; do
    for f in "$dir"/*.c; do
        [[ $(basename "$f") == main.c ]] || LIB_SRCS+=("$f")
    done
done
LIB_SRCS+=("$OUT/gen/schema_sql.c")

# Compile one source into $OUT/obj when the object is missing or older
# than the source or any header it depends on (from clang's -MMD file).
compile() {
    local src=$1 obj=$OUT/obj/${1%.c}.o
    local dep=${obj%.o}.d
    if [[ -f $obj && $obj -nt $src && -f $dep ]]; then
        local stale=0 h
        for h in $(sed -e 's/\\$//' -e 's/^[^:]*://' "$dep"); do
            if [[ $h != *: && -f $h && $h -nt $obj ]]; then
                stale=1
                break
            fi
        done
        ((stale)) || return 0
    fi
    mkdir -p "$(dirname "$obj")"
    echo "  CC-FUZZ $src"
    "$CLANG" "${CPPFLAGS[@]}" "${CFLAGS[@]}" -MMD -MP -c "$src" -o "$obj"
}
export -f compile
export OUT CLANG
export CPPFLAGS_STR="${CPPFLAGS[*]}" CFLAGS_STR="${CFLAGS[*]}"

# Arrays do not pass through xargs, so each worker rebuilds them.
printf '%s\n' "${LIB_SRCS[@]}" |
    xargs -P "$(nproc)" -I{} bash -c \
        'read -r -a CPPFLAGS <<<"$CPPFLAGS_STR"
         read -r -a CFLAGS <<<"$CFLAGS_STR"
         compile "$1"' _ {}

LIB=$OUT/libtrainyard-fuzz.a
objs=()
for src in "${LIB_SRCS[@]}"; do
    objs+=("$OUT/obj/${src%.c}.o")
done
rm -f "$LIB"
ar rcs "$LIB" "${objs[@]}"

# Code that targets share (tests/fuzz/support/), and the WebSocket client
# of the integration tests, in an archive of their own, so that a target
# links only what it uses. They include the gateway's and the tests'
# headers.
SUPPORT_SRCS=(tests/fuzz/support/*.c tests/support/wsclient.c)
SUPPORT_CPPFLAGS=("${CPPFLAGS[@]}" -Igateway -Itests/support)
for src in "${SUPPORT_SRCS[@]}"; do
    CPPFLAGS_STR="${SUPPORT_CPPFLAGS[*]}" bash -c \
        'read -r -a CPPFLAGS <<<"$CPPFLAGS_STR"
         read -r -a CFLAGS <<<"$CFLAGS_STR"
         compile "$1"' _ "$src"
done
SUPPORT_LIB=$OUT/libfuzz-support.a
objs=()
for src in "${SUPPORT_SRCS[@]}"; do
    objs+=("$OUT/obj/${src%.c}.o")
done
rm -f "$SUPPORT_LIB"
ar rcs "$SUPPORT_LIB" "${objs[@]}"

for t in "${TARGETS[@]}"; do
    src=tests/fuzz/$t.c
    if [[ ! -f $src ]]; then
        echo "fuzz.sh: no target $t (expected $src)" >&2
        exit 2
    fi
    echo "  LINK    $OUT/bin/$t"
    # -Igateway: the gateway's headers sit next to its sources. The
    # other two are the headers of the support archive.
    "$CLANG" "${CPPFLAGS[@]}" -Igateway -Itests/fuzz/support \
        -Itests/support "${CFLAGS[@]}" -fsanitize=fuzzer "$src" \
        "$SUPPORT_LIB" "$LIB" "${LDLIBS[@]}" -o "$OUT/bin/$t"
done

if [[ ${FUZZ_BUILD_ONLY:-0} == 1 ]]; then
    exit 0
fi

# Run one target and write its summary line to
# $OUT/logs/<target>.summary.
run_target() {
    local t=$1 seeds=tests/fuzz/corpus/$1 work=$OUT/corpus/$1
    local crashes=$OUT/crashes/$1 log=$OUT/logs/$1.log
    local start end rc=0 execs found slow
    rm -rf "$crashes"
    mkdir -p "$work" "$crashes"
    if [[ -d $seeds ]]; then
        cp -p "$seeds"/* "$work"/ 2>/dev/null || true
    fi
    start=$(date +%s)
    # A crash ends the run early. On a clean stop at -max_total_time,
    # -print_final_stats prints the counters parsed below.
    (cd "$OUT" && TRAINYARD_PWHASH=fast \
        ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        "bin/$t" -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 \
        -timeout=25 -print_final_stats=1 -artifact_prefix="crashes/$t/" \
        "corpus/$t") >"$log" 2>&1 || rc=$?
    end=$(date +%s)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" |
            tail -n 1)
    # libFuzzer names what it saves by kind. Inputs saved as crash-,
    # leak-, timeout- and oom- failed, and slow-unit- inputs only ran long.
    found=$(find "$crashes" -type f ! -name 'slow-unit-*' | wc -l)
    slow=$(find "$crashes" -type f -name 'slow-unit-*' | wc -l)
    printf '%-20s %8s %14s %8s %6s %5s\n' "$t" "$((end - start))" \
        "${execs:-?}" "$found" "$slow" "$rc" >"$OUT/logs/$t.summary"
}
export -f run_target
export FUZZ_SECONDS

printf '%s\n' "${TARGETS[@]}" |
    xargs -P "$FUZZ_JOBS" -I{} bash -c 'run_target "$1"' _ {}

echo
printf '%-20s %8s %14s %8s %6s %5s\n' target seconds inputs-tried \
    crashes slow exit
status=0
for t in "${TARGETS[@]}"; do
    cat "$OUT/logs/$t.summary"
    if [[ -n $(find "$OUT/crashes/$t" -type f ! -name 'slow-unit-*') ]]; then
        status=1
    fi
done
exit $status
