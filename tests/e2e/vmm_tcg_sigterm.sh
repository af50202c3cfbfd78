#!/bin/bash
# SIGTERM to ktstr-vmm mid-boot (TCG): it tears QEMU down, reports reason
# "signal" in its exit event, exits 3, and leaves no QEMU process, no process
# holding the run's guest-RAM memfds, and no monitor socket file behind.
# After SIGKILL (no handler runs) QEMU still dies with it (PR_SET_PDEATHSIG).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/vmm_tcg.inc"
vmm_need_tcg
wait_s=${KTSTR_E2E_TIMEOUT:-60}

vmm_busybox_initrd "$TMP/initrd.cpio" '#!/bin/busybox sh
/bin/busybox sleep 600'
sock="$TMP/monitor.sock"
ktstr-vmm --accel tcg --kernel "$KTSTR_FIXTURES" --initrd "$TMP/initrd.cpio" --timeout 300 \
    --monitor-socket "$sock" --console "$TMP/console" >"$TMP/events" 2>"$TMP/stderr" &
vmm=$!
vmm_wait_event "$TMP/events" boot "$wait_s" || { kill -9 $vmm; die "no boot event within ${wait_s}s"; }
qemu=$(jq -r 'select(.event=="boot") | .vmm_pid' "$TMP/events")
[ -S "$sock" ] || die "monitor socket $sock missing while running"
[ -d "/proc/$qemu" ] || die "QEMU (pid $qemu) not running after the boot event"
assert_eq "$vmm" "$(awk '{print $4}' "/proc/$qemu/stat")" "QEMU's parent is ktstr-vmm"
[ -n "$(vmm_leftovers $vmm)" ] || die "no process holds the guest-RAM memfds while running (naming changed?)"
sleep 1   # mid-boot: the kernel is decompressing or starting
t0=$(date +%s.%N)
kill -TERM $vmm
run_rc wait $vmm
printf 'TIME teardown after SIGTERM: %.2fs\n' "$(echo "$(date +%s.%N) - $t0" | bc)"
assert_eq 3 "$RC" "exit status after SIGTERM"
assert_eq signal "$(jq -r 'select(.event=="exit") | .reason' "$TMP/events")" "exit event reason"
assert_eq 15 "$(jq -r 'select(.event=="exit") | .signal' "$TMP/events")" "exit event signal"
[ ! -e "/proc/$qemu" ] || die "QEMU (pid $qemu) still exists: $(cat /proc/$qemu/status 2>/dev/null | head -3)"
echo "ok: QEMU pid $qemu is gone"
left=$(vmm_leftovers $vmm)
[ -z "$left" ] || die "processes still hold memfd:ktstr-guest-ram-$vmm-*: $left"
echo "ok: no process holds the run's memfds"
[ ! -e "$sock" ] || die "monitor socket $sock left behind"
echo "ok: monitor socket removed"

# SIGKILL cannot be handled: QEMU must still die with ktstr-vmm (PR_SET_PDEATHSIG).
ktstr-vmm --accel tcg --kernel "$KTSTR_FIXTURES" --initrd "$TMP/initrd.cpio" --timeout 300 \
    --console none >"$TMP/events2" 2>/dev/null &
vmm=$!
vmm_wait_event "$TMP/events2" boot "$wait_s" || { kill -9 $vmm; die "no boot event within ${wait_s}s"; }
qemu=$(jq -r 'select(.event=="boot") | .vmm_pid' "$TMP/events2")
kill -KILL $vmm
run_rc wait $vmm
for ((i = 0; i < 100; i++)); do [ -e "/proc/$qemu" ] || break; sleep 0.1; done
[ ! -e "/proc/$qemu" ] || die "QEMU (pid $qemu) outlived a SIGKILLed ktstr-vmm by 10 s"
echo "ok: QEMU died with the SIGKILLed ktstr-vmm (after $(echo "$i * 0.1" | bc) s)"
left=$(vmm_leftovers $vmm)
[ -z "$left" ] || die "processes still hold memfd:ktstr-guest-ram-$vmm-* after SIGKILL: $left"
echo "ok: no process holds that run's memfds"
