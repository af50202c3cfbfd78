#!/bin/bash
# cpuset_apply: disjoint halves applied mid-run; isolation held in both cgroups.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/scenario.inc"

run_scenario 1n2l2c1t cpuset_apply
assert_eq 0 "$RC" "cpuset_apply: exit status"
assert_contains "$(check_json isolation cg_0 | jq -r .message)" "isolation held: 2 of 2 workers stayed within cpuset 0" "cg_0 isolation"
assert_contains "$(check_json isolation cg_1 | jq -r .message)" "isolation held: 2 of 2 workers stayed within cpuset 1-2" "cg_1 isolation"
assert_eq 2 "$(jq -s '[.[] | select(.event=="step")] | length' "$OUT")" "cpuset_apply: steps"
assert_eq 4 "$(jq -r 'select(.event=="step" and .step_index==1) | .op_kinds' "$OUT")" "step 1 applied set_cpuset (bit 2)"
