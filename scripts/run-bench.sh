#!/bin/bash
# Run every benchmark under bench/*.sh and print one table.
# Each bench script prints result lines of the form
#   BENCH <name> <median> <unit> [<baseline-name> <baseline-median> <ratio>] [target <text>]
# and may print anything else (shown on stderr here).
set -u
cd "$(dirname "$0")/.."
top=$(pwd)
BUILD=${BUILD:-build}
export KTSTR_BIN="$top/$BUILD/bin" KTSTR_TOP="$top"
if [ -z "${KTSTR_FIXTURES:-}" ] && [ -f "$top/../shared/fixtures/linux-6.12/bzImage" ]; then
    KTSTR_FIXTURES=$(cd "$top/../shared/fixtures/linux-6.12" && pwd)
fi
export KTSTR_FIXTURES=${KTSTR_FIXTURES:-}
export PATH="$KTSTR_BIN:$top/scripts:$PATH"
rows=()
status=0
for b in bench/*.sh; do
    [ -e "$b" ] || continue
    [ -n "${KTSTR_BENCH_FILTER:-}" ] && ! [[ "$b" =~ $KTSTR_BENCH_FILTER ]] && continue
    echo "== $b" >&2
    out=$(bash "$b" 2> >(sed 's/^/   | /' >&2)) || { echo "   bench $b failed" >&2; status=1; }
    while IFS= read -r line; do
        case "$line" in BENCH\ *) rows+=("${line#BENCH }") ;; *) [ -n "$line" ] && echo "   | $line" >&2 ;; esac
    done <<<"$out"
done
printf '\n%-34s %14s %-6s %-28s %14s %8s  %s\n' benchmark median unit baseline "baseline med" ratio target
for r in "${rows[@]}"; do
    # shellcheck disable=SC2086
    set -- $r
    name=$1 med=$2 unit=$3; shift 3
    base="-" bmed="-" ratio="-" target=""
    if [ $# -ge 3 ] && [ "$1" != target ]; then base=$1 bmed=$2 ratio=$3; shift 3; fi
    [ "${1:-}" = target ] && { shift; target="$*"; }
    printf '%-34s %14s %-6s %-28s %14s %8s  %s\n' "$name" "$med" "$unit" "$base" "$bmed" "$ratio" "$target"
done
exit $status
