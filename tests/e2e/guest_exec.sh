#!/bin/bash
# ktstr-vmm --exec on the fixture kernel (TCG): the guest command's output on stdout, its
# stderr on stderr, its exit status as ours; the agent as /init, busybox for the shell.
source "$(dirname "$0")/lib.sh"
need_fixture
need_cmd qemu-system-x86_64
[ -x /bin/busybox ] || skip "busybox-static not installed"
vmm() { ktstr-vmm --kernel "$KTSTR_FIXTURES/bzImage" --accel tcg --topology 1n1l2c1t --console none --timeout 180 "$@"; }

t0=$(date +%s.%N)
run_rc vmm --events "$TMP/ev1.jsonl" --exec 'cat /proc/cmdline; nproc; echo to-stderr >&2' >"$TMP/out1" 2>"$TMP/err1"
echo "first run: $(echo "$(date +%s.%N) - $t0" | bc) s"
[ "$RC" = 0 ] || { cat "$TMP/err1" >&2; die "exec exited $RC"; }
assert_contains "$(head -n 1 "$TMP/out1")" "KTSTR_SHM_BASE=" "guest /proc/cmdline on stdout"
assert_contains "$(head -n 1 "$TMP/out1")" "rdinit=/init" "the agent booted as /init"
assert_eq 2 "$(tail -n 1 "$TMP/out1")" "nproc in the guest"
assert_eq 2 "$(wc -l < "$TMP/out1")" "stdout has only the command's output"
assert_contains "$(cat "$TMP/err1")" "to-stderr" "guest stderr on stderr"
# the events went to --events, with the exit event last
assert_eq exit "$(tail -n 1 "$TMP/ev1.jsonl" | jq -r .event)" "last event"
assert_eq ring "$(tail -n 1 "$TMP/ev1.jsonl" | jq -r .guest_exit_source)" "exit code came through the ring"
assert_eq 0 "$(tail -n 1 "$TMP/ev1.jsonl" | jq -r .exit_code)" "exit event code"
assert_eq "the guest agent reported exit code 0 and rebooted to end the run" \
    "$(tail -n 1 "$TMP/ev1.jsonl" | jq -r .detail)" "the agent's closing reboot is named as the normal end"

t0=$(date +%s.%N)
run_rc vmm --exec 'exit 7' >"$TMP/out2" 2>"$TMP/err2"
echo "second run: $(echo "$(date +%s.%N) - $t0" | bc) s"
assert_eq 7 "$RC" "exit status of 'exit 7'"
assert_eq 0 "$(wc -c < "$TMP/out2")" "no output"

run_rc vmm --exec true --initrd /dev/null
assert_eq 2 "$RC" "--exec with --initrd is a usage error"
run_rc ktstr-vmm --kernel "$KTSTR_FIXTURES/bzImage" --include /bin/true
assert_eq 2 "$RC" "--include without --exec is a usage error"
