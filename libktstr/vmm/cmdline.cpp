// libktstr/vmm: the default kernel command line (spec vmm.md §14, per accelerator).
#include "ktstr/vmm.h"

namespace ktstr::vmm {

namespace {
std::string hex0x(uint64_t v) {
    std::string h = hex16(v);
    size_t nz = h.find_first_not_of('0');
    return "0x" + (nz == std::string::npos ? std::string("0") : h.substr(nz));
}
std::string size_suffix(uint64_t bytes) {
    if (bytes && bytes % GiB == 0) return cat(bytes / GiB, "G");
    if (bytes && bytes % MiB == 0) return cat(bytes / MiB, "M");
    if (bytes && bytes % 1024 == 0) return cat(bytes / 1024, "K");
    return cat(bytes);
}
} // namespace

std::string memmap_param(const ShmRegion &shm) {
    // '$' = reserved: the kernel keeps the range out of its RAM (and KASLR avoids it).
    return cat("memmap=", size_suffix(shm.size), "$", hex0x(shm.base_pa));
}

std::string shm_params(const ShmRegion &shm) {
    return cat("KTSTR_SHM_BASE=", hex0x(shm.base_pa), " KTSTR_SHM_SIZE=", hex0x(shm.size));
}

std::string build_cmdline(const CmdlineOptions &o) {
    std::vector<std::string> w = {
        "console=ttyS0", "nomodules", "mitigations=off", "no_timer_check",
    };
    // kvm-clock exists only under KVM; under TCG the kernel picks its own clocksource.
    if (o.accel == Accel::kvm) w.push_back("clocksource=kvm-clock");
    for (const char *s : {"random.trust_cpu=on", "swiotlb=noforce", "i8042.noaux", "i8042.nomux", "i8042.nopnp",
                          "i8042.dumbkbd", "pci=off", "reboot=k", "panic=-1", "iomem=relaxed"})
        w.push_back(s);
    if (!o.kaslr) w.push_back("nokaslr");
    if (o.tsc_khz) {
        w.push_back(cat("tsc_early_khz=", *o.tsc_khz));
        w.push_back("tsc=reliable");
    }
    for (const char *s : {"lockdown=none", "sysctl.kernel.unprivileged_bpf_disabled=0", "sysctl.kernel.sched_schedstats=1"})
        w.push_back(s);
    if (o.verbose) {
        w.push_back("earlyprintk=serial");
        w.push_back("loglevel=7");
    } else {
        w.push_back(cat("loglevel=", o.loglevel));
    }
    if (o.has_initrd) {
        w.push_back("rdinit=/init");
        w.push_back("initramfs_options=size=90%");
    }
    if (o.shm) {
        if (o.accel == Accel::tcg) w.push_back(memmap_param(*o.shm));
        w.push_back(shm_params(*o.shm));
    }
    // The kernel parses only enable/disable here: "numa_balancing=0" (what the
    // reference passes) is refused at boot ("mempolicy: Unable to parse
    // numa_balancing=") and leaves the build's default in force.
    w.push_back(o.has_memory_only_node ? "numa_balancing=enable" : "numa_balancing=disable");
    for (auto &e : o.extra) w.push_back(e);
    std::string out;
    for (auto &s : w) out += (out.empty() ? "" : " ") + s;
    return out;
}

} // namespace ktstr::vmm
