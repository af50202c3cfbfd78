// libktstr/kconfig: the embedded fragment, extra fragments, the kconfig hash and
// the list of options without which the harness cannot work.
#include "ktstr/kconfig.h"

extern "C" const char ktstr_kconfig_fragment_start[];
extern "C" const char ktstr_kconfig_fragment_end[];

namespace ktstr::kconfig {

std::string_view embedded_fragment() {
    return {ktstr_kconfig_fragment_start,
            static_cast<size_t>(ktstr_kconfig_fragment_end - ktstr_kconfig_fragment_start)};
}

std::vector<Fragment> load_fragments(const std::vector<std::string> &extra_paths) {
    std::vector<Fragment> out;
    out.push_back({BASE_FRAGMENT_NAME, std::string(embedded_fragment())});
    for (auto &p : extra_paths) {
        Fragment f{p, read_file(p)};
        parse(f.text, p);   // malformed lines fail here, before anything acts on them
        out.push_back(std::move(f));
    }
    return out;
}

std::string effective_fragment(const std::vector<Fragment> &fragments) {
    std::string text;
    for (size_t i = 0; i < fragments.size(); ++i) {
        if (i > 0 && !text.empty() && text.back() != '\n') text += '\n';
        text += fragments[i].text;
    }
    return text;
}

std::string fragment_hash(const std::vector<Fragment> &fragments) {
    return hex8(crc32_of(effective_fragment(fragments)));
}

Config requested_config(const std::vector<Fragment> &fragments) {
    Config merged;
    for (auto &f : fragments) {
        Config c = parse(f.text, f.path);
        for (auto &w : c.warnings) merged.warnings.push_back(w);
        for (auto &e : c.entries) merged.set(e);
        for (auto &[sym, arch] : c.only_arch) merged.only_arch[sym] = arch;
    }
    return merged;
}

void reject_critical_disables(const std::vector<Fragment> &fragments) {
    for (size_t i = 1; i < fragments.size(); ++i) {
        Config c = parse(fragments[i].text, fragments[i].path);
        for (auto &e : c.entries) {
            const CriticalOption *crit = find_critical(e.name);
            if (!crit || e.value == "y") continue;
            fail(ErrorKind::input, e.file, ":", e.line, ": extra fragment sets critical option CONFIG_", e.name,
                 " to '", display_value(e), "'; ktstr needs it =y (", crit->why, ")");
        }
    }
}

// Deliberately short: an option is here when a ktstr run cannot work without it
// built in.  Options that only matter through another one (BPF_JIT for
// SCHED_CLASS_EXT) are left out: their loss shows as the loss of the critical
// option, with them named as the cause.
const std::vector<CriticalOption> &critical_options() {
    static const std::vector<CriticalOption> list = {
        {"SCHED_CLASS_EXT", "the sched_ext scheduling class the schedulers under test plug into",
         "depends on BPF_SYSCALL, BPF_JIT and DEBUG_INFO_BTF; absent on kernels before 6.12"},
        {"BPF", "the BPF core", "selected by BPF_SYSCALL"},
        {"BPF_SYSCALL", "the bpf(2) syscall that loads schedulers and probes", "turned off by a config or fragment"},
        {"DEBUG_INFO", "DWARF, the input from which BTF is generated",
         "debug info choice set to none (DEBUG_INFO_NONE)"},
        {"DEBUG_INFO_BTF", "kernel type information for struct offsets in the monitor and BPF CO-RE",
         "needs pahole >= 1.16 (package dwarves) when configuring; Kconfig probes pahole --version"},
        {"FTRACE", "the tracing core that kprobe events and BPF tracing live under",
         "arm64 defconfig turns it off; it gates KPROBE_EVENTS and BPF_EVENTS"},
        {"KPROBES", "kernel probes for ktstr's probe pipeline", "needs HAVE_KPROBES and MODULES or the like"},
        {"KPROBE_EVENTS", "kprobe-based events BPF programs attach to", "needs FTRACE and KPROBES"},
        {"PERF_EVENTS", "perf events, through which BPF tracing programs attach", "turned off by a config or fragment"},
        {"BPF_EVENTS", "BPF programs on kprobes and tracepoints", "needs KPROBE_EVENTS (or UPROBE_EVENTS) and PERF_EVENTS"},
        {"CGROUPS", "control groups that scenarios put workloads into", "turned off by a config or fragment"},
        {"CPUSETS", "cpuset partitioning of scenario cgroups", "needs CGROUPS and SMP"},
        {"CGROUP_SCHED", "the cpu controller for scenario cgroups", "needs CGROUPS"},
        {"BLK_DEV_INITRD", "booting the initramfs that carries ktstr's guest agent as /init",
         "turned off by a config or fragment"},
        {"SERIAL_8250", "the 16550 UARTs: console and the guest-to-host fallback channel",
         "built as a module (=m) while the guest loads no modules"},
    };
    return list;
}

const CriticalOption *find_critical(const std::string &name) {
    for (auto &c : critical_options())
        if (name == c.name) return &c;
    return nullptr;
}

} // namespace ktstr::kconfig
