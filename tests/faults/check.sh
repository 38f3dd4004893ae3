#!/usr/bin/env bash
# Can the wake-up tests catch the bug they are named after? Builds coil with fault injection
# (-DCOIL_FAULTS=ON, see core/engine/faults.h), then:
#   1. runs the wake-up, threadsafe, lane and ring-error suites with no fault: they must pass;
#   2. runs the wake-up, threadsafe and lane suites with every cross-thread wake-up dropped, and
#      the two lost-wake-up tests with every one and with one in a thousand dropped: each run must
#      FAIL, and by a test's own bounded wait (a failed check or the tests' watchdog), not by
#      hanging until this script's timeout kills it.
# Test deadlines are shortened (COIL_TEST_TIME_SCALE) so the failing runs end within seconds.
# Usage: bash tests/faults/check.sh [build dir, default build-faults]
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:-build-faults}
limit=180 # seconds; a run still going then is a hang, which this check rejects

cmake -S . -B "$dir" -G Ninja -DCOIL_FAULTS=ON -DCOIL_BUILD_TESTS=ON -DCOIL_BUILD_TOOLS=OFF >/dev/null
ninja -C "$dir" -j "$(nproc)" test_wakeup test_threadsafe test_lane test_ring_errors >/dev/null

log=$(mktemp)
trap 'rm -f "$log"' EXIT
failed=0

# run EXPECT FAULT SUITE [gtest filter [extra gtest flags...]]
run() {
    local expect=$1 fault=$2 suite=$3 filter=${4:-*} rc=0 t0 took
    shift $(($# < 4 ? $# : 4))
    t0=$(date +%s)
    COIL_FAULT=$fault COIL_TEST_TIME_SCALE=$([ "$expect" = fail ] && echo 0.1 || echo 1) \
        timeout -k 5 "$limit" "$dir/$suite" --gtest_filter="$filter" "$@" >"$log" 2>&1 || rc=$?
    took=$(($(date +%s) - t0))
    local what="$suite [$filter] with COIL_FAULT='$fault'"
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        echo "FAIL: $what hung (killed after ${limit} s): its waits are not bounded"
        tail -n 20 "$log"
        failed=1
    elif [ "$expect" = pass ] && [ "$rc" -ne 0 ]; then
        echo "FAIL: $what failed (exit $rc) without any fault injected"
        tail -n 30 "$log"
        failed=1
    elif [ "$expect" = fail ] && [ "$rc" -eq 0 ]; then
        echo "FAIL: $what passed although wake-ups were dropped: it cannot see a lost wake-up"
        failed=1
    else
        echo "ok: $what: ${expect}ed as required (exit $rc, ${took} s)"
    fi
}

for suite in test_wakeup test_threadsafe test_lane test_ring_errors; do
    run pass "" "$suite"
done
for suite in test_wakeup test_threadsafe test_lane; do
    run fail "drop_wakeup:%1" "$suite"
done
# With one wake-up in a thousand dropped, a run loses one only if the loop slept often enough for a
# drop to land where the re-check cannot cover it; a few repetitions make that certain in practice
# (the first lost wake-up ends the process through the watchdog, so a failing run stays short).
for fault in "drop_wakeup:%1" "drop_wakeup:%1000"; do
    run fail "$fault" test_wakeup "Wakeup.AsymmetricFenceLosesNoWakeupUnderBurstsFromFourThreads" --gtest_repeat=5
    run fail "$fault" test_wakeup "Wakeup.NoWakeupIsLostInAPingPong" --gtest_repeat=5
done
exit "$failed"
