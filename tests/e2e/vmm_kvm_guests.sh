#!/bin/bash
# The KVM VMM end to end with the tiny guests of tests/guests (build/guests/*.elf):
# entry state, CPUID/LAPIC topology reported by every vCPU for several
# topologies, the initramfs bytes, the PIT as a BIOS leaves it, COM2 + i8042
# exit, triple fault, panic text, timeout, SIGTERM, and topologies rejected
# before any KVM call.  Seconds in all.
source "$(dirname "$0")/lib.sh"
[ -r /dev/kvm ] && [ -w /dev/kvm ] || skip "/dev/kvm not usable"
G=${KTSTR_TOP:-.}/${BUILD:-build}/guests
[ -f "$G/entry_state.elf" ] || G=$KTSTR_BIN/../guests
[ -f "$G/entry_state.elf" ] || die "tiny guests not built (make guests)"
need_cmd jq

# vmm GUEST TOPOLOGY [more ktstr-vmm args]: run, leave events in $TMP/ev, console in $TMP/c1, COM2 in $TMP/c2
vmm() {
    local guest=$1 topo=$2; shift 2
    run_rc ktstr-vmm --accel kvm --elf "$G/$guest.elf" --topology "$topo" --memory-mb 256 --timeout 20 \
        --console "$TMP/c1" --com2 "$TMP/c2" --json-layout "$@" >"$TMP/ev" 2>"$TMP/err"
    EXIT=$(jq -c 'select(.event=="exit")' "$TMP/ev")
    REASON=$(jq -r .reason <<<"$EXIT")
    printf '%-16s %-18s reason=%-12s %5.2fs\n' "$guest" "$topo" "$REASON" "$(jq -r .elapsed_s <<<"$EXIT")"
}

vmm entry_state 1n1l1c1t
assert_eq reboot "$REASON" "entry_state ends with the i8042 reset"
assert_contains "$(cat "$TMP/c1")" "entry: ok" "64-bit entry state, boot_params, cmdline, RSDP"
assert_contains "$(cat "$TMP/c2")" "KTSTR_EXIT=0" "entry_state exit line on COM2"

# Every vCPU reports once; its LAPIC id is its APIC id; CPUID agrees with the
# topology where the host lets us set CPUID (reported as a host quirk otherwise).
check_topology() { # TOPO-ARG N T C
    local topo=$1 n=$2 t=$3 c=$4
    vmm cpuid_topology "$topo"
    assert_eq reboot "$REASON" "cpuid_topology $topo ends"
    assert_contains "$(cat "$TMP/c1")" "vcpus: $(printf %08x "$n")" "$topo: $n vCPUs started from the MADT"
    local want got
    want=$(jq -r 'select(.event=="layout") | .vcpu_ids[]' "$TMP/ev" | sort -n | tr '\n' ' ')
    got=$(sed -n 's/^vcpu lapic=\([0-9a-f]*\).*/\1/p' "$TMP/c1" | while read -r h; do echo $((16#$h)); done | sort -n | tr '\n' ' ')
    assert_eq "$want" "$got" "$topo: LAPIC ids reported = layout vcpu_ids"
    if jq -s -e 'any(.[] | select(.event=="boot") | .host_quirks[]; .name=="cpuid_not_settable")' "$TMP/ev" >/dev/null; then
        echo "note: $topo: this host's KVM refuses KVM_SET_CPUID2 (host quirk cpuid_not_settable); CPUID leaves not checked"
        return
    fi
    local bits_t=0 bits_c=0
    while [ $((1 << bits_t)) -lt "$t" ]; do bits_t=$((bits_t + 1)); done
    while [ $((1 << bits_c)) -lt "$c" ]; do bits_c=$((bits_c + 1)); done
    while read -r line; do
        local lapic apic b0 b1 l1
        lapic=$(sed 's/.*lapic=\([0-9a-f]*\).*/\1/' <<<"$line")
        apic=$(sed 's/.* apic=\([0-9a-f]*\).*/\1/' <<<"$line")
        l1=$(sed 's/.*l1ebx=\([0-9a-f]*\).*/\1/' <<<"$line")
        b0=$(sed 's/.*b0=\([0-9a-f/]*\).*/\1/' <<<"$line")
        b1=$(sed 's/.*b1=\([0-9a-f/]*\).*/\1/' <<<"$line")
        assert_eq "$((16#$lapic))" "$((16#$apic))" "CPUID.0xB EDX = LAPIC id"
        assert_eq "$((16#$lapic & 255))" "$((16#$l1 >> 24))" "CPUID.1 EBX[31:24]"
        assert_eq "$(printf '%08x/%08x/%08x' $bits_t "$t" 0x100)" "$b0" "CPUID.0xB.0 (SMT level)"
        assert_eq "$(printf '%08x/%08x/%08x' $((bits_t + bits_c)) $((t * c)) 0x201)" "$b1" "CPUID.0xB.1 (core level)"
    done < <(grep '^vcpu lapic=' "$TMP/c1")
}
check_topology 1n1l1c1t 1 1 1
check_topology 1n2l4c2t 16 2 4
echo '{"schema":"ktstr.topology/1","numa_nodes":2,"llcs":3,"cores_per_llc":3,"threads_per_core":2,
       "nodes":[{"llcs":2,"memory_mb":192},{"llcs":1,"memory_mb":64}]}' >"$TMP/2n3l3c2t.json"
check_topology "$TMP/2n3l3c2t.json" 18 2 3

vmm com2_exit 1n1l1c1t
assert_eq reboot "$REASON" "com2_exit ends with the i8042 reset"
assert_eq 65 "$(wc -l <"$TMP/c2")" "64 lines and the exit line on COM2"
assert_contains "$(tail -n 1 "$TMP/c2")" "KTSTR_EXIT=3" "COM2 exit line"
assert_contains "$(sed -n 64p "$TMP/c2")" "com2 line 0000003f" "COM2 lines in order"

# The initramfs arrives byte for byte where boot_params says (an odd size,
# so the copy's tail is checked too), and its absence is reported.
# Both ways of loading: lazy (pages filled on first touch and in the
# background through userfaultfd) and eager.
fnv_line() { python3 -c '
import os, sys
h = 0x811c9dc5
for b in open(sys.argv[1], "rb").read():
    h = ((h ^ b) * 0x01000193) & 0xffffffff
print("size=%08x fnv=%08x" % (os.path.getsize(sys.argv[1]), h))' "$1"; }
head -c 70001 /dev/urandom >"$TMP/initrd"
vmm initrd_sum 1n1l1c1t --initrd "$TMP/initrd"
assert_eq reboot "$REASON" "initrd_sum ends"
assert_contains "$(cat "$TMP/c1")" "$(fnv_line "$TMP/initrd")" "initramfs bytes in guest RAM = the file"
head -c 1048577 /dev/urandom >"$TMP/initrd"
for mode in lazy eager; do
    vmm initrd_sum 1n1l1c1t --initrd "$TMP/initrd" --kvm-image-load $mode
    if [ "$mode" = lazy ] && [ "$RC" = 3 ] && grep -q 'userfaultfd' "$TMP/err"; then
        echo "note: lazy image loading not usable here: $(grep -m1 'error:' "$TMP/err")"
        continue
    fi
    assert_eq reboot "$REASON" "initrd_sum ends ($mode)"
    assert_contains "$(cat "$TMP/c1")" "$(fnv_line "$TMP/initrd")" "1 MiB initramfs, $mode: bytes in guest RAM = the file"
    il=$(jq -c 'select(.event=="boot") | .image_load' "$TMP/ev")
    assert_eq $mode "$(jq -r .mode <<<"$il")" "boot event image_load.mode"
    echo "image_load $mode: $il"
done
# Pages filled on demand through KVM: initrd_pages reads the first byte of each
# page of a 128 MiB initramfs, last page first. The background fill goes
# forwards and needs tens of ms to reach the end; the guest gets there within
# microseconds of starting, so those pages come through userfaultfd faults.
head -c $((128 * 1024 * 1024 + 123)) /dev/urandom >"$TMP/initrd"
want=$(python3 -c '
import os, sys
d = open(sys.argv[1], "rb").read()
n = (len(d) + 4095) // 4096
h = 0x811c9dc5
for k in reversed(range(n)):
    h = ((h ^ d[k * 4096]) * 0x01000193) & 0xffffffff
print("pages: n=%08x fnv=%08x" % (n, h))' "$TMP/initrd")
for mode in lazy eager; do
    vmm initrd_pages 1n1l1c1t --initrd "$TMP/initrd" --kvm-image-load $mode
    if [ "$mode" = lazy ] && [ "$RC" = 3 ] && grep -q 'userfaultfd' "$TMP/err"; then continue; fi
    assert_eq reboot "$REASON" "initrd_pages ends ($mode)"
    assert_contains "$(cat "$TMP/c1")" "$want" "128 MiB initramfs, $mode: one byte per page, last page first"
    il=$(jq -c 'select(.event=="boot") | .image_load' "$TMP/ev")
    echo "image_load $mode: $il"
    if [ $mode = lazy ]; then
        [ "$(jq -r .faults_served <<<"$il")" -ge 1 ] || die "lazy: no page was filled on demand through KVM ($il)"
        echo "ok: lazy: $(jq -r .faults_served <<<"$il") pages filled on demand through KVM"
    fi
done
run_rc ktstr-vmm --accel kvm --elf "$G/initrd_sum.elf" --kvm-image-load soon >/dev/null 2>"$TMP/err"
assert_eq 2 "$RC" "--kvm-image-load soon is a usage error"
assert_contains "$(cat "$TMP/err")" "--kvm-image-load: 'soon' is not a mode (auto, lazy or eager)" "names the valid modes"
vmm initrd_sum 1n1l1c1t
assert_contains "$(cat "$TMP/c1")" "initrd: none" "no --initrd: ramdisk_size 0"

# PIT counter 0 is programmed as a BIOS leaves it (mode 3, lobyte/hibyte,
# counting): its read-back status never shows "null count" (bit 6), on which a
# kernel without RDRAND/TSC spins for ever (seen at "Poking KASLR using i8254").
vmm pit_readback 1n1l1c1t
assert_eq reboot "$REASON" "pit_readback ends"
mapfile -t pit < <(sed -n 's/^pit: status=\([0-9a-f]*\) count=\([0-9a-f]*\)$/\1 \2/p' "$TMP/c1")
assert_eq 2 "${#pit[@]}" "two PIT samples"
for p in "${pit[@]}"; do
    st=$((16#${p% *}))
    assert_eq 0 $((st & 0x40)) "PIT status $p: null count clear"
    assert_eq 0x36 "$(printf '0x%x' $((st & 0x3f)))" "PIT status $p: lobyte/hibyte, mode 3, binary"
done
[ "${pit[0]#* }" != "${pit[1]#* }" ] || die "PIT counter 0 does not count (${pit[*]})"
echo "ok: PIT counter 0 counts (${pit[0]#* } -> ${pit[1]#* })"

vmm triple_fault 1n1l1c1t
assert_eq triple_fault "$REASON" "empty IDT + #DE is a triple fault"
assert_eq 3 "$RC" "triple fault exits 3"

vmm panic_text 1n1l1c1t
assert_eq panic "$REASON" "a panic line on the console ends the run"
assert_contains "$(jq -r .console_tail <<<"$EXIT")" "Kernel panic - not syncing" "console tail in the exit event"

vmm spin 1n1l2c1t --timeout 1
assert_eq timeout "$REASON" "--timeout ends a spinning guest"
assert_eq 3 "$RC" "timeout exits 3"

# --stop-on: the run ends once the text was on the console, with exit 0.
vmm spin 1n1l1c1t --stop-on spinning
assert_eq stopped "$REASON" "--stop-on ends a spinning guest"
assert_eq 0 "$RC" "--stop-on exits 0"
assert_eq "every --stop-on text appeared on the console" "$(jq -r .detail <<<"$EXIT")" "--stop-on detail"

# SIGTERM tears down cleanly (exit event, exit 3, no stray process).
ktstr-vmm --accel kvm --elf "$G/spin.elf" --topology 1n1l2c1t --memory-mb 256 --timeout 0 \
    --console none >"$TMP/ev" 2>"$TMP/err" &
pid=$!
for _ in $(seq 50); do grep -q '"event":"boot"' "$TMP/ev" 2>/dev/null && break; sleep 0.1; done
kill -TERM $pid
run_rc wait $pid
assert_eq signal "$(jq -r 'select(.event=="exit") | .reason' "$TMP/ev")" "SIGTERM: exit event reason"
assert_eq 3 "$RC" "SIGTERM exits 3"

# Rejected before any KVM call, with the reason.
run_rc ktstr-vmm --accel kvm --elf "$G/spin.elf" --topology 1n14l9c2t --memory-mb 256 >/dev/null 2>"$TMP/err"
assert_eq 2 "$RC" "APIC ids above 254: usage error"
assert_contains "$(cat "$TMP/err")" "433 exceeds 254" "names the APIC id and the limit"
run_rc ktstr-vmm --accel kvm --elf "$G/spin.elf" --topology 2n3l1c1t >/dev/null 2>"$TMP/err"
assert_eq 2 "$RC" "LLCs not a multiple of nodes"
assert_contains "$(cat "$TMP/err")" "multiple of nodes" "says why"
run_rc ktstr-vmm --accel kvm --elf "$G/spin.elf" --topology 1n1l0c1t >/dev/null 2>"$TMP/err"
assert_eq 2 "$RC" "zero cores"
echo "all tiny-guest checks passed"
