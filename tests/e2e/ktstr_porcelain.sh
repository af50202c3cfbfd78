#!/bin/bash
# The ktstr porcelain (scripts/ktstr): the gauntlet matrix and its shards, bad
# input, then one real run on the fixture kernel (TCG) compared with the same
# run written out as a pipeline of the tools: both must give the same verdict.
source "$(dirname "$0")/lib.sh"
KTSTR="$KTSTR_TOP/scripts/ktstr"
need_cmd jq

# ---- the matrix: 2 scenarios x 4 presets x 2 schedulers, split in 3 shards ----
m=$("$KTSTR" gauntlet --scenario steady,cpuset_apply --scheduler eevdf,scx_simple --matrix-json --shard 1/3)
assert_eq ktstr.matrix/1 "$(jq -r .schema <<<"$m")" "matrix schema"
assert_eq 16 "$(jq '.cells | length' <<<"$m")" "cells = 2 scenarios x 4 presets x 2 schedulers"
assert_eq 16 "$(jq '[.cells[].id] | unique | length' <<<"$m")" "cell ids are unique"
assert_eq "steady@1n1l2c1t@eevdf" "$(jq -r '.cells[0].id' <<<"$m")" "first cell (scenario-major order)"
assert_eq "cpuset_apply@2n2l2c1t@scx_simple" "$(jq -r '.cells[15].id' <<<"$m")" "last cell"
assert_eq "6 5 5" "$(jq -r '[1,2,3] | map(. as $s | [$m.cells[] | select(.shard == $s)] | length) | join(" ")' \
    --argjson m "$m" -n)" "cells per shard"
assert_eq 1 "$(jq -r '.cells[3].shard' <<<"$m")" "cell 3 is in shard 1 ((3 mod 3) + 1)"

# ---- bad input: exit 2 and one line naming the value --------------------------
for bad in "gauntlet --shard 0/2" "gauntlet --shard 3/2" "run --budget 10" "run --topology 1n2x" \
           "run --accel fast" "frob" "run --timeout soon" "gauntlet --preset huge --matrix-json"; do
    run_rc "$KTSTR" $bad >"$TMP/out" 2>"$TMP/err"
    assert_eq 2 "$RC" "exit status of 'ktstr $bad'"
    assert_eq 1 "$(wc -l <"$TMP/err")" "one error line for 'ktstr $bad'"
done
assert_contains "$(cat "$TMP/err")" "huge" "the bad preset is named"

# ---- a real run, and the same run as a pipeline of the tools ------------------
need_fixture
need_cmd qemu-system-x86_64
ktstr-vmm --help | grep -q -- '--scenario' || skip "ktstr-vmm has no --scenario yet"
t0=$(date +%s.%N)
run_rc "$KTSTR" -v run --kernel "$KTSTR_FIXTURES" --accel tcg --topology 1n2l2c1t --scenario steady \
    --duration 1 --timeout 120 --out "$TMP/porcelain" --json >"$TMP/porcelain.json" 2>"$TMP/porcelain.err"
echo "ktstr run: exit $RC after $(echo "$(date +%s.%N) - $t0" | bc) s"
cat "$TMP/porcelain.err"
assert_eq 0 "$RC" "ktstr run exit status"
cell="$TMP/porcelain/steady@1n2l2c1t@eevdf"
[ -s "$cell.jsonl" ] || die "no $cell.jsonl"
[ -s "$cell.monitor.jsonl" ] || die "no $cell.monitor.jsonl (the monitor did not attach)"
assert_contains "$(cat "$TMP/porcelain.err")" "+ $(command -v ktstr-vmm) --kernel" "--verbose prints the ktstr-vmm command"

# The pipeline, by hand.
mkdir -p "$TMP/pipe"
ktstr-kbuild resolve "$KTSTR_FIXTURES" >"$TMP/kernel.json" 2>/dev/null
ktstr-vmm --kernel "$TMP/kernel.json" --accel tcg --topology 1n2l2c1t --scenario steady --duration 1 \
    --timeout 120 --console none --monitor-socket "$TMP/m.sock" >"$TMP/pipe/steady.jsonl" 2>"$TMP/pipe.vmm.err" &
vmm=$!
for _ in $(seq 1 100); do [ -S "$TMP/m.sock" ] && break; sleep 0.05; done
ktstr-monitor --socket "$TMP/m.sock" --vmlinux "$(jq -r .vmlinux "$TMP/kernel.json")" \
    >"$TMP/pipe/steady.monitor.jsonl" 2>"$TMP/pipe.mon.err"
wait $vmm
run_rc ktstr-report --json "$TMP/pipe" >"$TMP/pipe.json"
assert_eq 0 "$RC" "pipeline report exit status"
verdicts() { jq -c '[.verdict, [.runs[] | .topology, .scheduler, (.scenarios[] | {name, verdict})]]' "$1"; }
assert_eq "$(verdicts "$TMP/porcelain.json")" "$(verdicts "$TMP/pipe.json")" "ktstr run and the pipeline agree"
