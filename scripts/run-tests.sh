#!/bin/bash
# Run test programs, each in its own process with a time limit, and print
# one closing line: "tests: N passed, N failed, N skipped", counting the
# cmocka test cases of every program. A program that crashes, times out
# or exits non-zero without reporting a failed case counts as one failure.
#   scripts/run-tests.sh PROGRAM...
set -u

timeout_s=${TEST_TIMEOUT:-600}
passed=0
failed=0
skipped=0
failed_programs=()

# Sum the counts in every match of pattern (a grep regex with one number).
count() {
    grep -o "$1" "$2" | grep -o '[0-9][0-9]*' | awk '{s += $1} END {print s + 0}'
}

for prog in "$@"; do
    name=$(basename "$prog")
    log=$(mktemp)
    echo "== $name"
    timeout --signal=KILL "$timeout_s" "$prog" 2>&1 | tee "$log"
    status=${PIPESTATUS[0]}

    # cmocka writes its summary to stderr and the per-test lines to
    # stdout, so lines of the two streams can be joined; match anywhere.
    p=$(count '\[  PASSED  \] [0-9]* test(s)\.' "$log")
    f=$(count '\[  FAILED  \] [0-9]* test(s), listed below' "$log")
    s=$(count '\[  SKIPPED \] [0-9]* test(s), listed below' "$log")
    # Programs that are not cmocka ones (the browser test, the UI's JSON
    # test) end with a line "e2e: N passed, N failed" or "json: ...".
    p=$((p + $(sed -n 's/^\(e2e\|json\): \([0-9]*\) passed, [0-9]* failed$/\2/p' \
        "$log" | awk '{s += $1} END {print s + 0}')))
    f=$((f + $(sed -n 's/^\(e2e\|json\): [0-9]* passed, \([0-9]*\) failed$/\2/p' \
        "$log" | awk '{s += $1} END {print s + 0}')))
    rm -f "$log"

    passed=$((passed + p))
    failed=$((failed + f))
    skipped=$((skipped + s))
    if [ "$status" -ne 0 ]; then
        failed_programs+=("$name (exit $status)")
        if [ "$f" -eq 0 ]; then
            failed=$((failed + 1))
        fi
    fi
done

echo
if [ ${#failed_programs[@]} -gt 0 ]; then
    echo "failed programs: ${failed_programs[*]}"
fi
echo "tests: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ ${#failed_programs[@]} -eq 0 ]
