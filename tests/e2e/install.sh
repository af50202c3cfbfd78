#!/bin/bash
# make install PREFIX=... DESTDIR=...: the tools, the porcelain, the guest agent in
# libexec, the static and shared library, the headers, the pkg-config file and the
# man pages land where they should; a program builds against the installed
# library through pkg-config and runs; the installed tools work from there (the
# porcelain finds its tools beside itself, ktstr-vmm finds its agent in libexec).
source "$(dirname "$0")/lib.sh"
need_cmd make
need_cmd pkg-config
need_cmd g++
build=$(basename "$(dirname "$KTSTR_BIN")")
prefix=/opt/ktstr-test
root="$TMP/root"
# Everything is built already (make test depends on all): install only copies.
make --no-print-directory -C "$KTSTR_TOP" BUILD="$build" SANITIZE="${KTSTR_SANITIZE:-}" \
    PREFIX="$prefix" DESTDIR="$root" install >"$TMP/install.log" 2>&1 ||
    { cat "$TMP/install.log"; die "make install failed"; }
p="$root$prefix"
for f in bin/ktstr bin/ktstr-kconfig bin/ktstr-kbuild bin/ktstr-vmm bin/ktstr-monitor bin/ktstr-report \
         bin/ktstr-initramfs libexec/ktstr/ktstr-guest lib/libktstr.a lib/libktstr.so.0.1.0 lib/libktstr.so \
         include/ktstr/util.h include/ktstr/kconfig.h lib/pkgconfig/ktstr.pc share/man/man1/ktstr.1 \
         share/man/man1/ktstr-vmm.1 share/man/man5/ktstr-formats.5 share/man/man7/ktstr.7; do
    [ -e "$p/$f" ] || die "make install did not install $f"
done
[ -e "$root/usr" ] && die "something was installed outside PREFIX: $(find "$root/usr" | head -3)"
echo "ok: tools, agent, libraries, headers, pkg-config file and man pages under DESTDIR/PREFIX"
assert_eq "prefix=$prefix" "$(head -n 1 "$p/lib/pkgconfig/ktstr.pc")" "pkg-config prefix is PREFIX, not DESTDIR"

# A program against the installed library, through pkg-config.
cat >"$TMP/hash.cpp" <<'CPP'
#include <ktstr/kconfig.h>
#include <iostream>
int main() {
    std::cout << ktstr::kconfig::fragment_hash(ktstr::kconfig::load_fragments({})) << "\n";
}
CPP
flags=$(PKG_CONFIG_PATH="$p/lib/pkgconfig" pkg-config --define-variable=prefix="$p" --cflags --libs ktstr)
# shellcheck disable=SC2086
g++ -std=c++20 ${KTSTR_SANITIZE:-} -o "$TMP/hash" "$TMP/hash.cpp" $flags $(pkg-config --libs libbpf libelf liblz4 zlib) ||
    die "building against the installed library failed (flags: $flags)"
assert_eq "$("$p/bin/ktstr-kconfig" hash)" "$(LD_LIBRARY_PATH="$p/lib" "$TMP/hash")" \
    "a program linked with the installed libktstr computes the fragment hash"

# The installed tools, run from the installed tree with a PATH that holds neither
# the build tree nor the installed bin directory.
clean_path=/usr/sbin:/usr/bin:/sbin:/bin
assert_contains "$(env PATH=$clean_path "$p/bin/ktstr" --version)" "ktstr 0.1.0" "installed porcelain finds its tools"
need_cmd jq
assert_eq 16 "$(cd / && env PATH=$clean_path "$p/bin/ktstr" gauntlet --scheduler eevdf,scx_simple \
    --scenario steady,cpuset_apply --matrix-json | jq '.cells | length')" "installed porcelain runs"
if command -v man >/dev/null; then
    grep -q ktstr-report <<<"$(man -l "$p/share/man/man1/ktstr-report.1" 2>/dev/null)" || die "installed man page does not render"
    echo "ok: installed man page renders"
fi
if [ -n "$KTSTR_FIXTURES" ] && [ -f "$KTSTR_FIXTURES/bzImage" ] && command -v qemu-system-x86_64 >/dev/null; then
    out=$(cd / && env PATH=$clean_path "$p/bin/ktstr-vmm" --kernel "$KTSTR_FIXTURES" --accel tcg --timeout 120 --console none \
        --exec 'echo agent-from-libexec')
    assert_eq agent-from-libexec "$out" "installed ktstr-vmm boots its agent from libexec/ktstr"
fi
