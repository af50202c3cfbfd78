#!/bin/bash
# ktstr gauntlet on the fixture kernel (TCG): three topologies (small, llc, numa)
# x two schedulers (EEVDF, scx_simple) run the steady scenario within a budget;
# every cell gets its line in the table and its run in the report, the JUnit
# file has one testcase per cell, and the time spent is reported.
source "$(dirname "$0")/lib.sh"
KTSTR="$KTSTR_TOP/scripts/ktstr"
need_fixture
need_cmd qemu-system-x86_64
need_cmd jq
budget=${KTSTR_E2E_GAUNTLET_BUDGET:-300}

run_rc "$KTSTR" gauntlet --kernel "$KTSTR_FIXTURES" --accel tcg --preset small,llc,numa \
    --scheduler eevdf,scx_simple --scenario steady --duration 1 --timeout 120 --budget "$budget" \
    --out "$TMP/g" --json --junit "$TMP/g.junit.xml" >"$TMP/report.json" 2>"$TMP/err"
cat "$TMP/err"
assert_eq 0 "$RC" "gauntlet exit status"

# The per-cell table on stderr: one line per cell with its exit status and time.
for t in 1n1l2c1t 1n2l2c1t 2n2l2c1t; do
    for s in eevdf scx_simple; do
        grep -qE "^steady@$t@$s +0 +[0-9]+\.[0-9]$" "$TMP/err" || die "no table line for steady@$t@$s"
    done
done
echo "ok: a table line for each of the 6 cells"
spent=$(sed -n 's/^ktstr: ran 6 cell(s) in \([0-9]*\)\.[0-9] s (budget .*/\1/p' "$TMP/err")
[ -n "$spent" ] || die "no 'ran 6 cell(s)' line"
[ "$spent" -lt "$budget" ] || die "the gauntlet took $spent s, over its budget of $budget s"
echo "ok: 6 cells in $spent s (budget $budget s)"
grep -q 'not run (budget)' "$TMP/err" && die "cells were skipped"

# The report: one run per cell, each passed.
assert_eq pass "$(jq -r .verdict "$TMP/report.json")" "overall verdict"
cells=$(jq -c '[.runs[] | "\(.topology)/\(.scheduler)=\(.scenarios[0].verdict)"] | sort' "$TMP/report.json")
echo "report cells: $cells"
assert_eq 6 "$(jq '.runs | length' "$TMP/report.json")" "one report run per cell"
assert_eq 6 "$(jq '[.runs[] | select(.scenarios[0].verdict == "pass")] | length' "$TMP/report.json")" "every cell passed"
assert_eq 3 "$(jq '[.runs[].topology] | unique | length' "$TMP/report.json")" "three topologies"
assert_eq '["eevdf","scx_simple"]' "$(jq -c '[.runs[].scheduler] | unique' "$TMP/report.json")" "two schedulers, named in each run"
assert_eq 6 "$(grep -c '<testcase ' "$TMP/g.junit.xml")" "one JUnit testcase per cell"
