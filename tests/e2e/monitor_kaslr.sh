#!/bin/bash
# ktstr-monitor on the fixture kernel with KASLR on (QEMU TCG, 4 vCPUs):
# finds the kernel from guest memory alone, samples every CPU's nr_running and
# rq clock (both advance under a steady busy load), sees sched_ext state once
# scx_simple is loaded, lists the scheduler's BPF maps by name, and refuses a
# vmlinux that does not match.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/monitor_qemu.inc"
need_fixture
need_cmd qemu-system-x86_64
need_cmd jq
need_cmd cpio
[ -x "$KTSTR_FIXTURES/sched_ext/scx_simple" ] || skip "no scx_simple in the fixture"
VMLINUX="$KTSTR_FIXTURES/vmlinux"

cat > "$TMP/init" <<'INIT'
#!/bin/sh
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mount -t debugfs none /sys/kernel/debug 2>/dev/null
for i in 1 2 3 4 5 6; do (while :; do :; done) & done
echo "ktstr-e2e: load running"
sleep 4
/bin/scx_simple >/tmp/scx.log 2>&1 &
echo "ktstr-e2e: scx_simple started"
while :; do sleep 10; done
INIT
mon_initramfs "$TMP/initrd" "$TMP/init"
mon_boot 4 512 "$TMP/initrd" ""

# A wrong vmlinux is refused at once: exit 2, one line.
run_rc ktstr-monitor --memory-file "$GUEST_RAM" --cpus 4 --vmlinux /bin/ls --samples 1 >"$TMP/ls.out" 2>"$TMP/ls.err"
assert_eq 2 "$RC" "exit code for /bin/ls as vmlinux"
assert_eq 1 "$(wc -l <"$TMP/ls.err")" "one error line"
cat "$TMP/ls.err"

# Phase 1 (EEVDF, before scx_simple): 15 samples of every CPU once the load runs.
t0=$(date +%s.%N)
wait_console "load running" 90
echo "guest load running after $(echo "$(date +%s.%N) - $t0" | bc) s"
t0=$(date +%s.%N)
ktstr-monitor --memory-file "$GUEST_RAM" --cpus 4 --vmm-pid "$QEMU_PID" --vmlinux "$VMLINUX" --samples 15 --interval-ms 100 \
    --ready-timeout-s 90 >"$TMP/eevdf.jsonl"
echo "ready+15 samples after $(echo "$(date +%s.%N) - $t0" | bc) s"
jq -c 'select(.event=="meta")' "$TMP/eevdf.jsonl"
assert_eq true "$(jq -r 'select(.event=="meta") | .kaslr' "$TMP/eevdf.jsonl")" "KASLR detected"
assert_eq 15 "$(jq -s '[.[]|select(.event=="sample")]|length' "$TMP/eevdf.jsonl")" "sample lines"
assert_eq 4 "$(jq -s '[.[]|select(.event=="sample")][0].cpus|length' "$TMP/eevdf.jsonl")" "CPUs per sample"
# every CPU's rq clock advances between the first and the last sample
adv=$(jq -s '[.[]|select(.event=="sample")] as $s | [range(0;4) as $c |
        ($s[-1].cpus[$c].rq_clock > $s[0].cpus[$c].rq_clock)] | all' "$TMP/eevdf.jsonl")
assert_eq true "$adv" "rq_clock advanced on every CPU"
busy=$(jq -s '[.[]|select(.event=="sample")] as $s | [range(0;4) as $c |
        ([$s[].cpus[$c].nr_running] | max) > 0] | all' "$TMP/eevdf.jsonl")
assert_eq true "$busy" "nr_running seen non-zero on every CPU"
# Single-threaded TCG has one "ALL CPUs/TCG" thread: no per-vCPU host time, and
# the samples say so by leaving the field out (vmm_tcg_monitor_socket.sh checks
# the per-vCPU thread ids of multi-threaded TCG).
vt=$(jq -s '[.[]|select(.event=="sample")][-1].cpus | map(has("vcpu_cpu_time_ns")) | any' "$TMP/eevdf.jsonl")
assert_eq false "$vt" "no vCPU times from single-threaded TCG"
assert_eq eof_or_count "$(jq -r 'select(.event=="end") | if .reason=="count" then "eof_or_count" else .reason end' "$TMP/eevdf.jsonl")" "end line"

# Another build of the same kernel (only its banner differs): refused, exit 2, one line.
cp "$VMLINUX" "$TMP/other-vmlinux"
perl -0777 -pi -e 's/\) #1 SMP PREEMPT_DYNAMIC (\w{3})/) #9 SMP PREEMPT_DYNAMIC $1/' "$TMP/other-vmlinux"
cmp -s "$VMLINUX" "$TMP/other-vmlinux" && die "could not patch the banner of the copy"
run_rc ktstr-monitor --memory-file "$GUEST_RAM" --cpus 4 --vmlinux "$TMP/other-vmlinux" --samples 1 >"$TMP/other.out" 2>"$TMP/other.err"
cat "$TMP/other.err"
assert_eq 2 "$RC" "exit code for a vmlinux of another build"
assert_eq 1 "$(wc -l <"$TMP/other.err")" "one error line"
assert_contains "$(cat "$TMP/other.err")" "does not match the guest kernel" "mismatch reason"
rm -f "$TMP/other-vmlinux"

# Phase 2: scx_simple loaded -> sched_ext fields move.
wait_console "scx_simple started" 60
for i in $(seq 1 120); do
    ktstr-monitor --memory-file "$GUEST_RAM" --cpus 4 --vmlinux "$VMLINUX" maps >"$TMP/maps.jsonl" 2>/dev/null || true
    # libbpf creates the struct_ops map after the data maps: wait for both,
    # or a slower monitor (make check's sanitizer build) looks in between.
    grep -q '"name":"scx_simp.bss"' "$TMP/maps.jsonl" && grep -q '"name":"simple_ops"' "$TMP/maps.jsonl" && break
    sleep 1
done
cat "$TMP/maps.jsonl"
names=$(jq -r .name "$TMP/maps.jsonl" | tr '\n' ' ')
assert_contains "$names" "scx_simp.bss" "scx_simple's .bss map listed by name (BPF names are 15 chars)"
assert_contains "$names" "simple_ops" "scx_simple's struct_ops map listed by name"
# Dump the .bss value, write the same 8 bytes back (a harmless write) and read it back.
ktstr-monitor --memory-file "$GUEST_RAM" --cpus 4 --vmlinux "$VMLINUX" map-dump .bss >"$TMP/dump.json"
cat "$TMP/dump.json"
hexv=$(jq -r .hex "$TMP/dump.json")
assert_eq 16 "${#hexv}" "8-byte .bss value dumped"
le=$(echo "$hexv" | sed 's/../& /g' | awk '{for(i=NF;i>0;i--) printf "%s", $i}')
ktstr-monitor --memory-file "$GUEST_RAM" --cpus 4 --vmlinux "$VMLINUX" map-write .bss 0 "0x$le" --size 8 >"$TMP/write.json"
cat "$TMP/write.json"
jq -e '.readback_hex | length == 16' "$TMP/write.json" >/dev/null || die "map-write readback"
echo "ok: map-write wrote and read back"
ktstr-monitor --memory-file "$GUEST_RAM" --cpus 4 --vmlinux "$VMLINUX" --samples 10 >"$TMP/scx.jsonl"
scx=$(jq -s '[.[]|select(.event=="sample")|.cpus[]|(.scx_nr_running + .scx_flags)]|add' "$TMP/scx.jsonl")
[ "$scx" -gt 0 ] || die "sched_ext fields all zero with scx_simple loaded"
echo "ok: sched_ext fields non-zero (sum $scx)"
ktstr-monitor --memory-file "$GUEST_RAM" --cpus 4 --vmlinux "$VMLINUX" progs >"$TMP/progs.jsonl"
cat "$TMP/progs.jsonl"
n=$(jq -s '[.[]|select(.struct_ops and .verified_insns > 0)]|length' "$TMP/progs.jsonl")
[ "$n" -gt 0 ] || die "no struct_ops programs with verified_insns"
echo "ok: $n struct_ops programs with verified instruction counts"

# The VM goes away: a running monitor ends with reason "eof" and a summary.
ktstr-monitor --memory-file "$GUEST_RAM" --cpus 4 --vmm-pid "$QEMU_PID" --vmlinux "$VMLINUX" >"$TMP/end.jsonl" &
mon=$!
for _ in $(seq 1 300); do grep -q '"event":"sample"' "$TMP/end.jsonl" && break; sleep 0.2; done
kill "$QEMU_PID"
wait "$mon" || true
assert_eq eof "$(jq -r 'select(.event=="end") | .reason' "$TMP/end.jsonl")" "monitor ended when QEMU exited"
grep -q '"event":"summary"' "$TMP/end.jsonl" || { cut -c1-200 "$TMP/end.jsonl"; die "no summary line"; }
assert_eq true "$(jq -r 'select(.event=="summary") | .total_samples > 0' "$TMP/end.jsonl")" "summary over the samples taken"
