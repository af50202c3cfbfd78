# Helpers for the ktstr-monitor end-to-end tests (sourced after lib.sh).
# Boots the fixture kernel under QEMU TCG with its RAM in a shared file, so
# ktstr-monitor can read guest memory with --memory-file while the
# ktstr-vmm --monitor-socket path is not used.

# mon_initramfs OUT INIT_SCRIPT: busybox + the fixture's scx_simple and its
# shared libraries + /init.
mon_initramfs() {
    local out=$1 init=$2 root="$TMP/root"
    rm -rf "$root"
    mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp,lib64,lib/x86_64-linux-gnu,usr/bin}
    cp /bin/busybox "$root/bin/busybox"
    for a in sh mount sleep cat echo mkdir seq head; do ln -s busybox "$root/bin/$a"; done
    if [ -x "$KTSTR_FIXTURES/sched_ext/scx_simple" ]; then
        cp "$KTSTR_FIXTURES/sched_ext/scx_simple" "$root/bin/"
        for l in $(ldd "$KTSTR_FIXTURES/sched_ext/scx_simple" | grep -o '/[^ ]*'); do
            mkdir -p "$root$(dirname "$l")"; cp -L "$l" "$root$l"
        done
    fi
    cp "$init" "$root/init"; chmod 755 "$root/init"
    (cd "$root" && find . | cpio -o -H newc --quiet) > "$out"
}

# mon_boot CPUS MEM_MB INITRAMFS EXTRA_CMDLINE: start QEMU in the background;
# sets QEMU_PID and GUEST_RAM (the file backing guest RAM).
mon_boot() {
    local cpus=$1 mem=$2 initrd=$3 extra=$4
    GUEST_RAM=/dev/shm/ktstr-monitor-e2e.$$
    : > "$GUEST_RAM"
    qemu-system-x86_64 -accel tcg -cpu max -smp "$cpus" -m "${mem}M" \
        -object memory-backend-file,id=ram,size="${mem}M",mem-path="$GUEST_RAM",share=on \
        -machine pc,memory-backend=ram -nographic -no-reboot \
        -kernel "$KTSTR_FIXTURES/bzImage" -initrd "$initrd" \
        -append "console=ttyS0 panic=-1 quiet $extra" >"$TMP/console.log" 2>&1 &
    QEMU_PID=$!
    trap 'kill $QEMU_PID 2>/dev/null; rm -f "$GUEST_RAM"; rm -rf "$TMP"' EXIT
}
