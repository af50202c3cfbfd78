#!/bin/bash
# scx_simple SIGKILLed from a step: reported as scheduler death with its exit
# reason (wait status, sched_ext state, the kernel's disable reason), not a pass.
# Then a "scheduler" that exits before sched_ext is enabled: a failed scheduler
# check (exit 1, not 3: the scheduler is what is under test).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/scenario.inc"

run_scenario 1n2l2c1t "$SCEN_DIR/kill_scheduler.json" --scheduler "$SCX/scx_simple" "${SCHED_TIMEOUT[@]}"
assert_eq 1 "$RC" "scheduler death: exit status"
c=$(check_json scheduler '')
assert_eq false "$(echo "$c" | jq -r .passed)" "scheduler check failed"
msg=$(echo "$c" | jq -r .message)
assert_contains "$msg" "scheduler process died unexpectedly" "verdict wording"
assert_contains "$msg" "killed by signal 9" "exit reason"
assert_contains "$msg" "disabled (unregistered from user space)" "kernel's reason"
end=$(end_json)
assert_eq SchedulerDied "$(echo "$end" | jq -r '.details[-1].kind')" "detail kind"
assert_eq exited "$(echo "$end" | jq -r .scheduler.status)" "scheduler end status"
assert_eq "unregistered from user space" "$(echo "$end" | jq -r .scheduler.exit_kind)" "sched_ext exit kind"
assert_eq 4 "$(jq -s '[.[] | select(.event=="worker_report")] | length' "$OUT")" "workers still collected"

run_scenario 1n2l2c1t steady --scheduler /bin/false --sched-timeout 5
assert_eq 1 "$RC" "scheduler that never attaches: exit status"
c=$(check_json scheduler '')
assert_eq false "$(echo "$c" | jq -r .passed)" "never attached: scheduler check failed"
assert_contains "$(echo "$c" | jq -r .message)" "/ktstr-sched/false exited with status 1 before sched_ext was enabled" "never attached: why"
assert_eq SchedulerDied "$(end_json | jq -r '.details[0].kind')" "never attached: detail kind"
assert_eq 0 "$(jq -s '[.[] | select(.event=="worker_report")] | length' "$OUT")" "never attached: no workers ran"
