#!/bin/bash
# --include the fixture's scx_simple (dynamically linked: the initramfs carries its
# libelf/libz/libc closure and the ELF interpreter) and start it with --exec:
# /sys/kernel/sched_ext/state reads "enabled" inside the guest.  The agent ends the job's
# process group (scx_simple with it) before it reports and resets the VM.
source "$(dirname "$0")/lib.sh"
need_fixture
need_cmd qemu-system-x86_64
[ -x /bin/busybox ] || skip "busybox-static not installed"
scx="$KTSTR_FIXTURES/sched_ext/scx_simple"
[ -x "$scx" ] || skip "fixture has no sched_ext/scx_simple"
cmd='scx_simple >/tmp/scx.log 2>&1 & pid=$!
for i in $(seq 100); do [ "$(cat /sys/kernel/sched_ext/state)" = enabled ] && break; sleep 0.1; done
echo "state=$(cat /sys/kernel/sched_ext/state)"
echo "ops=$(cat /sys/kernel/sched_ext/root/ops 2>/dev/null)"'
t0=$(date +%s.%N)
run_rc ktstr-vmm --kernel "$KTSTR_FIXTURES/bzImage" --accel tcg --topology 1n1l2c1t --console "$TMP/console" --timeout 180 \
    --cmdline loglevel=4 --include "$scx" --exec "$cmd" >"$TMP/out" 2>"$TMP/err"
echo "run: $(echo "$(date +%s.%N) - $t0" | bc) s"
cat "$TMP/out"
[ "$RC" = 0 ] || { tail -n 20 "$TMP/err" "$TMP/console" >&2; die "exited $RC"; }
assert_contains "$(cat "$TMP/out")" "state=enabled" "sched_ext enabled by the included scx_simple"
assert_contains "$(cat "$TMP/out")" "ops=simple" "scx_simple is the attached scheduler"
