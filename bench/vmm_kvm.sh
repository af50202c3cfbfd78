#!/bin/bash
# KVM VMM start-up and memory:
#   vmm-kvm-start-to-entry-256M     exec -> the BSP's first KVM_RUN, tiny guest, 256 MiB  (target < 5 ms)
#   vmm-kvm-start-to-first-exit-256M exec -> first KVM exit (the guest's first instruction is an OUT)
#   vmm-kvm-start-to-entry-vmlinux  exec -> first KVM_RUN with the fixture vmlinux loaded, 256 MiB (target < 5 ms)
#   vmm-kvm-vmlinux-image-fill      of that, the vmlinux segments into guest RAM (the boot event's
#                                   image_load.fill_ms: lazy, it runs while the guest runs)
#   vmm-kvm-start-to-entry-vmlinux-eager  the same with --kvm-image-load eager (all copied first)
#   vmm-kvm-rss-beyond-guest-ram    VmRSS - RssShmem of a running 256 MiB guest (guest RAM is the memfd)
# Medians of KTSTR_BENCH_RUNS (default 7) runs.
set -euo pipefail
BUILD=${BUILD:-build}
G=${KTSTR_TOP:-.}/$BUILD/guests
if ! [ -r /dev/kvm ] || ! [ -f "$G/spin.elf" ]; then
    echo "skip: /dev/kvm not usable or tiny guests not built" >&2
    exit 0
fi
RUNS=${KTSTR_BENCH_RUNS:-7}
VMLINUX=${KTSTR_FIXTURES:+$KTSTR_FIXTURES/vmlinux}
python3 - "$RUNS" "$G/spin.elf" "${VMLINUX:-}" <<'PY'
import json, os, statistics, subprocess, sys, time
runs, spin, vmlinux = int(sys.argv[1]), sys.argv[2], sys.argv[3]

def run(args, sample_rss=False):
    t0 = time.monotonic_ns()
    p = subprocess.Popen(["ktstr-vmm", "--accel", "kvm", "--memory-mb", "256", "--topology", "1n1l1c1t",
                          "--console", "none", "--kvm-quirks", "auto"] + args,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    rss = None
    if sample_rss:
        time.sleep(0.6)
        st = dict(l.split(":", 1) for l in open(f"/proc/{p.pid}/status") if ":" in l)
        kb = lambda k: int(st[k].split()[0])
        rss = (kb("VmRSS") - kb("RssShmem")) / 1024.0
    out, _ = p.communicate()
    events = [json.loads(l) for l in out.decode().splitlines() if l.startswith("{")]
    ex = [e for e in events if e.get("event") == "exit"][0]
    boot = [e for e in events if e.get("event") == "boot"][0]
    entry = (ex["first_run_mono_ns"] - t0) / 1e6 if ex.get("first_run_mono_ns") else None
    first = (ex["first_exit_mono_ns"] - t0) / 1e6 if ex.get("first_exit_mono_ns") else None
    return entry, first, rss, boot

entry, first, rss = [], [], []
for _ in range(runs):
    e, f, r, _ = run(["--elf", spin, "--timeout", "1"], sample_rss=True)
    entry.append(e); first.append(f); rss.append(r)
med = lambda v: statistics.median([x for x in v if x is not None])
print(f"BENCH vmm-kvm-start-to-entry-256M {med(entry):.2f} ms target <5 ms")
print(f"BENCH vmm-kvm-start-to-first-exit-256M {med(first):.2f} ms")
print(f"BENCH vmm-kvm-rss-beyond-guest-ram {med(rss):.1f} MiB")
if vmlinux and os.path.exists(vmlinux):
    for mode in ("lazy", "eager"):
        ventry, vfill, faults, phases = [], [], [], {}
        for _ in range(runs):
            e, _, _, boot = run(["--kernel", os.path.dirname(vmlinux), "--elf", "vmlinux", "--timeout", "0.3",
                                 "--kvm-image-load", mode])
            ventry.append(e)
            il = boot.get("image_load", {})
            if il.get("mode") != mode:
                print(f"--kvm-image-load {mode} ran {il.get('mode')}: {il.get('reason', '')}", file=sys.stderr)
            vfill.append(il.get("fill_ms")); faults.append(il.get("faults_served"))
            for k, v in boot.get("startup_ms", {}).items(): phases.setdefault(k, []).append(v)
        print(f"{mode}: median ms per start-up phase: " +
              ", ".join(f"{k} {med(v):.2f}" for k, v in phases.items()), file=sys.stderr)
        print(f"{mode}: pages filled on first touch (median): {med(faults):.0f}", file=sys.stderr)
        if mode == "lazy":
            print(f"BENCH vmm-kvm-start-to-entry-vmlinux {med(ventry):.2f} ms target <5 ms")
            print(f"BENCH vmm-kvm-vmlinux-image-fill {med(vfill):.2f} ms")
        else:
            print(f"BENCH vmm-kvm-start-to-entry-vmlinux-eager {med(ventry):.2f} ms")
PY
