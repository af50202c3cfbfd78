#!/bin/bash
# ktstr-vmm's scenario surface without booting: the catalog, bad input (exit 2).
source "$(dirname "$0")/lib.sh"

list=$(ktstr-vmm --list-scenarios)
for n in steady steady_llc oversubscribed cpuset_apply cpuset_clear cpuset_resize cgroup_add cgroup_remove \
         affinity_pinned mixed_workloads; do
    assert_contains "$list" "$n " "catalog lists $n"
done
run_rc ktstr-vmm --kernel /nonexistent --scenario stedy 2>"$TMP/err"
assert_eq 2 "$RC" "unknown scenario: exit 2"
assert_contains "$(cat "$TMP/err")" "unknown scenario 'stedy'" "unknown scenario named"
echo '{"schema":"ktstr.scenario/1","name":"x","steps":[{"setup":[{"name":"a","cpuset":{"disjoint":{"index":2,"of":2}}}],"hold":{"ms":5}}]}' >"$TMP/bad.json"
run_rc ktstr-vmm --kernel /nonexistent --scenario "$TMP/bad.json" 2>"$TMP/err"
assert_eq 2 "$RC" "invalid scenario: exit 2"
assert_contains "$(cat "$TMP/err")" "steps[0].setup[0].cpuset.disjoint.index: 2 must be below of=2" "field and value named"
run_rc ktstr-vmm --kernel /nonexistent --scenario steady --check max_gap=3 2>"$TMP/err"
assert_eq 2 "$RC" "bad --check: exit 2"
assert_contains "$(cat "$TMP/err")" "unknown check 'max_gap'" "bad check named"
run_rc ktstr-vmm --kernel /nonexistent --scheduler /bin/true 2>"$TMP/err"
assert_eq 2 "$RC" "--scheduler without --scenario: exit 2"
assert_contains "$(cat "$TMP/err")" "--scheduler needs --scenario" "option named"
run_rc ktstr-vmm --kernel /nonexistent --scenario steady --scheduler /nonexistent/scx_x 2>"$TMP/err"
assert_eq 2 "$RC" "missing scheduler binary: exit 2"
assert_contains "$(cat "$TMP/err")" "--scheduler /nonexistent/scx_x" "scheduler path named"
assert_eq 10 "$(echo "$list" | wc -l)" "catalog size"
