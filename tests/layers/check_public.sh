#!/usr/bin/env bash
# The public surface of coil, checked on a built tree (build/, or the directory given):
#  (a) libcoil.so exports the public API only: coil_* names, nothing internal (coil__*);
#  (b) tools/loopstat reads the counters through the public layout alone: its sources reach no
#      header of the tree but include/coil/ (system headers aside), and the binary links no coil
#      code (no coil library on its link line, no coil symbol but the public header's inline
#      helpers);
#  (c) every function declared in include/coil/*.h carries COIL_API, and the library exports
#      exactly the functions so declared.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
build=${1:-build}
so=$build/libcoil.so
loopstat=$build/loopstat
failed=0
fail() { echo "check_public: $*" >&2; failed=1; }
[ -f "$so" ] || { echo "check_public: $so not built" >&2; exit 1; }
[ -x "$loopstat" ] || { echo "check_public: $loopstat not built" >&2; exit 1; }

# (a) the export list
exports=$(nm -D --defined-only "$so" | awk 'NF == 3 {print $3}' | sort -u)
internal=$(grep -vE '^coil_[^_]' <<<"$exports" || true)
[ -z "$internal" ] || fail "libcoil.so exports names outside the public API:"$'\n'"$internal"

# (b) loopstat: what its sources include, what it links
for src in tools/loopstat/*.c; do
    # Every header the preprocessor opens, with the include path the build gives it.
    deps=$(gcc -std=c11 -D_GNU_SOURCE -I include -M "$src" | sed -e 's/^[^:]*://' -e 's/\\$//' | tr -s ' ' '\n' |
        grep -v '^$' | while read -r f; do realpath -m "$f"; done)
    inside=$(grep "^$root/" <<<"$deps" | grep -vE "^$root/(include/coil/[^/]+\.h|tools/loopstat/[^/]+\.c)$" || true)
    [ -z "$inside" ] || fail "$src includes headers of the tree outside include/coil/:"$'\n'"$inside"
done
quoted=$(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' tools/loopstat/*.c || true)
[ -z "$quoted" ] || fail "tools/loopstat includes by quoted path (use <coil/...> or system headers):"$'\n'"$quoted"
if [ -f "$build/build.ninja" ]; then
    link=$(ninja -C "$build" -t commands loopstat | tail -n 1)
    if grep -qE 'libcoil|coil_objects' <<<"$link"; then fail "loopstat links a coil library: $link"; fi
fi
# Global, weak or undefined coil symbols would be runtime code (or a need for it); the public
# header's static inline helpers stay local (t).
linked=$(nm "$loopstat" | awk '$NF ~ /^coil_/ && $(NF-1) !~ /^[tr]$/ {print}' || true)
[ -z "$linked" ] || fail "loopstat has coil symbols linked in:"$'\n'"$linked"
if readelf -d "$loopstat" | grep -q 'NEEDED.*libcoil'; then fail "loopstat needs libcoil.so at run time"; fi

# (c) COIL_API on every public function. A declaration starts at column 0 and names coil_*( on
# that line; typedefs, macros and static inline definitions are not exported functions.
decls=$(grep -nE '^([A-Za-z_][^;{}()]*)?\bcoil_[A-Za-z0-9_]* *\(' include/coil/*.h |
    grep -vE '^[^:]+:[0-9]+:(typedef|static|#|extern)\b' || true)
unmarked=$(grep -vE '^[^:]+:[0-9]+:COIL_API ' <<<"$decls" || true)
[ -z "$unmarked" ] || fail "public functions declared without COIL_API:"$'\n'"$unmarked"
declared=$(sed -E 's/^[^:]+:[0-9]+:[^(]*\b(coil_[A-Za-z0-9_]*) *\(.*/\1/' <<<"$decls" | sort -u)
missing=$(comm -23 <(echo "$declared") <(echo "$exports"))
[ -z "$missing" ] || fail "declared in include/coil/ but not exported by libcoil.so:"$'\n'"$missing"
extra=$(comm -13 <(echo "$declared") <(echo "$exports"))
[ -z "$extra" ] || fail "exported by libcoil.so but declared in no public header:"$'\n'"$extra"

[ "$failed" = 0 ] || exit 1
echo "check_public: libcoil.so exports $(wc -l <<<"$exports") public functions, each declared with COIL_API; loopstat uses the public layout only"
