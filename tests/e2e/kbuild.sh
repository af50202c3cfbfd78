#!/bin/bash
# ktstr-kbuild end to end on a fake kernel tree (tests/fixtures/fake-kernel,
# "builds" in milliseconds): build, cache hit, resolve, list, show --verify,
# extra kconfig -> new key, concurrent builds build once, clean --keep, and the
# bad inputs: not a kernel, unwritable cache, missing compiler, a critical
# option that cannot be met, a failing compile.  Each bad input: one error
# line, exit 2 or 3, no half entry left.
source "$(dirname "$0")/lib.sh"
need_cmd make
need_cmd tar
need_cmd jq

FAKE="$KTSTR_TOP/tests/fixtures/fake-kernel"
tar -C "$(dirname "$FAKE")" -czf "$TMP/linux-fake.tar.gz" fake-kernel
export KTSTR_CACHE_DIR="$TMP/cache"
export KTSTR_BUILD_DIR="$TMP/work"
unset KTSTR_KERNEL KTSTR_TEST_KERNEL

# no_half_entry: nothing but valid entries and dot-dirs other than .tmp-*.
no_half_entry() {
    [ -d "$KTSTR_CACHE_DIR" ] || return 0
    if ls -d "$KTSTR_CACHE_DIR"/.tmp-* >/dev/null 2>&1; then die "$1: a .tmp- directory was left behind"; fi
    local bad
    bad=$(ktstr-kbuild list --json | jq -r '.entries[] | select(.error_kind) | .key')
    [ -z "$bad" ] || die "$1: corrupt entry left: $bad"
    echo "ok: $1 left no half entry"
}
# expect_fail CODE PATTERN WHAT CMD...: exit CODE, exactly one error line matching PATTERN.
expect_fail() {
    local code=$1 pat=$2 what=$3
    shift 3
    run_rc "$@" >"$TMP/out" 2>"$TMP/err"
    assert_eq "$code" "$RC" "$what: exit code"
    local n
    n=$(grep -c 'ktstr-kbuild: error:' "$TMP/err" || true)
    assert_eq 1 "$n" "$what: error lines"
    assert_contains "$(grep 'ktstr-kbuild: error:' "$TMP/err")" "$pat" "$what: message"
    [ ! -s "$TMP/out" ] || die "$what: stdout not empty: $(cat "$TMP/out")"
    no_half_entry "$what"
}

# ---- build, then the cache answers ------------------------------------------------
export FAKE_COUNTER="$TMP/builds"
ktstr-kbuild build --tarball "$TMP/linux-fake.tar.gz" --schedulers >"$TMP/k1.json" 2>"$TMP/k1.err"
cat "$TMP/k1.err"
key=$(jq -r .cache_key "$TMP/k1.json")
assert_eq ktstr.kernel/1 "$(jq -r .schema "$TMP/k1.json")" "descriptor schema"
assert_contains "$key" "6.12.0-fake-archive-" "archive cache key"
assert_eq false "$(jq -r .cache_hit "$TMP/k1.json")" "first build is not a hit"
[ -f "$(jq -r .bzimage "$TMP/k1.json")" ] || die "bzimage missing"
[ -f "$(jq -r .vmlinux "$TMP/k1.json")" ] || die "vmlinux missing"
[ -f "$(jq -r .config "$TMP/k1.json")" ] || die "config missing"
[ -x "$(jq -r .schedulers.scx_simple "$TMP/k1.json")" ] || die "scx_simple missing"
assert_contains "$(cat "$TMP/k1.err")" "compiling bzImage and vmlinux with -j" "progress names the step and -j"
assert_eq 1 "$(wc -l <"$FAKE_COUNTER")" "compiled once"
entry="$KTSTR_CACHE_DIR/$key"
for f in logs/build.log logs/configure.log logs/schedulers.log metadata.json; do
    [ -f "$entry/$f" ] || die "entry lacks $f"
done
assert_eq "$(jq -r .ktstr_kconfig_hash "$entry/metadata.json")" "$(jq -r .kconfig_hash "$TMP/k1.json")" "metadata kconfig hash"
assert_eq '["scx_simple"]' "$(jq -c .schedulers "$entry/metadata.json")" "metadata schedulers"
jq -e '.tool_versions.make and .tool_versions.cc and .build_seconds and (.artifacts | length == 4)' \
    "$entry/metadata.json" >/dev/null || die "metadata lacks tool versions, build time or checksums"
[ -z "$(ls "$KTSTR_BUILD_DIR")" ] || die "work directory not removed: $(ls "$KTSTR_BUILD_DIR")"

ktstr-kbuild build --tarball "$TMP/linux-fake.tar.gz" --schedulers >"$TMP/k2.json"
assert_eq true "$(jq -r .cache_hit "$TMP/k2.json")" "second build is a cache hit"
assert_eq "$key" "$(jq -r .cache_key "$TMP/k2.json")" "same key"
assert_eq 1 "$(wc -l <"$FAKE_COUNTER")" "still compiled once"

# ---- resolve / list / show ------------------------------------------------------------
run_rc ktstr-kbuild resolve --no-host >"$TMP/r.json" 2>"$TMP/r.err"
assert_eq 0 "$RC" "resolve exit"
assert_eq "$key" "$(jq -r .cache_key "$TMP/r.json")" "resolve picks the cache entry"
assert_contains "$(cat "$TMP/r.err")" "KTSTR_KERNEL: unset" "resolve reports its steps"
KTSTR_KERNEL="$key" ktstr-kbuild resolve --no-host 2>/dev/null | jq -e ".cache_key == \"$key\"" >/dev/null ||
    die "KTSTR_KERNEL=key"
expect_fail 2 "not found" "KTSTR_KERNEL miss" env KTSTR_KERNEL=no-such-key ktstr-kbuild resolve --no-host
assert_contains "$(ktstr-kbuild list 2>/dev/null)" "$key" "list shows the entry"
ktstr-kbuild list --json | jq -e '.schema == "ktstr.kernel-list/1" and .entries[0].kconfig_status == "matches"' \
    >/dev/null || die "list --json"
run_rc ktstr-kbuild show "$key" --verify >"$TMP/show.json" 2>/dev/null
assert_eq 0 "$RC" "show --verify of an intact entry"
printf 'X' | dd of="$entry/config" bs=1 seek=3 conv=notrunc status=none
run_rc ktstr-kbuild show "$key" --verify >/dev/null 2>"$TMP/verify.err"
assert_eq 1 "$RC" "show --verify finds the changed config"
assert_contains "$(cat "$TMP/verify.err")" "checksum mismatch" "verify names the mismatch"

# ---- an extra fragment is a new key; concurrent builds of it build once ------------------
printf 'CONFIG_SCHED_CORE=y\n' >"$TMP/extra.kconfig"
FAKE_BUILD_SECONDS=2 ktstr-kbuild build --tarball "$TMP/linux-fake.tar.gz" --extra-kconfig "$TMP/extra.kconfig" \
    >"$TMP/c1.json" 2>"$TMP/c1.err" &
p1=$!
FAKE_BUILD_SECONDS=2 ktstr-kbuild build --tarball "$TMP/linux-fake.tar.gz" --extra-kconfig "$TMP/extra.kconfig" \
    >"$TMP/c2.json" 2>"$TMP/c2.err" &
p2=$!
wait $p1 || die "concurrent build 1 failed: $(cat "$TMP/c1.err")"
wait $p2 || die "concurrent build 2 failed: $(cat "$TMP/c2.err")"
key2=$(jq -r .cache_key "$TMP/c1.json")
[ "$key2" != "$key" ] || die "an extra fragment must change the key"
assert_eq "$key2" "$(jq -r .cache_key "$TMP/c2.json")" "both concurrent builds give the same key"
assert_eq 2 "$(wc -l <"$FAKE_COUNTER")" "two concurrent builds of one key compiled once"
assert_eq "false true" "$(jq -r .cache_hit "$TMP/c1.json" "$TMP/c2.json" | sort | xargs)" "one built, one waited and hit"

# ---- bad input ---------------------------------------------------------------------------
mkdir -p "$TMP/notkernel" && echo "all:" >"$TMP/notkernel/Makefile"
expect_fail 2 "not a kernel source tree (missing Makefile or Kconfig)" "not a kernel tree" \
    ktstr-kbuild build --source "$TMP/notkernel"
echo "not a tar" >"$TMP/bad.tar.xz"
expect_fail 2 "not a readable tar archive" "not an archive" ktstr-kbuild build --tarball "$TMP/bad.tar.xz"
touch "$TMP/plainfile"
expect_fail 3 "not writable" "unwritable cache" \
    env KTSTR_CACHE_DIR="$TMP/plainfile/cache" ktstr-kbuild build --tarball "$TMP/linux-fake.tar.gz" --force
expect_fail 3 "C compiler 'no-such-cc' not found" "missing compiler (--cc)" \
    ktstr-kbuild build --tarball "$TMP/linux-fake.tar.gz" --cc no-such-cc --force
# A PATH with every tool but a compiler.
mkdir -p "$TMP/bin"
for t in make flex bison bc perl tar gzip xz sed cksum sleep printf mkdir cat sh git rm mv chmod grep; do
    p=$(command -v $t 2>/dev/null) && ln -sf "$p" "$TMP/bin/$t"
done
expect_fail 3 "C compiler 'gcc' not found in PATH" "missing compiler (PATH)" \
    env PATH="$TMP/bin" "$KTSTR_BIN/ktstr-kbuild" build --tarball "$TMP/linux-fake.tar.gz" --force
# --schedulers with clang-16 but no ld.lld-16: refused before anything compiles.
mkdir -p "$TMP/llvmbin"
for t in clang-16 llvm-ar-16 llvm-strip-16 gcc cc; do
    p=$(command -v $t 2>/dev/null) && ln -sf "$p" "$TMP/llvmbin/$t"
done
if [ -e "$TMP/llvmbin/clang-16" ]; then
    expect_fail 3 "needs ld.lld-16 beside clang >= 16" "schedulers without ld.lld" \
        env PATH="$TMP/llvmbin:$TMP/bin" "$KTSTR_BIN/ktstr-kbuild" build --tarball "$TMP/linux-fake.tar.gz" \
        --schedulers --force
fi
expect_fail 3 "CONFIG_DEBUG_INFO_BTF not set" "critical option that cannot be met" \
    env FAKE_DROP=DEBUG_INFO_BTF ktstr-kbuild build --tarball "$TMP/linux-fake.tar.gz" --force
printf '# CONFIG_BPF_SYSCALL is not set\n' >"$TMP/nobpf.kconfig"
expect_fail 2 "BPF_SYSCALL" "extra fragment disabling a critical option" \
    ktstr-kbuild build --tarball "$TMP/linux-fake.tar.gz" --extra-kconfig "$TMP/nobpf.kconfig"
run_rc env FAKE_FAIL=1 ktstr-kbuild build --tarball "$TMP/linux-fake.tar.gz" --force >/dev/null 2>"$TMP/fail.err"
assert_eq 3 "$RC" "failing compile: exit code"
assert_contains "$(cat "$TMP/fail.err")" "fake compiler failure" "failing compile: the log tail is shown"
assert_contains "$(grep 'error:' "$TMP/fail.err" | tail -1)" "logs/$key/build.log" "failing compile: names the log"
no_half_entry "failing compile"
# The earlier good entry survived every failed --force rebuild.
ktstr-kbuild list --json | jq -e "[.entries[] | select(.key == \"$key\" and .error == null)] | length == 1" >/dev/null ||
    die "the good entry was lost"

# ---- clean ---------------------------------------------------------------------------------
expect_fail 2 "pass --force" "clean without a terminal" ktstr-kbuild clean --keep 1 </dev/null
mkdir -p "$KTSTR_CACHE_DIR/corrupt-entry"
run_rc ktstr-kbuild clean --keep 1 --force
assert_eq 0 "$RC" "clean --keep 1"
assert_eq 1 "$(ktstr-kbuild list --json | jq '.entries | length')" "one entry left"
echo "PASS"
