#!/bin/bash
# steady on 1n2l2c1t passes under EEVDF and under the fixture's scx_simple.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/scenario.inc"

run_scenario 1n2l2c1t steady
assert_eq 0 "$RC" "steady under EEVDF: exit status"
assert_eq true "$(end_json | jq -r .passed)" "steady under EEVDF: passed"
assert_eq 4 "$(jq -s '[.[] | select(.event=="worker_report")] | length' "$OUT")" "steady: worker reports"
assert_eq 0 "$(jq -s '[.[] | select(.event=="worker_report" and .work_units == 0)] | length' "$OUT")" "steady: starved workers"
assert_eq eevdf "$(jq -r 'select(.event=="scenario_start") | .scheduler' "$OUT")" "steady: scheduler"

run_scenario 1n2l2c1t steady --scheduler "$SCX/scx_simple" "${SCHED_TIMEOUT[@]}"
assert_eq 0 "$RC" "steady under scx_simple: exit status"
assert_eq true "$(end_json | jq -r .passed)" "steady under scx_simple: passed"
assert_eq simple "$(jq -r 'select(.event=="scenario_start") | .scheduler.ops' "$OUT")" "scx_simple attached"
assert_eq scx_simple "$(jq -r 'select(.event=="scenario_start") | .scheduler.name' "$OUT")" "scenario_start names the binary"
assert_eq true "$(check_json scheduler '' | jq -r .passed)" "scx_simple alive through the run"
# scenario_end records the scheduler as the run left it (the harness stops it afterwards)
assert_eq running "$(end_json | jq -r .scheduler.status)" "scx_simple still running when the scenario ended"
assert_eq 4 "$(jq -s '[.[] | select(.event=="worker_report" and .work_units > 0)] | length' "$OUT")" "steady under scx_simple: workers progressed"
