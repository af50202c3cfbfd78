#!/bin/bash
# scripts/kernel-test-loop.mk on the fixture kernel (KERNEL= skips the build):
# the first run has nothing to compare with and passes; promote keeps it as the
# last good run; the next run is compared with it and passes; a run whose
# verdict fails makes make fail, with the run's status kept in current.status.
source "$(dirname "$0")/lib.sh"
need_fixture
need_cmd qemu-system-x86_64
need_cmd make
mk=(make --no-print-directory -f "$KTSTR_TOP/scripts/kernel-test-loop.mk" KERNEL="$KTSTR_FIXTURES"
    KTSTR_BIN="$KTSTR_BIN/" KTSTR="$KTSTR_TOP/scripts/ktstr" TOPOLOGY=1n1l2c1t SCHED=eevdf)

run_rc "${mk[@]}" RESULTS="$TMP/r" SCENARIOS=steady >"$TMP/1.out" 2>&1
cat "$TMP/1.out"
assert_eq 0 "$RC" "first loop: make exit status"
assert_contains "$(cat "$TMP/1.out")" "last-good yet" "first loop: nothing to compare with"
assert_eq 0 "$(cat "$TMP/r/current.status")" "first loop: the run's status"
[ -f "$TMP/r/current.junit.xml" ] || die "no JUnit file from the loop"

run_rc "${mk[@]}" RESULTS="$TMP/r" promote >"$TMP/p.out" 2>&1
assert_eq 0 "$RC" "promote"
[ -d "$TMP/r/last-good" ] || die "promote kept no last-good run"

run_rc "${mk[@]}" RESULTS="$TMP/r" SCENARIOS=steady >"$TMP/2.out" 2>&1
cat "$TMP/2.out"
assert_contains "$(cat "$TMP/2.out")" "worst_gap_ms" "second loop printed the A/B comparison with last-good"
assert_contains "$(cat "$TMP/2.out")" "passed: A 1/1, B 1/1" "both runs passed"
assert_eq 0 "$(cat "$TMP/r/current.status")" "second loop: the run's status"
# Two runs of the same kernel differ only by noise, but on a loaded TCG host the
# noise can pass both gates of a metric: make then fails because of compare.
if grep -q '^0 regressions' "$TMP/2.out"; then
    assert_eq 0 "$RC" "second loop, no regression: make exit status"
else
    [ "$RC" != 0 ] || die "compare reported a regression but make passed"
    echo "ok: compare reported a (noise) regression and make failed ($RC), as it should"
fi

# A failing verdict (a SCHED_FIFO hog starves a cgroup under scx_simple): make fails.
run_rc "${mk[@]}" RESULTS="$TMP/f" TOPOLOGY=1n2l2c1t SCHED=scx_simple SCENARIOS="$KTSTR_TOP/tests/e2e/scenarios/starve_fifo.json" \
    >"$TMP/3.out" 2>&1
tail -n 5 "$TMP/3.out"
[ "$RC" != 0 ] || die "make passed although the run's verdict failed"
echo "ok: make failed ($RC) on a failed verdict"
assert_eq 1 "$(cat "$TMP/f/current.status")" "the failed run's status kept"
assert_contains "$(cat "$TMP/3.out")" "the run's verdict failed (ktstr run exited 1)" "make says why"
