#!/bin/bash
# ktstr-kconfig on real input: Debian's linux-source-6.12, configured out of tree
# for x86_64 with the kernel's own kconfig tooling.
#   1. apply: defconfig + fragment + olddefconfig; validate reports exactly the
#      aarch64-only options as skipped and nothing critical lost;
#   2. an extra fragment that turns off BPF_JIT (not critical itself, but a
#      dependency of SCHED_CLASS_EXT): apply fails with exit 1 naming both.
# The tarball is unpacked once into a shared cache (scripts/linux-source-tree.sh).
# Slow (make e2e): unpacking took 28-104 s and the three make runs 45-80 s on the
# shared 2-core machine.  tests/e2e/kconfig_fixture_config.sh covers validate on
# a real 6.12 .config within make test.
. "$(dirname "$0")/../lib.sh"
K=ktstr-kconfig
for c in make gcc flex bison bc; do need_cmd $c; done
t0=$(date +%s.%N)
tree=$("$KTSTR_TOP/scripts/linux-source-tree.sh") || skip "linux-source-6.12 not installed (scripts/install-deps.sh)"
secs() { echo "$(date +%s.%N) - $1" | bc; }
echo "tree: $tree (ready in $(secs "$t0") s)"
arm_only="CONFIG_ARM_PMUV3 CONFIG_HW_PERF_EVENTS CONFIG_SERIAL_AMBA_PL011 CONFIG_SERIAL_AMBA_PL011_CONSOLE CONFIG_SERIAL_OF_PLATFORM"

# 1. apply, then validate with and without the tree's Kconfig.
t1=$(date +%s.%N)
$K apply --tree "$tree" --out "$TMP/out" --arch x86_64 --json >"$TMP/apply.json"
echo "apply: $(secs "$t1") s; steps: $(jq -c '[.steps[] | {target, seconds}]' "$TMP/apply.json")"
assert_eq "ktstr.kconfig-apply/1 true true" "$(jq -r '"\(.schema) \(.changed) \(.validation.ok)"' "$TMP/apply.json")" "apply: schema, changed, ok"
assert_eq "$($K hash)" "$(jq -r .kconfig_hash "$TMP/apply.json")" "apply reports the fragment hash"
grep -qx 'CONFIG_SCHED_CLASS_EXT=y' "$TMP/out/.config" || die "no CONFIG_SCHED_CLASS_EXT=y in the configured .config"
t2=$(date +%s.%N)
$K validate --config "$TMP/out/.config" --tree "$tree" --arch x86_64 --json >"$TMP/v-tree.json"
echo "validate --tree: $(secs "$t2") s"
t3=$(date +%s.%N)
$K validate --config "$TMP/out/.config" --arch x86_64 --json >"$TMP/v.json"
echo "validate: $(secs "$t3") s"
for v in v-tree v; do
    assert_eq "$arm_only" "$(jq -r '[.skipped[].option]|sort|join(" ")' "$TMP/$v.json")" "$v: skipped = exactly the aarch64-only options"
    assert_eq "0" "$(jq '.critical_lost|length' "$TMP/$v.json")" "$v: nothing critical lost"
done
# With the tree, ownership comes from Kconfig itself for all but SERIAL_OF_PLATFORM
# (its dependency OF can be enabled on x86 too: only the fragment's tag makes it arm64's).
assert_eq "CONFIG_ARM_PMUV3 CONFIG_HW_PERF_EVENTS CONFIG_SERIAL_AMBA_PL011 CONFIG_SERIAL_AMBA_PL011_CONSOLE" \
    "$(jq -r '[.skipped[] | select(.basis == "kconfig-tree") | .option]|sort|join(" ")' "$TMP/v-tree.json")" "tree-derived skips"
assert_contains "$(jq -r '.skipped[] | select(.option == "CONFIG_SERIAL_OF_PLATFORM") | .reason' "$TMP/v-tree.json")" "OF is off" \
    "SERIAL_OF_PLATFORM skip names its off dependency"
# Every other difference is reported with a cause (options x86 does not let a fragment turn off).
jq -r '.validation.differing[] | "\(.option) \(.status): \(.causes|join("; "))"' "$TMP/apply.json"
[ "$(jq '[.validation.differing[] | select(.causes|length == 0)]|length' "$TMP/apply.json")" = 0 ] ||
    die "a difference without a cause"

# 2. A dependency of a critical option turned off by an extra fragment.
cp -a "$TMP/out" "$TMP/nojit"
printf '# SCHED_CLASS_EXT depends on it\n# CONFIG_BPF_JIT is not set\n' >"$TMP/nojit.kconfig"
t4=$(date +%s.%N)
run_rc $K apply --tree "$tree" --out "$TMP/nojit" --arch x86_64 --extra "$TMP/nojit.kconfig" >"$TMP/nojit.out" 2>"$TMP/nojit.err"
echo "apply --extra nojit: $(secs "$t4") s, exit $RC"
cat "$TMP/nojit.out" "$TMP/nojit.err"
assert_eq 1 "$RC" "apply with BPF_JIT off fails"
assert_contains "$(grep '^CRITICAL' "$TMP/nojit.out")" "CONFIG_SCHED_CLASS_EXT" "names the lost critical option"
assert_contains "$(grep -A3 '^CRITICAL  CONFIG_SCHED_CLASS_EXT' "$TMP/nojit.out")" "BPF_JIT is off" "names the dependency that is off"
assert_contains "$(cat "$TMP/nojit.err")" "CONFIG_SCHED_CLASS_EXT" "error line names it"
$K validate --config "$TMP/nojit/.config" --tree "$tree" --extra "$TMP/nojit.kconfig" --json >"$TMP/nojit.json" || true
assert_eq "CONFIG_SCHED_CLASS_EXT" "$(jq -r '[.critical_lost[].option]|join(" ")' "$TMP/nojit.json")" "critical_lost"
assert_eq "BPF_JIT" "$(jq -r '.critical_lost[0].off_dependencies|join(" ")' "$TMP/nojit.json")" "off_dependencies"

# 3. Bad input against the real tree leaves nothing behind.
printf 'CONFIG_X=maybe\n' >"$TMP/bad.kconfig"
run_rc $K apply --tree "$tree" --out "$TMP/never" --extra "$TMP/bad.kconfig" 2>"$TMP/bad.err"
assert_eq 2 "$RC" "malformed extra: exit 2"
assert_contains "$(cat "$TMP/bad.err")" "bad.kconfig:1: malformed line 'CONFIG_X=maybe'" "malformed extra: message"
[ ! -e "$TMP/never" ] || die "bad input left $TMP/never behind"
echo "total: $(secs "$t0") s"
