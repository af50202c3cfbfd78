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
# --list-scenarios --json: each scenario's whole document, loadable as a file.
ktstr-vmm --list-scenarios --json >"$TMP/catalog.jsonl"
assert_eq 10 "$(jq -s 'map(select(.schema == "ktstr.scenario/1")) | length' "$TMP/catalog.jsonl")" "10 scenario documents"
jq -c 'select(.name == "cpuset_resize")' "$TMP/catalog.jsonl" >"$TMP/resize.json"
assert_contains "$(jq -r .description "$TMP/resize.json")" "25/75" "the description comes along"
run_rc ktstr-vmm --list-scenarios --json --verbose >/dev/null
assert_eq 0 "$RC" "--json with --list-scenarios"
run_rc ktstr-vmm --json 2>"$TMP/err"
assert_eq 2 "$RC" "--json alone is a usage error"
assert_contains "$(cat "$TMP/err")" "--json needs --list-scenarios" "says what --json needs"

# --dry-run: everything checked, nothing booted, a plan event.
if [ -n "${KTSTR_FIXTURES:-}" ] && [ -f "$KTSTR_FIXTURES/bzImage" ]; then
    run_rc ktstr-vmm --dry-run --kernel "$KTSTR_FIXTURES" --topology 1n2l2c1t --scenario "$TMP/resize.json" \
        --scenario steady_llc >"$TMP/plan" 2>"$TMP/err"
    assert_eq 0 "$RC" "dry run of a good command line"
    assert_eq plan "$(jq -r .event "$TMP/plan")" "one plan event"
    assert_eq '["cpuset_resize","steady_llc"]' "$(jq -c .scenarios "$TMP/plan")" "the scenarios, in order"
    assert_eq 4 "$(jq -r .cpus "$TMP/plan")" "the topology's CPUs"
    assert_eq 1 "$(wc -l <"$TMP/plan")" "nothing else on stdout"
    run_rc ktstr-vmm -n --kernel "$KTSTR_FIXTURES" --topology 1n1l2c1t --scenario steady_llc >/dev/null 2>"$TMP/err"
    assert_eq 0 "$RC" "a scenario the topology skips is not an error"
    assert_contains "$(cat "$TMP/err")" "will be skipped on 1n1l2c1t" "but it is said"
    run_rc ktstr-vmm -n --kernel "$KTSTR_FIXTURES" --topology 1n1l2c1t --memory-mb 16 --scenario steady >/dev/null 2>"$TMP/err"
    assert_eq 2 "$RC" "too little memory found by the dry run"
    assert_contains "$(cat "$TMP/err")" "16 MiB" "the memory is named"
fi
