#!/usr/bin/env bash
# Layering rule (issue 13): only the io_uring backend (core/backend/uring/) includes liburing.h or
# names io_uring things; everything else in core/, shards/, include/ and tools/ reaches the kernel
# through core/backend/backend.h. Fails, listing each offending line, if any C/C++ source or
# header outside core/backend/uring/ includes liburing.h or uses an io_uring_*, IORING_* or
# IOSQE_* name (or struct io_uring), with the offending code shown. Comments and string literals do not count: prose may say
# "io_uring". tests/ is not checked (tests/backend/ exercises the ring itself).
# Usage: bash tests/layers/check_backend.sh [source root, default: this repository]
set -euo pipefail
root=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$root"

bad=0
while IFS= read -r -d '' f; do
    case "$f" in core/backend/uring/*) continue ;; esac
    # Comments out (gcc keeps the lines otherwise as they are), then string literals.
    hits=$(gcc -fpreprocessed -dD -E -P -x c "$f" 2>/dev/null |
        sed -E 's/"([^"\\]|\\.)*"/""/g' |
        grep -E '#[[:space:]]*include[[:space:]]*[<"]liburing|\bio_uring_[A-Za-z0-9_]+|\bIORING_[A-Za-z0-9_]+|\bIOSQE_[A-Za-z0-9_]+|\bstruct[[:space:]]+io_uring\b' || true)
    if [ -n "$hits" ]; then
        echo "$f: uses io_uring outside core/backend/uring/ (go through core/backend/backend.h):"
        echo "$hits" | sed 's/^/    /'
        bad=1
    fi
done < <(find core shards include tools -type f \( -name '*.c' -o -name '*.h' -o -name '*.cc' -o -name '*.cpp' -o -name '*.S' \) -print0 2>/dev/null | sort -z)

if [ "$bad" -ne 0 ]; then
    echo "FAIL: the driver interface is bypassed (see above)"
    exit 1
fi
echo "ok: only core/backend/uring/ uses io_uring"
