// libktstr/vmm: host-quirk detection for KVM (emulated / software KVM).
#include <fstream>
#include <sstream>

#include "ktstr/kvm.h"

namespace ktstr::vmm {

namespace {
// The "flags" line of the first CPU in /proc/cpuinfo, space-separated.
std::string host_cpu_flags() {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line))
        if (starts_with(line, "flags")) return " " + line.substr(line.find(':') + 1) + " ";
    return "";
}
} // namespace

QuirkMode parse_quirk_mode(const std::string &text) {
    if (text == "auto") return QuirkMode::auto_detect;
    if (text == "on") return QuirkMode::on;
    if (text == "off") return QuirkMode::off;
    fail(ErrorKind::usage, "--kvm-quirks '", text, "': expected auto, on or off");
}

HostQuirks detect_host_quirks(QuirkMode mode) {
    HostQuirks q;
    if (mode == QuirkMode::off) {
        q.detection = "host quirks disabled (--kvm-quirks off)";
        return q;
    }
    if (mode == QuirkMode::on) {
        q.emulated = true;
        q.detection = "host quirks forced on (--kvm-quirks on)";
    } else {
        std::string flags = host_cpu_flags();
        bool hw = flags.find(" vmx ") != std::string::npos || flags.find(" svm ") != std::string::npos;
        if (flags.empty()) {
            q.detection = "cannot read /proc/cpuinfo: assuming hardware KVM";
        } else if (hw) {
            q.detection = "host CPU has vmx/svm: hardware KVM";
        } else {
            q.emulated = true;
            q.detection = "/dev/kvm works but the host CPU shows neither vmx nor svm: KVM is emulated in software";
        }
    }
    // Emulating a refused instruction only ever happens after KVM gave up on
    // it, so it is on whenever quirks are allowed; the masks change what the
    // guest sees, so only an emulated KVM gets them.
    q.emulate_refused = true;
    if (q.emulated) {
        // Each of these instructions stops this emulator: cmpxchg16b in SLUB,
        // clac/stac on every kernel entry (SMAP), popcnt in hweight.
        q.cpuid_masks = {
            {"cx16", 1, 0, CpuidReg::ecx, 13, "CPUID.1:ECX.CX16 cleared (the emulator refuses cmpxchg16b)"},
            {"smap", 7, 0, CpuidReg::ebx, 20,
             "CPUID.7.0:EBX.SMAP cleared (the emulator refuses clac/stac, which SMAP puts on every kernel entry)"},
            {"popcnt", 1, 0, CpuidReg::ecx, 23, "CPUID.1:ECX.POPCNT cleared (the emulator refuses popcnt)"},
        };
        q.noxsave = true;
    }
    return q;
}

} // namespace ktstr::vmm
