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
run_rc ktstr-vmm --kernel "$KTSTR_FIXTURES" --accel tcg --topology 1n1l2c1t --timeout 120 --console none \
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

# Standard input that just ends: EOT closes the shell, status 0.
run_rc ktstr-vmm --kernel "$KTSTR_FIXTURES" --accel tcg --timeout 120 --console none --shell \
    </dev/null >"$TMP/out2" 2>"$TMP/err2"
assert_eq 0 "$RC" "shell ended by end of input"

for bad in "--exec true" "--initrd /dev/null" "--no-ring"; do
    run_rc ktstr-vmm --kernel "$KTSTR_FIXTURES" --accel tcg --shell $bad </dev/null >/dev/null 2>"$TMP/bad"
    assert_eq 2 "$RC" "--shell $bad refused"
    assert_eq 1 "$(wc -l <"$TMP/bad")" "one error line for --shell $bad"
done
