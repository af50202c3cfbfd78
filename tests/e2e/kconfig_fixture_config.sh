#!/bin/bash
# ktstr-kconfig validate on a real Linux 6.12 .config (the fixture kernel's,
# configured from Debian's linux-source-6.12 with this fragment's directives):
# exactly the aarch64-only options are skipped, nothing critical is lost; with
# BTF dropped and pahole missing, validate fails naming both and the cause.
. "$(dirname "$0")/lib.sh"
need_fixture
config="$KTSTR_FIXTURES/config"
[ -f "$config" ] || skip "no config in $KTSTR_FIXTURES"
K=ktstr-kconfig
$K validate --config "$config" --arch x86_64 --json >"$TMP/v.json" 2>"$TMP/v.err"
n=$(jq '.differing | length' "$TMP/v.json")
if [ "$n" -gt 0 ]; then   # without --tree the cause is unknown: say where to find it
    assert_contains "$(cat "$TMP/v.err")" "$n option" "the differences are counted on stderr"
    assert_contains "$(cat "$TMP/v.err")" "--tree SRC names the cause" "and the way to their cause"
fi
assert_eq "CONFIG_ARM_PMUV3 CONFIG_HW_PERF_EVENTS CONFIG_SERIAL_AMBA_PL011 CONFIG_SERIAL_AMBA_PL011_CONSOLE CONFIG_SERIAL_OF_PLATFORM" \
    "$(jq -r '[.skipped[].option]|sort|join(" ")' "$TMP/v.json")" "skipped = exactly the aarch64-only options"
assert_eq "true 0" "$(jq -r '"\(.ok) \(.critical_lost|length)"' "$TMP/v.json")" "nothing critical lost"
jq -r '.differing[] | "differs: \(.option) \(.status)"' "$TMP/v.json"

# The same kernel configured without pahole: Kconfig drops DEBUG_INFO_BTF and with it SCHED_CLASS_EXT.
sed -e '/^CONFIG_DEBUG_INFO_BTF=y/d' -e '/^CONFIG_SCHED_CLASS_EXT=y/d' \
    -e 's/^CONFIG_PAHOLE_VERSION=.*/CONFIG_PAHOLE_VERSION=0/' "$config" >"$TMP/nopahole.config"
run_rc $K validate --config "$TMP/nopahole.config" --arch x86_64 >"$TMP/out" 2>"$TMP/err"
cat "$TMP/out" "$TMP/err"
assert_eq 1 "$RC" "validate exit code"
assert_contains "$(grep -A4 '^CRITICAL  CONFIG_SCHED_CLASS_EXT' "$TMP/out")" "DEBUG_INFO_BTF is off" "SCHED_CLASS_EXT: names DEBUG_INFO_BTF"
assert_contains "$(grep -A4 '^CRITICAL  CONFIG_DEBUG_INFO_BTF' "$TMP/out")" "PAHOLE_VERSION >= 116 is false (PAHOLE_VERSION=0)" "DEBUG_INFO_BTF: names pahole's version"
assert_contains "$(cat "$TMP/out")" "install dwarves" "says what to install"
