// libktstr/vmm: thin RAII wrappers over the KVM ioctl API (/dev/kvm, VM, vCPU)
// and the KVM speed probe.
//
// Everything here throws ktstr::Error(environment) with the ioctl named and the
// errno text; nothing here knows about kernels or topologies.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <linux/kvm.h>

#include "ktstr/json.h"
#include "ktstr/topology.h"
#include "ktstr/util.h"
#include "ktstr/x86.h"

namespace ktstr::vmm {

// ---- ioctls whose argument ends in a flexible array ------------------------
// <asm/kvm.h> declares kvm_cpuid2 and kvm_msrs with __DECLARE_FLEX_ARRAY,
// whose empty struct is 1 byte in C++ but 0 in C (linux-libc-dev before 6.7;
// Debian 12 ships 6.1). In C++ sizeof(kvm_cpuid2) is then 12, not 8, and
// sizeof(kvm_msrs) 16: KVM_SET_CPUID2, KVM_GET_SUPPORTED_CPUID and
// KVM_SET_MSRS, whose numbers encode that size, name no ioctl (EINVAL), and
// 'entries' lies 4 or 8 bytes late. These are the C layout and numbers; the
// entries follow the 8-byte header.
struct KvmCpuid2Header {
    uint32_t nent;
    uint32_t padding;
};
struct KvmMsrsHeader {
    uint32_t nmsrs;
    uint32_t pad;
};
static_assert(sizeof(KvmCpuid2Header) == 8 && sizeof(KvmMsrsHeader) == 8);
inline constexpr unsigned long IOCTL_GET_SUPPORTED_CPUID = _IOWR(KVMIO, 0x05, KvmCpuid2Header);
inline constexpr unsigned long IOCTL_SET_CPUID2 = _IOW(KVMIO, 0x90, KvmCpuid2Header);
inline constexpr unsigned long IOCTL_SET_MSRS = _IOW(KVMIO, 0x89, KvmMsrsHeader);

// The argument of KVM_SET_CPUID2 / KVM_SET_MSRS: the header, then the entries.
std::vector<uint8_t> cpuid2_buffer(const std::vector<kvm_cpuid_entry2> &entries);
std::vector<uint8_t> msrs_buffer(const std::vector<kvm_msr_entry> &entries);

// /dev/kvm: API version checked, capability queries, supported CPUID.
class Kvm {
public:
    // Opens /dev/kvm (O_RDWR|O_CLOEXEC).  Throws Error(environment) saying
    // whether the device is absent or access was denied.
    Kvm();
    int fd() const { return fd_.get(); }
    // KVM_CHECK_EXTENSION on /dev/kvm: 0 when unsupported, else the value.
    int check_extension(long cap) const;
    // Throws Error(environment) "KVM lacks capability KVM_CAP_<name>".
    void require(long cap, const char *name) const;
    size_t vcpu_mmap_size() const { return mmap_size_; }
    // KVM_GET_SUPPORTED_CPUID, enlarged on E2BIG.
    std::vector<kvm_cpuid_entry2> supported_cpuid() const;

private:
    unique_fd fd_;
    size_t mmap_size_ = 0;
};

class KvmVcpu;

// One VM fd (KVM_CREATE_VM, retried on EINTR).
class KvmVm {
public:
    explicit KvmVm(const Kvm &kvm);
    int fd() const { return fd_.get(); }
    const Kvm &kvm() const { return *kvm_; }
    int check_extension(long cap) const;   // on the VM fd
    // ioctl on the VM fd; throws Error(environment) "WHAT: strerror".
    int ioctl_or_fail(unsigned long req, const void *arg, const char *what) const;
    void set_memory_region(uint32_t slot, uint64_t gpa, uint64_t size, void *host);
    KvmVcpu create_vcpu(uint32_t id);

private:
    const Kvm *kvm_;
    unique_fd fd_;
};

// A vCPU fd and its shared kvm_run page.
class KvmVcpu {
public:
    KvmVcpu(unique_fd fd, Mapping run, uint32_t id) : fd_(std::move(fd)), run_(std::move(run)), id_(id) {}
    int fd() const { return fd_.get(); }
    uint32_t id() const { return id_; }
    kvm_run *run() const { return reinterpret_cast<kvm_run *>(run_.data()); }
    int ioctl_or_fail(unsigned long req, void *arg, const char *what) const;
    kvm_regs get_regs() const;
    void set_regs(const kvm_regs &r) const;
    kvm_sregs get_sregs() const;
    void set_sregs(const kvm_sregs &s) const;
    kvm_vcpu_events get_events() const;
    void set_events(const kvm_vcpu_events &e) const;
    // One KVM_RUN.  Returns 0, or -errno for EINTR/EAGAIN (the caller re-checks
    // its flags); other errors throw.
    int run_once() const;

private:
    unique_fd fd_;
    Mapping run_;
    uint32_t id_;
};

// Install (once per process) the no-op handler for the vCPU kick signal, so a
// pthread_kill() makes KVM_RUN return EINTR instead of killing the process.
int kick_signal();
void install_kick_handler();

// ---- KVM speed probe --------------------------------------------------------
//
// Answers "does KVM run guest code at hardware speed here?" in a few tens of
// milliseconds, for `--accel auto`: on a host whose /dev/kvm is nested and
// emulated (about 1-2 million guest instructions a second) QEMU's TCG is the
// faster accelerator.  It runs a two-instruction real-mode loop
//     inc eax ; jmp back
// in a fresh one-vCPU VM, stops it from another thread after `run_ms`, reads
// EAX and divides.  Never throws: every failure is reported in `reason`.
struct KvmSpeed {
    bool available = false;          // /dev/kvm opened and the probe VM ran
    bool hardware_speed = false;     // instructions_per_second >= threshold
    double instructions_per_second = 0;
    double measured_ms = 0;          // the timed KVM_RUN, wall clock
    double threshold = 0;            // instructions/s counted as hardware speed
    std::string reason;              // one line for logs and JSON: what was measured and why
};

// Hardware (or hardware-assisted nested) KVM runs this loop at well above
// 1e9 instructions/s; the emulated KVM measured on our machines at ~1-2e6.
inline constexpr double KVM_HARDWARE_SPEED_THRESHOLD = 1e8;

KvmSpeed kvm_speed_probe(double run_ms = 20, double threshold = KVM_HARDWARE_SPEED_THRESHOLD);

// ---- the KVM machine ---------------------------------------------------------
//
// run_kvm() (declared in vmm.h, defined in vmm/kvm_machine.cpp) builds and
// runs a VM from a VmConfig.  What follows is what it shares with tests.

// Host quirks: what this host's KVM cannot do and how we work around it
// (see ../shared/fixtures/linux-6.12/README.md and README.md "KVM").  Every
// workaround that is applied is reported (a stderr warning when first used,
// the "host_quirks" list of the boot and exit events) and counted.
enum class QuirkMode { auto_detect, on, off };
QuirkMode parse_quirk_mode(const std::string &text);   // "auto", "on", "off"; Error(usage)
struct HostQuirks {
    bool emulated = false;          // KVM without hardware virtualization underneath
    std::string detection;          // how we know (or why we think it is hardware)
    // CPUID feature bits cleared so that the kernel does not use instructions
    // the emulator refuses (cheaper than one userspace exit per use).
    struct CpuidMask {
        const char *name;          // quirk name: "cpuid_mask_<name>"
        uint32_t function, index;
        CpuidReg reg;
        unsigned bit;
        const char *why;
    };
    std::vector<CpuidMask> cpuid_masks;
    bool noxsave = false;           // "noxsave" on the command line: no xrstor in FPU init
    bool emulate_refused = false;   // userspace handling of what KVM refuses (ioctls, MSRs, instructions)
};
// auto: emulated when /dev/kvm works but the host CPU shows neither vmx nor
// svm (KVM is then software-emulated); `on`/`off` force it.
HostQuirks detect_host_quirks(QuirkMode mode);

// Reject before any KVM call what this backend cannot build: APIC ids above
// 254 need the split irqchip, which this VMM does not implement (v1).
void validate_kvm_topology(const Topology &t);

// The KVM guest-RAM plan: one memfd, one region (KVM slot) per NUMA node per
// RAM range, laid out by plan_memory().  Returned as vmm.h's MemoryPlan.
struct MemoryPlan;
MemoryPlan kvm_memory_plan(const MemoryLayout &m);

} // namespace ktstr::vmm
