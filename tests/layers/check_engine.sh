#!/usr/bin/env bash
# Layers: the engine (core/engine) includes no header of a layer above it -- observability
# (core/observe), I/O (core/io), the toolkit (core/toolkit) or the shards layer (shards/) -- and
# nothing in core/ includes a shards header. Those layers reach the engine through hooks it
# defines (coil__loop_hooks, wait_ops' awaits, sources, closers), never the other way round.
#
# Every #include "..." is resolved the way the compiler would (next to the file, then core/,
# shards/ and include/, the build's search path), so "../io/x.h" or a bare "shards.h" is caught
# as well as "io/x.h". Usage: bash tests/layers/check_engine.sh [repository root]
set -euo pipefail
root=$(cd "${1:-$(dirname "$0")/../..}" && pwd)
cd "$root"
if [ ! -d core/engine ] || [ ! -d shards ]; then
    echo "check_engine: $root is not a coil tree" >&2
    exit 2
fi

# The file a quoted include names, as a path relative to the root; a name found nowhere is read
# as relative to core/, the way the tree spells its includes.
resolve() {
    local from=$1 name=$2 dir
    for dir in "$(dirname "$from")" core shards include; do
        if [ -f "$dir/$name" ]; then
            realpath --relative-to="$root" "$dir/$name"
            return
        fi
    done
    realpath -m --relative-to="$root" "core/$name"
}

bad=0
# $1: the files to check; $2: an extended regex of the paths they must not include; $3: the rule.
check() {
    local files=$1 forbidden=$2 rule=$3 f line name target
    while IFS= read -r f; do
        while IFS= read -r line; do
            name=$(sed -E 's/^[0-9]+:[[:space:]]*#[[:space:]]*include[[:space:]]*"([^"]+)".*/\1/' <<<"${line}")
            target=$(resolve "$f" "$name")
            if grep -qE "$forbidden" <<<"$target"; then
                echo "$f:${line%%:*}: includes $target ($rule)"
                bad=1
            fi
        done < <(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" || true)
    done < <(find "$files" -type f \( -name '*.c' -o -name '*.h' -o -name '*.S' \) | sort)
}

check core/engine '^(core/(observe|io|toolkit)/|shards/)' "the engine includes no observe/, io/, toolkit/ or shards header"
check core '^shards/' "core/ includes nothing from shards/"

if [ "$bad" -ne 0 ]; then
    echo "check_engine: the engine must reach the layers above it through hooks, not headers" >&2
    exit 1
fi
echo "check_engine: ok"
