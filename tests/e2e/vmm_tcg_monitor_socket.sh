#!/bin/bash
# ktstr-vmm --monitor-socket (TCG): a client receives the ktstr.layout/1 JSON
# with the guest-RAM memfds (SCM_RIGHTS), maps them and finds the kernel banner
# "Linux version" in guest memory while the guest runs.  Also --json-layout.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/vmm_tcg.inc"
vmm_need_tcg
need_cmd g++
wait_s=${KTSTR_E2E_TIMEOUT:-120}

top=${KTSTR_TOP:-$(cd "$(dirname "$0")/../.." && pwd)}
lib="$KTSTR_BIN/../lib/libktstr.a"
[ -f "$lib" ] || skip "$lib not built"
# Under make check libktstr.a carries ASan/UBSan: the client links with the same flags.
g++ -std=c++20 -O0 ${KTSTR_SANITIZE:-} -I"$top/libktstr/include" -o "$TMP/client" "$top/tests/e2e/vmm_monitor_client.cpp" \
    "$lib" -lpthread -lz || die "building the test client failed"

vmm_busybox_initrd "$TMP/initrd.cpio" '#!/bin/busybox sh
/bin/busybox sleep 600'
sock="$TMP/monitor.sock"
ktstr-vmm --accel tcg --tcg-threads multi --kernel "$KTSTR_FIXTURES" --initrd "$TMP/initrd.cpio" --topology 2n2l1c1t \
    --timeout "$((wait_s + 30))" --monitor-socket "$sock" --json-layout --console "$TMP/console" \
    >"$TMP/events" 2>"$TMP/stderr" &
vmm=$!
trap 'kill $vmm 2>/dev/null || true; rm -rf "$TMP"' EXIT
# The client may connect before the guest starts: it waits for the layout.
run_rc "$TMP/client" "$sock" "Linux version" "$wait_s" >"$TMP/found"
cat "$TMP/found"
assert_eq 0 "$RC" "client found the kernel banner in guest memory"
kill -0 $vmm 2>/dev/null || die "ktstr-vmm ended before the client looked: $(cat "$TMP/events")"
assert_eq tcg "$(jq -r .accel "$TMP/found")" "layout accel"
assert_eq 2 "$(jq -r .fds "$TMP/found")" "one memfd per NUMA node"
assert_eq "$(jq -r 'select(.event=="boot") | .vmm_pid' "$TMP/events")" "$(jq -r .vmm_pid "$TMP/found")" \
    "layout vmm_pid is QEMU's"
assert_eq 2 "$(jq -r '.vcpu_tids | length' "$TMP/found")" "vCPU thread ids"
for tid in $(jq -r '.vcpu_tids[]' "$TMP/found"); do
    assert_contains "$(cat "/proc/$(jq -r .vmm_pid "$TMP/found")/task/$tid/comm")" "/TCG" "thread $tid is a TCG vCPU"
done
layout=$(jq -c 'select(.event=="layout")' "$TMP/events")
assert_eq "ktstr.layout/1" "$(jq -r .layout_schema <<<"$layout")" "--json-layout event"
assert_eq "$(jq -r .shm "$TMP/found")" "$(jq -r .shm.base_pa <<<"$layout")" "shm base in socket and event"
kill -TERM $vmm
run_rc wait $vmm
assert_eq 3 "$RC" "exit status after SIGTERM"
[ ! -e "$sock" ] || die "monitor socket left behind"
echo "ok: socket removed"
