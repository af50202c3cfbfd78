#!/bin/bash
# The real thing: ktstr-kbuild builds Debian's linux-source-6.12 tarball with the
# ktstr fragment and the tools/sched_ext schedulers (tens of minutes on a
# 2-CPU machine), a second build returns from the cache, and the kernel boots
# through ktstr-vmm (TCG) where scx_simple loads and unloads.
#
# The build goes to the normal kernel cache (KTSTR_CACHE_DIR, else
# ~/.cache/ktstr/kernels) so later runs and other tools reuse it; when the
# entry is already there the build time recorded in its metadata is printed.
# KTSTR_E2E_REBUILD=1 forces a fresh build.  KTSTR_LINUX_TARBALL picks another
# archive.  KTSTR_E2E_TIMEOUT bounds the boot (default 300 s).
source "$(dirname "$0")/../lib.sh"
tarball=${KTSTR_LINUX_TARBALL:-/usr/src/linux-source-6.12.tar.xz}
[ -f "$tarball" ] || skip "$tarball not found (apt-get install linux-source-6.12)"
need_cmd qemu-system-x86_64
need_cmd cpio
need_cmd jq
[ -x /bin/busybox ] || skip "busybox-static not installed (scripts/install-deps.sh)"
timeout_s=${KTSTR_E2E_TIMEOUT:-300}
force=()
[ "${KTSTR_E2E_REBUILD:-0}" = 1 ] && force=(--force)

# ---- build (or find) ------------------------------------------------------------------
t0=$(date +%s.%N)
ktstr-kbuild build --tarball "$tarball" --schedulers "${force[@]}" >"$TMP/kernel.json"
build_s=$(echo "$(date +%s.%N) - $t0" | bc)
key=$(jq -r .cache_key "$TMP/kernel.json")
dir=$(jq -r .dir "$TMP/kernel.json")
assert_contains "$key" "-archive-" "archive cache key"
if [ "$(jq -r .cache_hit "$TMP/kernel.json")" = true ]; then
    printf 'TIME build: already cached as %s (built %s in %.0f s per its metadata)\n' "$key" \
        "$(jq -r .built_at "$dir/metadata.json")" "$(jq -r .build_seconds "$dir/metadata.json")"
else
    printf 'TIME build: %.0f s wall (%s)\n' "$build_s" "$key"
fi
jq . "$dir/metadata.json" | grep -E '"(version|ktstr_kconfig_hash|vmlinux_stripped|build_seconds|cc|clang|pahole)"' || true
for s in scx_simple scx_qmap scx_central scx_flatcg; do
    [ -x "$(jq -r ".schedulers.$s" "$TMP/kernel.json")" ] || die "scheduler $s missing from the entry"
done
echo "ok: bzImage, vmlinux, config and 4 schedulers in $dir"

# ---- the cache answers the same input ---------------------------------------------------
t1=$(date +%s%N)
ktstr-kbuild build --tarball "$tarball" --schedulers >"$TMP/again.json"
t2=$(date +%s%N)
assert_eq true "$(jq -r .cache_hit "$TMP/again.json")" "second build is a cache hit"
assert_eq "$key" "$(jq -r .cache_key "$TMP/again.json")" "same key"
echo "TIME second build (cache hit): $(((t2 - t1) / 1000000)) ms"

# ---- boot it through ktstr-vmm (TCG) and load scx_simple -------------------------------------
scx=$(jq -r .schedulers.scx_simple "$TMP/kernel.json")
mkdir -p "$TMP/root/bin" "$TMP/root/lib64" "$TMP/root/lib/x86_64-linux-gnu"
cp /bin/busybox "$TMP/root/bin/busybox"
cp "$scx" "$TMP/root/bin/scx_simple"
# The scheduler is dynamically linked: bring its DT_NEEDED closure.
for lib in $(ldd "$scx" | grep -o '/[^ ]*'); do
    mkdir -p "$TMP/root$(dirname "$lib")"
    cp -L "$lib" "$TMP/root$lib"
done
cat >"$TMP/root/init" <<'INIT'
#!/bin/busybox sh
B=/bin/busybox
$B mkdir -p /proc /sys /dev
$B mount -t proc proc /proc
$B mount -t sysfs sys /sys
$B mount -t devtmpfs dev /dev 2>/dev/null
echo "SCX before=$($B cat /sys/kernel/sched_ext/state)"
/bin/scx_simple >/scx.log 2>&1 &
pid=$!
i=0
while [ $i -lt 60 ] && [ "$($B cat /sys/kernel/sched_ext/state)" != enabled ]; do $B sleep 0.5; i=$((i + 1)); done
echo "SCX loaded=$($B cat /sys/kernel/sched_ext/state) ops=$($B cat /sys/kernel/sched_ext/root/ops 2>/dev/null)"
$B sleep 2
kill -INT $pid
wait $pid
echo "SCX exit=$? after=$($B cat /sys/kernel/sched_ext/state)"
$B sed 's/^/SCXLOG /' /scx.log | $B tail -n 5
$B poweroff -f
INIT
chmod 755 "$TMP/root/init"
(cd "$TMP/root" && find . | cpio -o -H newc --quiet >"$TMP/initrd.cpio")
t3=$(date +%s.%N)
run_rc ktstr-vmm --accel tcg --kernel "$TMP/kernel.json" --initrd "$TMP/initrd.cpio" --topology 1n1l2c1t \
    --memory-mb 1024 --timeout "$timeout_s" --console "$TMP/console" >"$TMP/vmm.jsonl"
boot_s=$(echo "$(date +%s.%N) - $t3" | bc)
tr -d '\r' <"$TMP/console" | grep -E '^SCX' || true
[ "$RC" -eq 0 ] || { tail -n 40 "$TMP/console" >&2; cat "$TMP/vmm.jsonl" >&2; die "ktstr-vmm exited $RC"; }
con=$(tr -d '\r' <"$TMP/console")
assert_contains "$con" "SCX before=disabled" "sched_ext present and idle before"
assert_contains "$con" "SCX loaded=enabled ops=simple" "scx_simple loaded"
assert_contains "$con" "after=disabled" "scx_simple unloaded cleanly"
printf 'TIME TCG boot + scx_simple run: %.1f s\n' "$boot_s"
echo PASS
