#!/bin/bash
# The fixture vmlinux under the KVM VMM, booted through its ELF entry point
# until the kernel has printed its e820 map, ACPI/NUMA setup and CPU count
# ("CPU topo: Allowing N present CPUs"), then stopped (--stop-on).  Asserts
# that what the kernel printed matches the requested topology (CPUs, nodes,
# memory per node, e820) for two topologies and prints how long each took;
# then boots a third until SMP bring-up ("smp: Brought up 2 nodes, 2 CPUs").
# On this project's emulated KVM that takes minutes per topology (longer on a
# loaded host): KTSTR_KVM_BOOT_TIMEOUT (seconds, default 1200) bounds each.
source "$(dirname "$0")/../lib.sh"
need_fixture
[ -r /dev/kvm ] && [ -w /dev/kvm ] || skip "/dev/kvm not usable"
[ -f "$KTSTR_FIXTURES/vmlinux" ] || skip "fixture vmlinux missing"
need_cmd jq
TIMEOUT=${KTSTR_KVM_BOOT_TIMEOUT:-1200}

boot() { # TOPO MEMORY_MB [STOP-TEXT]
    local topo=$1 mem=$2 stop=${3:-Allowing}
    run_rc ktstr-vmm --accel kvm --kernel "$KTSTR_FIXTURES" --elf vmlinux --kernel-log --nokaslr \
        --topology "$topo" --memory-mb "$mem" --timeout "$TIMEOUT" --json-layout \
        --stop-on "$stop" --console "$TMP/console" >"$TMP/ev" 2>"$TMP/err"
    EXIT=$(jq -c 'select(.event=="exit")' "$TMP/ev")
    echo "$topo ${mem}MiB: reason=$(jq -r .reason <<<"$EXIT") elapsed=$(jq -r .elapsed_s <<<"$EXIT")s" \
         "host_quirks=$(jq -c '[.host_quirks[] | "\(.name)x\(.count)"]' <<<"$EXIT")" \
         "image_load=$(jq -c 'select(.event=="boot") | .image_load' "$TMP/ev")"
    grep -E 'BIOS-e820|SRAT|NUMA|NODE_DATA|node +[0-9]+:|Initmem|Allowing|smp: |smpboot|x2apic' "$TMP/console" |
        sed 's/^/  | /' || true
    if [ "$(jq -r .reason <<<"$EXIT")" != stopped ]; then
        echo "kernel console tail:"; tail -n 20 "$TMP/console"
        die "$topo: the kernel did not print '$stop' ($(jq -r .detail <<<"$EXIT"))"
    fi
    assert_eq 0 "$RC" "$topo: a run ended by --stop-on exits 0"
}

check() { # TOPO MEMORY_MB CPUS NODES
    local topo=$1 mem=$2 cpus=$3 nodes=$4
    boot "$topo" "$mem"
    local c=$TMP/console
    assert_contains "$(cat "$c")" "Allowing $cpus present CPUs" "$topo: kernel counted $cpus CPUs"
    assert_contains "$(cat "$c")" "BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable" "$topo: e820 low RAM"
    local shm_base top
    shm_base=$(jq -r 'select(.event=="layout") | .shm.base_pa' "$TMP/ev")
    top=$(printf '0x%016x' $((shm_base - 1)))
    assert_contains "$(cat "$c")" "BIOS-e820: [mem 0x0000000000100000-$top] usable" "$topo: e820 RAM up to the shared region"
    assert_contains "$(cat "$c")" "$(printf 'BIOS-e820: [mem 0x%016x-0x%016x] reserved' "$shm_base" $((mem * 1048576 - 1)))" \
        "$topo: shared region reserved"
    if [ "$nodes" -gt 1 ]; then
        local per=$((mem / nodes)) n
        for ((n = 0; n < nodes; n++)); do
            local lo=$((n * per * 1048576)) hi=$(((n + 1) * per * 1048576 - 1))
            assert_contains "$(cat "$c")" "$(printf 'SRAT: Node %d PXM %d [mem 0x%08x-0x%08x]' $n $n $lo $hi)" \
                "$topo: node $n has ${per} MiB"
        done
        assert_eq "$nodes" "$(grep -c 'NODE_DATA([0-9]*) allocated' "$c")" "$topo: kernel set up $nodes nodes"
    else
        grep -q 'No NUMA configuration found\|SRAT: Node 0 PXM 0' "$c" || die "$topo: no NUMA/SRAT line"
        echo "ok: $topo: single node"
    fi
}

check 1n1l2c1t 256 2 1
check 2n2l2c1t 512 4 2
echo "early boot matched both topologies"

# Further, on two NUMA nodes: the kernel takes the CPUID we set (x2APIC,
# FPU), starts the second vCPU through INIT/SIPI as the MADT says, and counts
# nodes and CPUs as asked (126 s here; HZ=1000 timer work then
# starves the rest of the boot on this emulated KVM).
boot 2n2l1c1t 512 "smp: Brought up"
assert_contains "$(cat "$TMP/console")" "smp: Brought up 2 nodes, 2 CPUs" "2n2l1c1t: both vCPUs up, on 2 nodes"
assert_contains "$(cat "$TMP/console")" "x86/fpu: x87 FPU will use" "2n2l1c1t: the guest sees our CPUID (an FPU)"
grep -q "no FPU found" "$TMP/console" && die "2n2l1c1t: the kernel found no FPU (CPUID not applied)"
echo "SMP bring-up matched 2n2l1c1t"
