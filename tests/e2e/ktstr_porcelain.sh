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
m0=$("$KTSTR" gauntlet --scenario steady,cpuset_apply --scheduler eevdf,scx_simple --matrix-json --shard 01/03)
assert_eq "$m" "$m0" "--shard 01/03 is --shard 1/3"

# ---- bad input: exit 2 and one line naming the value --------------------------
for bad in "gauntlet --shard 0/2" "gauntlet --shard 3/2" "run --budget 10" "run --topology 1n2x" \
           "run --accel fast" "frob" "run --timeout soon" \
           "shell --scenario steady" "shell --scheduler scx_simple" "shell --out /tmp/x" "shell --json" \
           "shell --topology 1n1l1c1t,1n1l2c1t" "run --include /etc/hostname" "gauntlet --shard 1/08x" \
           "gauntlet --preset huge --matrix-json"; do
    run_rc "$KTSTR" $bad >"$TMP/out" 2>"$TMP/err"
    assert_eq 2 "$RC" "exit status of 'ktstr $bad'"
    assert_eq 1 "$(wc -l <"$TMP/err")" "one error line for 'ktstr $bad'"
done
assert_contains "$(cat "$TMP/err")" "huge" "the bad preset is named"

# ---- refused before any VM starts -------------------------------------------
need_fixture
# A scheduler this kernel does not have: exit 2 before the first cell runs.
run_rc "$KTSTR" run --kernel "$KTSTR_FIXTURES" --accel tcg --scheduler eevdf,scx_nosuch --out "$TMP/badsched" \
    >/dev/null 2>"$TMP/err"
assert_eq 2 "$RC" "unknown scheduler refused"
assert_contains "$(cat "$TMP/err")" "'scx_nosuch' is not one of this kernel's schedulers" "the bad scheduler is named"
assert_eq 0 "$(find "$TMP/badsched" -name '*.jsonl' | wc -l)" "no cell ran before the refusal"
# A topology ktstr-vmm refuses, a scenario name it does not know: found by the
# dry run of every cell, before the first VM (the good cell does not run either).
run_rc "$KTSTR" run --kernel "$KTSTR_FIXTURES" --accel tcg --topology 1n1l2c1t,3n2l2c1t --out "$TMP/badtopo" \
    >/dev/null 2>"$TMP/err"
assert_eq 2 "$RC" "a topology ktstr-vmm refuses: exit status"
assert_contains "$(cat "$TMP/err")" "error: cell steady@3n2l2c1t@eevdf: topology 3n2l2c1t" "the cell and topology are named"
assert_contains "$(cat "$TMP/err")" "NUMA nodes" "the reason is named"
assert_eq 0 "$(find "$TMP/badtopo" -name '*.jsonl' | wc -l)" "no cell ran before the refusal"
run_rc "$KTSTR" run --kernel "$KTSTR_FIXTURES" --accel tcg --scenario steady,stedy --out "$TMP/badname" \
    >/dev/null 2>"$TMP/err"
assert_eq 2 "$RC" "an unknown scenario: exit status"
assert_contains "$(cat "$TMP/err")" "cell stedy@1n2l2c2t@eevdf: unknown scenario 'stedy'" "the bad name is named"
assert_eq 0 "$(find "$TMP/badname" -name '*.jsonl' | wc -l)" "no cell ran before the unknown scenario was found"
# A VM that fails only once it runs: the cell's own error comes up on stderr, not only in its log.
run_rc "$KTSTR" run --kernel "$KTSTR_FIXTURES" --accel tcg --topology 1n1l2c1t --out "$TMP/badrun" \
    --vmm-arg --console=/nonexistent/dir/console >/dev/null 2>"$TMP/err"
assert_eq 2 "$RC" "a cell whose VM cannot start: exit status"
assert_contains "$(cat "$TMP/err")" "steady@1n1l2c1t@eevdf: ktstr-vmm: error: cannot write --console" "the cell's error is shown"
# A budget that leaves room for no cell: every cell is listed as not run, exit 2.
run_rc "$KTSTR" gauntlet --kernel "$KTSTR_FIXTURES" --accel tcg --preset small,smt --budget 0 --out "$TMP/budget" \
    >/dev/null 2>"$TMP/err"
assert_eq 2 "$RC" "a zero budget runs nothing"
assert_eq 2 "$(grep -c 'not run (budget)' "$TMP/err")" "both cells listed as not run"
assert_eq 0 "$(find "$TMP/budget" -name '*.jsonl' | wc -l)" "no cell ran within a zero budget"

# ---- ktstr shell: piped commands, the shell's status, nothing else on stdout --
need_cmd qemu-system-x86_64
[ -x /bin/busybox ] || skip "busybox-static not installed (scripts/install-deps.sh)"
run_rc "$KTSTR" shell --kernel "$KTSTR_FIXTURES" --topology 1n1l2c1t --vmm-arg --console=none \
    >"$TMP/shell.out" 2>"$TMP/shell.err" <<'IN'
echo porcelain-$((6 * 7)) cpus=$(nproc)
exit 5
IN
tr -d '\r' <"$TMP/shell.out" | tail -n 5
assert_eq 5 "$RC" "ktstr shell exits with the shell's status"
assert_contains "$(tr -d '\r' <"$TMP/shell.out")" $'\nporcelain-42 cpus=2' "the command ran in a 2-CPU guest"
grep -q KTSTR_ "$TMP/shell.out" && die "agent sentinels leaked onto the shell's terminal: $(grep KTSTR_ "$TMP/shell.out")"
echo "ok: no agent sentinel on the shell's output"

# ---- a real run, and the same run as a pipeline of the tools ------------------
t0=$(date +%s.%N)
run_rc "$KTSTR" -v run --kernel "$KTSTR_FIXTURES" --accel tcg --topology 1n2l2c1t --scenario steady \
    --scheduler eevdf,scx_simple --duration 1 --timeout 120 --out "$TMP/porcelain" --json \
    >"$TMP/porcelain.json" 2>"$TMP/porcelain.err"
echo "ktstr run: exit $RC after $(echo "$(date +%s.%N) - $t0" | bc) s"
cat "$TMP/porcelain.err"
assert_eq 0 "$RC" "ktstr run exit status"
cell="$TMP/porcelain/steady@1n2l2c1t@eevdf"
[ -s "$cell.jsonl" ] || die "no $cell.jsonl"
[ -s "$cell.monitor.jsonl" ] || die "no $cell.monitor.jsonl (the monitor did not attach)"
# The agent marks the guest's shutdown; the monitor stops there, so the frozen
# CPUs of a guest on its way to reset are not taken for a stall.
assert_eq guest_shutdown "$(jq -r 'select(.event == "end") | .reason' "$cell.monitor.jsonl")" "monitor end reason"
assert_eq "true false" "$(jq -r 'select(.event == "summary") | "\(.verdict.passed) \(.stall_detected)"' "$cell.monitor.jsonl")" \
    "monitor verdict passed, no stall seen"
# While the steady scenario runs on the 4 vCPUs (KASLR on: the command line has no
# nokaslr), every CPU is sampled: its rq clock advances and its nr_running is
# non-zero at some point (steady keeps workers on every CPU).
per_cpu=$(jq -sc '[.[] | select(.event == "sample") | .cpus] as $s
    | [range(0; $s[0] | length) as $c
       | {cpu: $c, clock_advances: ($s[-1][$c].rq_clock > $s[0][$c].rq_clock),
          busy: ([$s[][$c].nr_running] | max > 0)}]' "$cell.monitor.jsonl")
echo "per CPU: $per_cpu"
assert_eq 4 "$(jq length <<<"$per_cpu")" "the monitor samples all 4 CPUs"
assert_eq true "$(jq 'all(.clock_advances and .busy)' <<<"$per_cpu")" "every CPU's rq clock advances and it ran tasks"
grep -q nokaslr "$cell.jsonl" && die "the run had nokaslr on its command line"
# Cells boot with --loglevel 5: the console file has the kernel's warnings, e.g.
# sched_ext's about what scx_simple does not implement, and no info lines.
scx_console="$TMP/porcelain/steady@1n2l2c1t@scx_simple.console"
assert_contains "$(cat "$scx_console")" 'sched_ext: "simple" does not implement cgroup cpu.weight' \
    "the scx_simple cell's console shows sched_ext's warning"
grep -q "Linux version" "$scx_console" && die "info-level lines on a cell's console (loglevel not 5)"
echo "ok: KASLR was on (no nokaslr in the boot event's command line)"
assert_contains "$(cat "$TMP/porcelain.err")" "+ $(command -v ktstr-vmm) --kernel" "--verbose prints the ktstr-vmm command"
# The printed line runs as it is: its redirections are shell syntax, not quoted arguments.
vline=$(grep -m1 "^+ $(command -v ktstr-vmm) " "$TMP/porcelain.err")
assert_contains "$vline" " > $TMP/porcelain/steady@1n2l2c1t@eevdf.jsonl 2> " "--verbose shows the redirection"
[[ $vline == *" &" ]] || die "--verbose does not show that ktstr-vmm runs in the background: $vline"
echo "ok: the --verbose ktstr-vmm line ends with &"

# The pipeline, by hand: the kernel descriptor, its config checked against the
# fragment, then per scheduler one VM with the monitor on its memory, and the report.
mkdir -p "$TMP/pipe"
ktstr-kbuild resolve "$KTSTR_FIXTURES" >"$TMP/kernel.json" 2>/dev/null
run_rc ktstr-kconfig validate --config "$(jq -r .config "$TMP/kernel.json")" --arch x86_64 --json >"$TMP/kconfig.json"
assert_eq 0 "$RC" "ktstr-kconfig validate: the kernel keeps every critical option"
for sched in eevdf scx_simple; do
    sargs=()
    [ "$sched" = eevdf ] || sargs=(--scheduler "$(jq -r ".schedulers.$sched" "$TMP/kernel.json")")
    rm -f "$TMP/m.sock"
    ktstr-vmm --kernel "$TMP/kernel.json" --accel tcg --topology 1n2l2c1t --scenario steady --duration 1 \
        "${sargs[@]}" --timeout 120 --console none --monitor-socket "$TMP/m.sock" \
        >"$TMP/pipe/$sched.jsonl" 2>"$TMP/pipe.vmm.err" &
    vmm=$!
    for _ in $(seq 1 100); do [ -S "$TMP/m.sock" ] && break; sleep 0.05; done
    run_rc ktstr-monitor --socket "$TMP/m.sock" --vmlinux "$(jq -r .vmlinux "$TMP/kernel.json")" \
        >"$TMP/pipe/$sched.monitor.jsonl" 2>"$TMP/pipe.mon.err"
    assert_eq 0 "$RC" "ktstr-monitor verdict under $sched"
    run_rc wait $vmm
    assert_eq 0 "$RC" "ktstr-vmm under $sched"
done
run_rc ktstr-report --json "$TMP/pipe" >"$TMP/pipe.json"
assert_eq 0 "$RC" "pipeline report exit status"
verdicts() { jq -c '[.verdict, ([.runs[] | [.topology, .scheduler, (.scenarios[] | {name, verdict})]] | sort)]' "$1"; }
assert_eq "$(verdicts "$TMP/porcelain.json")" "$(verdicts "$TMP/pipe.json")" "ktstr run and the pipeline agree"
assert_eq 2 "$(jq '.runs | length' "$TMP/pipe.json")" "two runs (EEVDF and scx_simple)"
