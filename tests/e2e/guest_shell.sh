#!/bin/bash
# ktstr-vmm --shell on the fixture kernel (TCG): commands on standard input reach
# the guest's shell (none is lost although they are all sent at once, before the
# guest has booted), its output comes back, and the shell's status is ours.
# With --include the file is on the shell's PATH.  Refusals: --shell with --exec,
# --initrd or --no-ring (exit 2, one line).
source "$(dirname "$0")/lib.sh"
need_fixture
need_cmd qemu-system-x86_64
[ -x /bin/busybox ] || skip "busybox-static not installed (scripts/install-deps.sh)"

printf '#!/bin/sh\necho included-script-ran\n' >"$TMP/hello.sh"
chmod +x "$TMP/hello.sh"
t0=$(date +%s.%N)
# --accel auto: --shell picks TCG without probing KVM (only TCG forwards input to COM2).
run_rc ktstr-vmm --kernel "$KTSTR_FIXTURES" --accel auto --topology 1n1l2c1t --timeout 120 --console none \
    --shell --include "$TMP/hello.sh" >"$TMP/out" 2>"$TMP/err" <<'IN'
echo guest-cpus=$(nproc)
hello.sh
cat /proc/sys/kernel/ostype
exit 7
IN
echo "shell session: $(echo "$(date +%s.%N) - $t0" | bc) s, exit $RC"
tr -d '\r' <"$TMP/out" | tail -n 12
assert_eq 7 "$RC" "exit status = the shell's"
out=$(tr -d '\r' <"$TMP/out")
assert_contains "$out" $'\nguest-cpus=2' "nproc ran in the guest (2 CPUs)"
assert_contains "$out" $'\nincluded-script-ran' "--include put the script on PATH"
assert_contains "$out" $'\nLinux' "the guest kernel answered"
assert_contains "$(cat "$TMP/err")" "only the TCG accelerator forwards" "auto chose TCG for --shell, saying why"
grep -q 'KTSTR_' <<<"$out" && die "agent sentinels leaked onto the shell's terminal: $(grep KTSTR_ <<<"$out")"
echo "ok: no agent sentinel on the shell's output"

# Much more input than the serial line takes at once (about 190 KiB, echoed back
# as it is typed): the host neither blocks nor loses any of it.  The guest tty is
# in canonical mode, so head reads exactly its lines and the shell the exit after.
{ echo 'head -n 3000 | wc -lc; exit 3'
  for i in $(seq 1 3000); do printf 'line %05d %s\n' "$i" 0123456789012345678901234567890123456789012345678901; done
} >"$TMP/big.in"
t0=$(date +%s.%N)
run_rc ktstr-vmm --kernel "$KTSTR_FIXTURES" --accel tcg --timeout 120 --console none --shell \
    <"$TMP/big.in" >"$TMP/big.out" 2>"$TMP/big.err"
echo "bulk input session ($(wc -c <"$TMP/big.in") bytes): $(echo "$(date +%s.%N) - $t0" | bc) s, exit $RC"
assert_eq 3 "$RC" "bulk input: the shell ran to its exit"
want=$(tail -n +2 "$TMP/big.in" | wc -lc | awk '{print $1, $2}')
assert_contains "$(tr -d '\r' <"$TMP/big.out" | awk 'NF == 2 && $1 ~ /^[0-9]+$/ && $2 ~ /^[0-9]+$/ {print $1, $2}')" "$want" \
    "wc in the guest counted every line and byte ($want)"

# Commands without an exit, then end of input: the shell still ends (with the
# last command's status) although the first EOT may arrive while it runs them.
run_rc ktstr-vmm --kernel "$KTSTR_FIXTURES" --accel tcg --topology 2n2l2c1t --timeout 90 --console none --shell \
    >"$TMP/eof.out" 2>"$TMP/eof.err" <<'IN'
cat /sys/devices/system/node/online; echo eof-test-$((1 + 1)); false
IN
assert_eq 1 "$RC" "input ending without exit: the shell ended with false's status"
assert_contains "$(tr -d '\r' <"$TMP/eof.out")" $'\neof-test-2' "the commands ran before the end of input"

# Standard input that just ends: EOT closes the shell, status 0.
run_rc ktstr-vmm --kernel "$KTSTR_FIXTURES" --accel tcg --timeout 120 --console none --shell \
    </dev/null >"$TMP/out2" 2>"$TMP/err2"
assert_eq 0 "$RC" "shell ended by end of input"

for bad in "--exec true" "--initrd /dev/null" "--no-ring" "--shm-mb 0"; do
    run_rc ktstr-vmm --kernel "$KTSTR_FIXTURES" --accel tcg --shell $bad </dev/null >/dev/null 2>"$TMP/bad"
    assert_eq 2 "$RC" "--shell $bad refused"
    assert_eq 1 "$(wc -l <"$TMP/bad")" "one error line for --shell $bad"
done
