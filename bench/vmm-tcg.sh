#!/bin/bash
# Boot-to-init under TCG, side by side: ktstr-vmm --accel tcg against the plain
# QEMU command with the same kernel (fixture bzImage) and initramfs (busybox
# /init that powers off at once), 2 vCPUs, 512 MiB.  Each figure is the wall
# time of the whole command, start to exit after the guest's power-off; runs
# alternate between the two so host load hits both alike.
#   KTSTR_BENCH_RUNS (default 5), KTSTR_BENCH_TIMEOUT (seconds per boot, default 120)
# Prints: BENCH vmm-tcg-boot-2cpu <median> s qemu-plain-boot-2cpu <median> <ratio> target <=0.8
set -euo pipefail
runs=${KTSTR_BENCH_RUNS:-5}
limit=${KTSTR_BENCH_TIMEOUT:-120}
kernel="${KTSTR_FIXTURES:-}/bzImage"
[ -f "$kernel" ] || { echo "skip: fixture kernel not found (KTSTR_FIXTURES)" >&2; exit 0; }
command -v qemu-system-x86_64 >/dev/null || { echo "skip: qemu-system-x86_64 not installed" >&2; exit 0; }
tmp=$(mktemp -d /tmp/ktstr-bench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

mkdir -p "$tmp/root/bin"
cp /bin/busybox "$tmp/root/bin/"
printf '#!/bin/busybox sh\necho KTSTR_BENCH_INIT\n/bin/busybox poweroff -f\n' >"$tmp/root/init"
chmod 755 "$tmp/root/init"
(cd "$tmp/root" && find . | cpio -o -H newc --quiet >"$tmp/initrd")

ours() {
    ktstr-vmm --accel tcg --kernel "$kernel" --initrd "$tmp/initrd" --topology 1n1l2c1t --memory-mb 512 \
        --timeout "$limit" --console "$tmp/console" >"$tmp/events" 2>/dev/null
}
plain() {
    timeout "$limit" qemu-system-x86_64 -accel tcg -cpu max -m 512 -smp 2 -kernel "$kernel" \
        -initrd "$tmp/initrd" -append "console=ttyS0 panic=-1 rdinit=/init" \
        -nographic -no-reboot >"$tmp/console" 2>&1 </dev/null
}
# timed NAME: run it, check the init ran, append the seconds to $tmp/NAME.times
timed() {
    local t0 t1
    rm -f "$tmp/console"
    t0=$(date +%s.%N)
    if "$1" && grep -q KTSTR_BENCH_INIT "$tmp/console"; then
        t1=$(date +%s.%N)
        echo "$t1 - $t0" | bc >>"$tmp/$1.times"
        echo "$1 run: $(tail -n 1 "$tmp/$1.times") s" >&2
    else
        echo "$1 run: failed or timed out (init not reached within ${limit}s)" >&2
    fi
}
median() { [ -s "$1" ] && sort -n "$1" | awk '{a[NR]=$1} END {m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2; printf "%.2f", m}' || echo NaN; }

for ((i = 0; i < runs; i++)); do
    timed ours
    timed plain
done
echo "load average during the runs: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
m_ours=$(median "$tmp/ours.times")
m_plain=$(median "$tmp/plain.times")
ratio=NaN
[ "$m_ours" != NaN ] && [ "$m_plain" != NaN ] && ratio=$(echo "scale=3; $m_ours / $m_plain" | bc | sed 's/^\./0./')
echo "ktstr-vmm: microvm,acpi=on -cpu max, loglevel=0, tsc_early_khz=<host> tsc=reliable, KASLR on" >&2
echo "BENCH vmm-tcg-boot-2cpu $m_ours s qemu-plain-boot-2cpu $m_plain $ratio target <=0.8"
