#!/usr/bin/env bash
# Install coil into a scratch prefix and build a consumer both ways users will: CMake's
# find_package(coil) (shared and static, C and C++) and pkg-config. Needs a built tree in
# build/ (tools/run.sh test makes it).
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install build --prefix "$tmp/prefix" >/dev/null
cmake -S tests/install -B "$tmp/consumer" -G Ninja -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
ninja -C "$tmp/consumer" >/dev/null
LD_LIBRARY_PATH="$tmp/prefix/lib" "$tmp/consumer/app"
"$tmp/consumer/appcxx"
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
# shellcheck disable=SC2046
gcc tests/install/main.c $(pkg-config --cflags --libs coil) -o "$tmp/pc"
LD_LIBRARY_PATH="$tmp/prefix/lib" "$tmp/pc"
echo "install check: find_package(coil) and pkg-config consumers built and ran"
