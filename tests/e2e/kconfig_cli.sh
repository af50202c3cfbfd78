#!/bin/bash
# ktstr-kconfig without a kernel tree: emit, hash, --json, --help/--version, and
# bad input (one clear line, exit 2, nothing left behind).
. "$(dirname "$0")/lib.sh"
K=ktstr-kconfig

# emit is the fragment byte for byte; hash is its CRC-32.
$K emit >"$TMP/emitted"
cmp "$TMP/emitted" "$KTSTR_TOP/kconfig/ktstr.kconfig" || die "emit differs from kconfig/ktstr.kconfig"
echo "ok: emit is byte for byte"
crc=$(gzip -c <"$TMP/emitted" | tail -c8 | od -An -tx4 -N4 | tr -d ' ')   # gzip's trailer holds the CRC-32
assert_eq "$crc" "$($K hash)" "hash = CRC-32 of the fragment"

# Extras: appended in order (newline added where missing), hashed as a whole, order matters.
printf 'CONFIG_A=y' >"$TMP/a.kconfig"
printf '# CONFIG_B is not set\n' >"$TMP/b.kconfig"
$K emit --extra "$TMP/a.kconfig" --extra-kconfig "$TMP/b.kconfig" >"$TMP/eff"
{ cat "$KTSTR_TOP/kconfig/ktstr.kconfig" "$TMP/a.kconfig"; echo; cat "$TMP/b.kconfig"; } | cmp - "$TMP/eff" ||
    die "effective fragment is not base + a + newline + b"
echo "ok: effective fragment concatenation"
ab=$($K hash --extra "$TMP/a.kconfig" --extra "$TMP/b.kconfig")
ba=$($K hash --extra "$TMP/b.kconfig" --extra "$TMP/a.kconfig")
[ "$ab" != "$ba" ] || die "hash ignores the order of extras"
[[ "$ab" =~ ^[0-9a-f]{8}$ ]] || die "hash '$ab' is not 8 lowercase hex digits"
echo "ok: extras change the hash, order matters"

# --json on every command.
assert_eq "ktstr.kconfig-hash/1 $ab" "$($K hash --json --extra "$TMP/a.kconfig" --extra "$TMP/b.kconfig" | jq -r '.schema + " " + .kconfig_hash')" "hash --json"
assert_eq "ktstr.kconfig-emit/1 3" "$($K emit --json --extra "$TMP/a.kconfig" --extra "$TMP/b.kconfig" | jq -r '.schema + " " + (.fragments|length|tostring)')" "emit --json"
$K emit --json | jq -j .text | cmp - "$KTSTR_TOP/kconfig/ktstr.kconfig" || die "emit --json text differs"

# validate on a hand-made .config: a lost critical option fails (exit 1) and names the cause.
$K emit | grep -E '^CONFIG_' | grep -v -e SCHED_CLASS_EXT -e DEBUG_INFO_BTF -e HW_PERF_EVENTS -e ARM_PMUV3 -e SERIAL_OF_PLATFORM -e PL011 >"$TMP/final.config"
echo "CONFIG_PAHOLE_VERSION=0" >>"$TMP/final.config"
run_rc $K validate --config "$TMP/final.config" --arch x86_64 --json >"$TMP/v.json" 2>"$TMP/v.err"
assert_eq 1 "$RC" "validate exit code with lost critical options"
assert_eq "ktstr.kconfig-validate/1" "$(jq -r .schema "$TMP/v.json")" "validate --json schema"
assert_eq "CONFIG_DEBUG_INFO_BTF CONFIG_SCHED_CLASS_EXT" "$(jq -r '[.critical_lost[].option]|sort|join(" ")' "$TMP/v.json")" "critical_lost"
assert_contains "$(jq -r '.critical_lost[].causes[]' "$TMP/v.json")" "pahole was missing" "pahole named as the cause"
assert_contains "$(cat "$TMP/v.err")" "critical option(s) lost" "error line on stderr"
assert_eq "CONFIG_ARM_PMUV3 CONFIG_HW_PERF_EVENTS CONFIG_SERIAL_AMBA_PL011 CONFIG_SERIAL_AMBA_PL011_CONSOLE CONFIG_SERIAL_OF_PLATFORM" \
    "$(jq -r '[.skipped[].option]|sort|join(" ")' "$TMP/v.json")" "aarch64-only options skipped on x86_64"

# Bad input: one line, exit 2.
bad() { # bad WHAT NEEDLE CMD...
    local what=$1 needle=$2; shift 2
    run_rc "$@" >"$TMP/out" 2>"$TMP/err"
    assert_eq 2 "$RC" "$what: exit code"
    assert_eq 1 "$(wc -l <"$TMP/err")" "$what: one line on stderr"
    assert_contains "$(cat "$TMP/err")" "$needle" "$what: message"
    [ ! -s "$TMP/out" ] || die "$what: wrote to stdout: $(cat "$TMP/out")"
}
bad "missing .config" "/nonexistent/.config" $K validate --config /nonexistent/.config
bad "missing extra" "/nonexistent/x.kconfig" $K hash --extra /nonexistent/x.kconfig
printf 'CONFIG_OK=y\nCONFIG_BROKEN\n' >"$TMP/bad.config"
bad "malformed line" "bad.config:2: malformed line 'CONFIG_BROKEN'" $K validate --config "$TMP/bad.config"
bad "unknown arch" "unknown architecture 'sparc64'" $K validate --config "$TMP/final.config" --arch sparc64
bad "unknown command" "unknown command 'frobnicate'" $K frobnicate
bad "missing --tree" "--tree DIR is required" $K apply
printf '# CONFIG_CPUSETS is not set\n' >"$TMP/nocpuset.kconfig"
bad "critical disable" "nocpuset.kconfig:1: extra fragment sets critical option CONFIG_CPUSETS" \
    $K apply --tree /nonexistent --out "$TMP/o1" --extra "$TMP/nocpuset.kconfig"
bad "unreadable tree" "/nonexistent-tree: not a directory" $K apply --tree /nonexistent-tree --out "$TMP/o2"
mkdir -p "$TMP/notakernel"
bad "not a kernel tree" "not a kernel source tree" $K apply --tree "$TMP/notakernel" --out "$TMP/o3"
bad "apply unknown arch" "unknown architecture 'mips'" $K apply --tree "$TMP/notakernel" --out "$TMP/o4" --arch mips
for o in o1 o2 o3 o4; do [ ! -e "$TMP/$o" ] || die "bad input left $TMP/$o behind"; done
echo "ok: no output directory left behind"

# --help, --version, man page agree on the commands.
grep -q -- '--extra-kconfig' <<<"$($K --help)" || die "--help lacks --extra-kconfig"
assert_contains "$($K --version)" "ktstr-kconfig " "--version"
for verb in emit hash apply validate; do
    grep -q "^\.B $verb\|^\.SS $verb\|\\\\fB$verb\\\\fR" "$KTSTR_TOP/man/man1/ktstr-kconfig.1" || die "man page lacks $verb"
done
echo "ok: man page lists every command"
