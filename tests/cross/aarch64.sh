#!/usr/bin/env bash
# The AArch64 context switch, cross-compiled and run under qemu-user: the same ping-pong check
# the x86-64 build runs natively (registers and FP state survive, a fresh context gets its
# arguments). Installs the cross compiler and qemu if missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
need=()
command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
if [ ${#need[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for arch in x86_64 aarch64; do
    if [ $arch = x86_64 ]; then cc=gcc; run=(); else cc=aarch64-linux-gnu-gcc; run=(qemu-aarch64-static); fi
    $cc -O2 -static -Wall -Wextra -Werror -Icore tests/cross/ctx_switch_check.c core/engine/ctx.c core/engine/ctx_$arch.S -o "$out/check-$arch"
    "${run[@]}" "$out/check-$arch"
    echo "ctx switch check ($arch): passed"
done
