#!/usr/bin/env bash
# The README's two set-up commands, in one place:
#   bash tools/run.sh bench    install what is missing, build (Release), print the per-core benchmark summary
#   bash tools/run.sh test     install what is missing, build, run every test (ctest) on each backend:
#                              io_uring, then epoll (COIL_BACKEND=epoll)
#   bash tools/run.sh sanitize address,undefined|thread [label regex: test_<file> names]
# Safe to run again: installs only what is missing, builds incrementally.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(cmake ninja-build gcc g++ pkg-config liburing-dev libjemalloc-dev libgtest-dev wrk python3)
# The tests also drive the servers with python3's asyncio and wrk, and check loopstat's
# Prometheus output with promtool; CI model-checks the wake-up handshake with spin.
test_packages=(prometheus spin)

install_missing() {
    local missing=()
    for p in "${packages[@]}" "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

jobs=$(nproc)

build() { # build DIR [cmake args...]
    local dir=$1
    shift
    cmake -S . -B "$dir" -G Ninja "$@" >/dev/null
    ninja -C "$dir" -j "$jobs"
}

case "${1:-}" in
bench)
    install_missing
    build build-release -DCMAKE_BUILD_TYPE=Release -DCOIL_BUILD_TESTS=OFF
    ./build-release/coil-bench summary --runs "${COIL_BENCH_RUNS:-5}"
    ;;
test)
    install_missing "${test_packages[@]}"
    build build -DCOIL_BUILD_TESTS=ON
    echo "== every test on the default backend (io_uring where the kernel allows it)"
    env -u COIL_BACKEND ctest --test-dir build --output-on-failure -j "$jobs" --timeout 300
    echo "== every test on the epoll backend"
    COIL_BACKEND=epoll ctest --test-dir build --output-on-failure -j "$jobs" --timeout 300
    ;;
sanitize)
    install_missing "${test_packages[@]}"
    kind=${2:?usage: tools/run.sh sanitize address,undefined|thread [regex]}
    dir="build-${kind//,/-}"
    build "$dir" -DCOIL_SANITIZE="$kind"
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
    if [ -n "${3:-}" ]; then
        ctest --test-dir "$dir" --output-on-failure -j "$jobs" --timeout 300 -L "$3"
    else
        ctest --test-dir "$dir" --output-on-failure -j "$jobs" --timeout 300
    fi
    ;;
*)
    echo "usage: bash tools/run.sh bench|test|sanitize KIND [REGEX]" >&2
    exit 2
    ;;
esac
