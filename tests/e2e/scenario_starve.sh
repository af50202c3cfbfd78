#!/bin/bash
# A SCHED_FIFO hog pinned on cgroup 'victim''s CPU (RT throttling off) under
# scx_simple: the gap check fails and the verdict names cgroup, CPU, duration.
# (Under EEVDF the 6.12 fair server still runs the victims ~50 ms per second,
# which bounds the gap near 1 s, below the 2000 ms default.)
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/scenario.inc"

run_scenario 1n2l2c1t "$SCEN_DIR/starve_fifo.json" --scheduler "$SCX/scx_simple" "${SCHED_TIMEOUT[@]}"
assert_eq 1 "$RC" "starvation: exit status (a check failed)"
gap=$(check_json gap victim)
assert_eq false "$(echo "$gap" | jq -r .passed)" "victim gap check failed"
msg=$(echo "$gap" | jq -r .message)
assert_contains "$msg" "cgroup victim: stuck " "verdict names the cgroup"
assert_contains "$msg" "ms on cpu1 at +" "verdict names the CPU"
ms=$(echo "$msg" | sed -n 's/.*stuck \([0-9]*\)ms.*/\1/p')
[ "$ms" -gt 2000 ] || die "gap $ms ms should exceed 2000 ms"
echo "ok: victim stuck $ms ms"
assert_eq true "$(check_json gap bystander | jq -r .passed)" "bystander not stuck"
assert_eq Stuck "$(end_json | jq -r '.details[0].kind')" "scenario_end detail kind"
