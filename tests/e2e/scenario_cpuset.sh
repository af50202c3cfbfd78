#!/bin/bash
# cpuset_apply: disjoint halves applied mid-run; isolation held in both cgroups.
# The same boot then runs steady_llc (cgroups on LLC 0 / LLC 1): two --scenario in
# one guest, each with its own start/end and checks.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/scenario.inc"

run_scenario 1n2l2c1t cpuset_apply --scenario steady_llc
assert_eq 0 "$RC" "cpuset_apply + steady_llc: exit status"
# 1n2l2c1t: usable CPUs 0-2 (the last is the harness's), disjoint halves {0} / {1,2}
assert_contains "$(check_json isolation cg_0 cpuset_apply | jq -r .message)" "isolation held: 2 of 2 workers stayed within cpuset 0" "cg_0 isolation"
assert_contains "$(check_json isolation cg_1 cpuset_apply | jq -r .message)" "isolation held: 2 of 2 workers stayed within cpuset 1-2" "cg_1 isolation"
assert_eq 2 "$(jq -s '[.[] | select(.event=="step" and .scenario=="cpuset_apply")] | length' "$OUT")" "cpuset_apply: steps"
assert_eq 4 "$(jq -r 'select(.event=="step" and .scenario=="cpuset_apply" and .step_index==1) | .op_kinds' "$OUT")" "step 1 applied set_cpuset (bit 2)"
assert_contains "$(check_json isolation cg_0 steady_llc | jq -r .message)" "stayed within cpuset 0-1" "steady_llc cg_0 on LLC 0"
assert_contains "$(check_json isolation cg_1 steady_llc | jq -r .message)" "stayed within cpuset 2-3" "steady_llc cg_1 on LLC 1"
assert_eq "cpuset_apply steady_llc" "$(jq -r 'select(.event=="scenario_end") | .scenario' "$OUT" | xargs)" "both scenarios ended, in order"
assert_eq '[true,true]' "$(jq -c 'select(.event=="exit") | [.scenarios[].passed]' "$OUT")" "exit event lists both as passed"
