#!/usr/bin/env bash
# Model-check the inbox's sleep/wake handshake (tests/model/wakeup.pml) with spin: the protocol
# as implemented must lose no wake-up in any interleaving, and the same model without the
# asymmetric fence (-DNO_FENCE) or without the loop's re-check after setting its flag
# (-DNO_RECHECK) must report a violation, which shows the model can see the bug it rules out.
# Needs spin (Debian package `spin`) and a C compiler. Runs in a few seconds.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
command -v spin >/dev/null || { echo "tests/model/check.sh: spin is not installed (apt-get install spin)"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$here/wakeup.pml" "$work/"
cd "$work"

failed=0
# verify EXPECT [spin -D flags]: EXPECT is "holds" or "violated"
verify() {
    local expect=$1 defs=${2:-} out errors
    rm -f pan pan.* ./*.trail
    spin $defs -a wakeup.pml >/dev/null
    cc -O2 -w -DSAFETY -o pan pan.c
    out=$(./pan -m1000000 2>&1)
    if grep -q "max search depth too small" <<<"$out"; then
        echo "FAIL: wakeup.pml ${defs:-(as implemented)}: search depth too small, the check is incomplete"
        failed=1
        return
    fi
    errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' <<<"$out")
    if [ "$expect" = holds ] && [ "$errors" = 0 ]; then
        echo "ok: wakeup.pml ${defs:-(as implemented)}: no interleaving loses a wake-up"
    elif [ "$expect" = violated ] && [ -n "$errors" ] && [ "$errors" != 0 ]; then
        echo "ok: wakeup.pml $defs: a lost wake-up is found, as it must be"
    else
        echo "FAIL: wakeup.pml ${defs:-(as implemented)}: expected the property to be $expect, spin says:"
        echo "$out"
        [ -f wakeup.pml.trail ] && spin -t -p $defs wakeup.pml | tail -n 40
        failed=1
    fi
}

verify holds
verify violated -DNO_FENCE
verify violated -DNO_RECHECK
exit "$failed"
