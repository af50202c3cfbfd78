// libktstr/vmm: the KVM accelerator, run_kvm(): guest RAM, VM and vCPU setup,
// one thread per vCPU, port I/O dispatch (16550 x2, i8042), exits, host
// quirks, teardown (vmm.md sections 1, 3, 6, 8, 9).
//
// Threads: each vCPU thread runs KVM_RUN and handles its exits; the thread
// that called run_kvm() is the watchdog and the only one that talks to the
// Observer (console/COM2 bytes are queued by the vCPU threads and handed over
// from here), as vmm.h requires.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <condition_variable>
#include <csignal>
#include <cstring>
#include <future>
#include <mutex>
#include <thread>

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "ktstr/image_load.h"
#include "ktstr/kvm.h"
#include "ktstr/serial.h"
#include "ktstr/vmm.h"

namespace ktstr::vmm {

MemoryPlan kvm_memory_plan(const MemoryLayout &m) {
    MemoryPlan p;
    p.fd_sizes = {m.mem_size};
    for (auto &r : m.regions) p.regions.push_back(RamRegion{r.gpa, r.size, 0, r.ram_offset, r.node});
    if (m.shm_size) p.shm = ShmRegion{m.shm_base, m.shm_size};
    return p;
}

void validate_kvm_topology(const Topology &t) {
    validate_topology(t);
    if (t.max_apic_id() > MAX_XAPIC_ID)
        fail(ErrorKind::usage, "topology ", t.to_string(), ": highest APIC id ", t.max_apic_id(),
             " exceeds 254, the limit of the in-kernel xAPIC irqchip this VMM uses (x2APIC/split irqchip is "
             "not implemented); use fewer LLCs/cores, or --accel tcg");
}

namespace {

std::string hex(uint64_t v) { return cat("0x", std::hex, v); }

uint64_t mono_ns() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

// Last `max` bytes of a growing text.
struct Tail {
    std::string text;
    size_t max;
    void append(const char *p, size_t n) {
        text.append(p, n);
        if (text.size() > 2 * max) text.erase(0, text.size() - max);
    }
    std::string get() const { return text.size() > max ? text.substr(text.size() - max) : text; }
};

// Console lines that end a run.
constexpr const char *PANIC_TEXT = "Kernel panic - not syncing";
constexpr const char *POWER_OFF_TEXTS[] = {"reboot: Power down", "reboot: System halted"};

struct QuirkUse {
    std::string name;      // "cmdline_noxsave", "emulate_clac", "msr_efer_write", ...
    std::string detail;
    uint64_t count = 0;
};

class Machine {
public:
    Machine(const VmConfig &cfg, Observer &observer, StopSource &stop)
        : cfg_(cfg), topo_(cfg.topology), observer_(observer), stop_source_(stop), t0_(Clock::now()) {}
    ExitResult run();

private:
    // setup
    void build_vm();
    std::vector<ImageSpan> image_spans();
    void load_guest();
    void setup_vcpu(const KvmVcpu &vcpu, uint32_t cpu);
    // run (vCPU threads)
    void vcpu_thread(size_t index);
    void handle_io(const KvmVcpu &vcpu, kvm_run *run);
    bool handle_internal_error(const KvmVcpu &vcpu, kvm_run *run, std::string &detail);
    void handle_msr(const KvmVcpu &vcpu, kvm_run *run);
    void finish(ExitReason reason, const std::string &detail, int vcpu);
    void kick_all();
    void console_bytes(const char *p, size_t n);
    void com2_bytes(const char *p, size_t n);
    void quirk_used(const std::string &name, const std::string &detail);
    // run (this thread)
    void deliver_output();
    ojson quirks_json();

    const VmConfig &cfg_;
    const Topology &topo_;
    Observer &observer_;
    StopSource &stop_source_;
    Clock::time_point t0_;
    HostQuirks quirks_;
    std::unique_ptr<Kvm> kvm_;
    std::unique_ptr<KvmVm> vm_;
    MemoryLayout mem_;
    GuestRam ram_;
    Layout layout_;
    std::vector<KvmVcpu> vcpus_;
    std::vector<kvm_cpuid_entry2> supported_cpuid_;
    bool cpuid_refused_ = false;
    BootImage kernel_;
    uint64_t initrd_gpa_ = 0, initrd_size_ = 0;
    unique_fd kernel_fd_, initrd_fd_;
    ImageLoadStats image_stats_;
    std::string image_load_note_;   // why loading is eager under --kvm-image-load auto
    std::string cmdline_;
    unique_fd irq_com1_, irq_com2_, wake_;
    std::unique_ptr<Uart16550> com1_, com2_;

    // run state
    std::vector<pthread_t> threads_;
    std::vector<std::atomic<bool>> thread_started_;
    std::vector<pid_t> tids_;
    std::atomic<bool> stop_{false};
    std::mutex mu_;                 // everything below
    bool ended_ = false;
    ExitReason reason_ = ExitReason::error;
    std::string detail_;
    int end_vcpu_ = -1;
    std::vector<QuirkUse> quirks_used_;
    std::string pending_console_, pending_com2_;   // for the Observer, from this thread
    std::atomic<double> first_exit_s_{-1};
    std::atomic<uint64_t> first_run_mono_ns_{0}, first_exit_mono_ns_{0};   // BSP, CLOCK_MONOTONIC
    // Start-up phases (name, ms spent) for the boot event's "startup_ms".
    std::vector<std::pair<const char *, double>> phases_;
    Clock::time_point phase_t_ = t0_;
    void phase_done(const char *name) {
        Clock::time_point now = Clock::now();
        phases_.emplace_back(name, std::chrono::duration<double, std::milli>(now - phase_t_).count());
        phase_t_ = now;
    }
    Tail console_tail_{{}, 4096};
    std::string console_line_;
};

void Machine::quirk_used(const std::string &name, const std::string &detail) {
    bool first = false;
    {
        std::lock_guard<std::mutex> lk(mu_);
        auto it = std::find_if(quirks_used_.begin(), quirks_used_.end(), [&](auto &q) { return q.name == name; });
        if (it == quirks_used_.end()) {
            quirks_used_.push_back({name, detail, 1});
            first = true;
        } else {
            ++it->count;
        }
    }
    if (first) log::warn("host quirk: ", name, ": ", detail);
}

ojson Machine::quirks_json() {
    std::lock_guard<std::mutex> lk(mu_);
    ojson arr = ojson::array();
    for (auto &q : quirks_used_) arr.push_back({{"name", q.name}, {"count", q.count}, {"detail", q.detail}});
    return arr;
}

void Machine::build_vm() {
    const Topology &t = topo_;
    kvm_ = std::make_unique<Kvm>();
    const Kvm &kvm = *kvm_;
    struct Cap { long cap; const char *name; };
    const Cap required[] = {
        {KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"}, {KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD"},
        {KVM_CAP_IRQFD, "KVM_CAP_IRQFD"}, {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
        {KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR"}, {KVM_CAP_PIT2, "KVM_CAP_PIT2"},
        {KVM_CAP_PIT_STATE2, "KVM_CAP_PIT_STATE2"}, {KVM_CAP_ADJUST_CLOCK, "KVM_CAP_ADJUST_CLOCK"},
        {KVM_CAP_DEBUGREGS, "KVM_CAP_DEBUGREGS"}, {KVM_CAP_MP_STATE, "KVM_CAP_MP_STATE"},
        {KVM_CAP_VCPU_EVENTS, "KVM_CAP_VCPU_EVENTS"}, {KVM_CAP_XCRS, "KVM_CAP_XCRS"},
        {KVM_CAP_XSAVE, "KVM_CAP_XSAVE"}, {KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"}};
    for (auto &c : required) kvm.require(c.cap, c.name);
    int max_vcpu_id = kvm.check_extension(KVM_CAP_MAX_VCPU_ID);
    if (max_vcpu_id <= 0) max_vcpu_id = kvm.check_extension(KVM_CAP_MAX_VCPUS);
    if (int64_t(t.max_apic_id()) >= max_vcpu_id)
        fail(ErrorKind::environment, "topology ", t.to_string(), ": APIC id ", t.max_apic_id(),
             " is not below KVM_CAP_MAX_VCPU_ID ", max_vcpu_id);
    int max_vcpus = kvm.check_extension(KVM_CAP_MAX_VCPUS);
    if (max_vcpus > 0 && int64_t(t.total_cpus()) > max_vcpus)
        fail(ErrorKind::environment, "topology ", t.to_string(), ": ", t.total_cpus(), " vCPUs exceed KVM_CAP_MAX_VCPUS ",
             max_vcpus);

    vm_ = std::make_unique<KvmVm>(kvm);
    KvmVm &vm = *vm_;
    vm.ioctl_or_fail(KVM_SET_TSS_ADDR, reinterpret_cast<void *>(KVM_TSS_GPA), "KVM_SET_TSS_ADDR");
    uint64_t identity = KVM_IDENTITY_MAP_GPA;
    vm.ioctl_or_fail(KVM_SET_IDENTITY_MAP_ADDR, &identity, "KVM_SET_IDENTITY_MAP_ADDR");
    phase_done("create_vm");
    // Memory: one slot per region, before the irqchip. Once the irqchip
    // exists, the first slot waits for an SRCU grace period: 4-8 ms on an
    // emulated KVM (measured on a 6.18 PVM host), against 0.2 ms here.
    for (size_t i = 0; i < mem_.regions.size(); ++i) {
        const MemRegion &r = mem_.regions[i];
        vm.set_memory_region(uint32_t(i), r.gpa, r.size, ram_.host(r.gpa, r.size));
    }
    phase_done("memory_slots");
    vm.ioctl_or_fail(KVM_CREATE_IRQCHIP, nullptr, "KVM_CREATE_IRQCHIP");
    kvm_pit_config pit{};
    pit.flags = KVM_PIT_SPEAKER_DUMMY;
    vm.ioctl_or_fail(KVM_CREATE_PIT2, &pit, "KVM_CREATE_PIT2");
    // Counter 0 as a PC BIOS leaves it (mode 3, lobyte/hibyte, count 65536:
    // 18.2 Hz). KVM resets it to mode 0xFF, whose read-back status has bit 6
    // ("null count") set for ever, and a kernel without RDRAND and TSC polls
    // that bit for entropy (arch/x86/lib/kaslr.c) until it clears.
    kvm_pit_state2 pit_state{};
    vm.ioctl_or_fail(KVM_GET_PIT2, &pit_state, "KVM_GET_PIT2");
    kvm_pit_channel_state &ch0 = pit_state.channels[0];
    ch0.count = 0;                 // 0 = 65536
    ch0.mode = 3;                  // square wave
    ch0.rw_mode = 3;               // lobyte then hibyte
    ch0.read_state = ch0.write_state = 3;
    ch0.bcd = 0;
    ch0.gate = 1;
    ch0.count_latched = ch0.status_latched = 0;
    vm.ioctl_or_fail(KVM_SET_PIT2, &pit_state, "KVM_SET_PIT2");
    phase_done("irqchip");
    if (vm.check_extension(KVM_CAP_HALT_POLL) > 0) {
        kvm_enable_cap cap{};
        cap.cap = KVM_CAP_HALT_POLL;
        cap.args[0] = t.total_cpus() > uint32_t(sysconf(_SC_NPROCESSORS_ONLN)) ? 0 : 200000;
        if (::ioctl(vm.fd(), KVM_ENABLE_CAP, &cap) < 0) log::debug("KVM_CAP_HALT_POLL not enabled: ", strerror(errno));
    }

    // Emulated KVM injects #GP for MSRs it does not know (EFER writes among
    // them); with this capability they come to userspace instead.
    if (quirks_.emulate_refused && vm.check_extension(KVM_CAP_X86_USER_SPACE_MSR) > 0) {
        kvm_enable_cap cap{};
        cap.cap = KVM_CAP_X86_USER_SPACE_MSR;
        cap.args[0] = KVM_MSR_EXIT_REASON_INVAL | KVM_MSR_EXIT_REASON_UNKNOWN;
        if (::ioctl(vm.fd(), KVM_ENABLE_CAP, &cap) < 0)
            log::debug("KVM_CAP_X86_USER_SPACE_MSR not enabled: ", strerror(errno));
    }

    // Serial interrupts: an eventfd per UART, bound to its GSI.
    wake_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!wake_) fail_errno(ErrorKind::environment, "eventfd");
    auto irqfd = [&](uint32_t gsi) {
        unique_fd fd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        if (!fd) fail_errno(ErrorKind::environment, "eventfd");
        kvm_irqfd req{};
        req.fd = uint32_t(fd.get());
        req.gsi = gsi;
        vm.ioctl_or_fail(KVM_IRQFD, &req, "KVM_IRQFD");
        return fd;
    };
    irq_com1_ = irqfd(COM1_IRQ);
    irq_com2_ = irqfd(COM2_IRQ);
    // The irqfds raise the UARTs' interrupt lines.
    int c1 = irq_com1_.get(), c2 = irq_com2_.get();
    com1_ = std::make_unique<Uart16550>([this](uint8_t b) { char c = char(b); console_bytes(&c, 1); },
                                        [c1] { notify_eventfd(c1); });
    com2_ = std::make_unique<Uart16550>([this](uint8_t b) { char c = char(b); com2_bytes(&c, 1); },
                                        [c2] { notify_eventfd(c2); });

    try {
        supported_cpuid_ = kvm.supported_cpuid();
    } catch (const Error &e) {
        if (!quirks_.emulated) throw;   // on hardware KVM this is an error
        supported_cpuid_ = host_cpuid_entries();
        quirk_used("cpuid_from_host",
                   cat(e.what(), ": the guest CPUID is built from the host's cpuid instruction instead"));
    }
    std::vector<const HostQuirks::CpuidMask *> masked;
    for (auto &m : quirks_.cpuid_masks)
        if (cpuid_clear_bit(supported_cpuid_, m.function, m.reg, m.bit, m.index)) masked.push_back(&m);

    // vCPU id = APIC id (vmm.md section 2 [dev]); cpu 0 (APIC 0) is the BSP.
    for (uint32_t cpu = 0; cpu < t.total_cpus(); ++cpu) {
        vcpus_.push_back(vm.create_vcpu(t.apic_id(cpu)));
        setup_vcpu(vcpus_.back(), cpu);
    }
    if (!cpuid_refused_)
        for (auto *m : masked) quirk_used(cat("cpuid_mask_", m->name), m->why);
    phase_done("vcpus");
}

void Machine::setup_vcpu(const KvmVcpu &vcpu, uint32_t cpu) {
    const bool bsp = cpu == 0;
    std::vector<kvm_cpuid_entry2> entries = cpuid_for_vcpu(supported_cpuid_, topo_, cpu);
    std::vector<uint8_t> buf = cpuid2_buffer(entries);
    if (::ioctl(vcpu.fd(), IOCTL_SET_CPUID2, buf.data()) < 0) {
        int e = errno;
        if (!quirks_.emulated)
            fail_errno(ErrorKind::environment, cat("KVM_SET_CPUID2 (vCPU ", vcpu.id(), ")"), e);
        cpuid_refused_ = true;
        quirk_used("cpuid_not_settable",
                   cat("KVM_SET_CPUID2: ", strerror(e), ": the guest sees the host KVM's own CPUID; its topology "
                       "leaves (0x1, 0x4, 0xB, 0x1F, AMD 0x8000001E) will not describe ", topo_.to_string(),
                       " and CPUID masks cannot be applied (ACPI tables still do)"));
    }

    kvm_fpu fpu{};
    fpu.fcw = 0x37F;
    fpu.mxcsr = 0x1F80;
    vcpu.ioctl_or_fail(KVM_SET_FPU, &fpu, "KVM_SET_FPU");

    kvm_lapic_state lapic{};
    vcpu.ioctl_or_fail(KVM_GET_LAPIC, &lapic, "KVM_GET_LAPIC");
    auto lvt = [&](size_t off) -> uint32_t & { return *reinterpret_cast<uint32_t *>(lapic.regs + off); };
    constexpr size_t LVT0 = 0x350, LVT1 = 0x360;
    if (bsp) {
        lvt(LVT0) = (lvt(LVT0) & ~0x700u) | (7u << 8);   // ExtINT: the PIC's line
        lvt(LVT1) = (lvt(LVT1) & ~0x700u) | (4u << 8);   // NMI
    } else {
        lvt(LVT0) |= 1u << 16;
        lvt(LVT1) |= 1u << 16;
    }
    vcpu.ioctl_or_fail(KVM_SET_LAPIC, &lapic, "KVM_SET_LAPIC");

    kvm_mp_state mp{};
    mp.mp_state = bsp ? KVM_MP_STATE_RUNNABLE : KVM_MP_STATE_UNINITIALIZED;
    vcpu.ioctl_or_fail(KVM_SET_MP_STATE, &mp, "KVM_SET_MP_STATE");
    if (!bsp) return;

    // BSP: 64-bit mode on the boot GDT and identity map, at the kernel entry.
    const uint32_t msr_index[] = {0x174, 0x175, 0x176, 0xC0000081, 0xC0000082, 0xC0000083,
                                  0xC0000084, 0xC0000102, 0x10, 0x1A0, 0x2FF};
    const uint64_t msr_value[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x806};
    constexpr size_t NMSR = sizeof msr_index / sizeof msr_index[0];
    std::vector<kvm_msr_entry> boot_msrs(NMSR);
    for (size_t i = 0; i < NMSR; ++i) {
        boot_msrs[i].index = msr_index[i];
        boot_msrs[i].data = msr_value[i];
    }
    std::vector<uint8_t> mbuf = msrs_buffer(boot_msrs);
    int written = ::ioctl(vcpu.fd(), IOCTL_SET_MSRS, mbuf.data());
    if (written < 0 && quirks_.emulated) {
        quirk_used("msrs_not_settable", cat("KVM_SET_MSRS: ", strerror(errno),
                                            ": the boot MSRs (SYSENTER/STAR/LSTAR/..., MISC_ENABLE, MTRRdefType) keep "
                                            "the host KVM's reset values"));
    } else if (written < 0) {
        fail_errno(ErrorKind::environment, "KVM_SET_MSRS (BSP)");
    } else if (written != int(NMSR)) {
        fail(ErrorKind::environment, "KVM_SET_MSRS wrote ", written, " of ", NMSR, " boot MSRs (stopped at MSR ",
             hex(msr_index[written]), ")");
    }

    kvm_sregs s = vcpu.get_sregs();
    auto gdt = boot_gdt();
    s.gdt.base = GDT_GPA;
    s.gdt.limit = uint16_t(sizeof(uint64_t) * gdt.size() - 1);
    s.idt.base = IDT_GPA;
    s.idt.limit = 7;
    s.cs = segment_from_descriptor(gdt[1], 8);
    s.ds = s.es = s.fs = s.gs = s.ss = segment_from_descriptor(gdt[2], 16);
    s.tr = segment_from_descriptor(gdt[3], 24);
    s.cr0 = 0x80000001;
    s.cr4 = 0x20;
    s.efer = 0x500;
    s.cr3 = PML4_GPA;
    vcpu.set_sregs(s);

    kvm_regs r{};
    r.rip = kernel_.entry;
    r.rsp = r.rbp = BOOT_STACK_GPA;
    r.rsi = ZERO_PAGE_GPA;
    r.rflags = 2;
    vcpu.set_regs(r);
}

// The file bytes guest RAM needs (kernel segments, initramfs); sets
// initrd_*_. A segment must fit with its .bss (mem_size), which the span
// check does not see. Guest RAM is a fresh memfd, so
// what lies beyond a segment's file bytes (.bss) is already zero.
std::vector<ImageSpan> Machine::image_spans() {
    const MemoryLayout &m = mem_;
    if (kernel_.end > m.low_end)
        fail(ErrorKind::usage, kernel_.path, ": the kernel needs RAM up to ", kernel_.end >> 20,
             " MiB; give the guest more memory");
    kernel_fd_ = unique_fd(::open(kernel_.path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!kernel_fd_) fail_errno(ErrorKind::input, cat("kernel ", kernel_.path));
    std::vector<ImageSpan> spans;
    for (auto &seg : kernel_.segments) {
        if (!ram_.host(seg.gpa, seg.mem_size))
            fail(ErrorKind::usage, kernel_.path, ": segment at ", hex(seg.gpa), " (", seg.mem_size >> 10,
                 " KiB) does not fit in ", m.mem_size >> 20, " MiB of guest RAM");
        spans.push_back({seg.gpa, kernel_fd_.get(), seg.file_offset, seg.file_size, cat("kernel ", kernel_.path)});
    }
    if (!cfg_.initrd.empty()) {
        initrd_fd_ = unique_fd(::open(cfg_.initrd.c_str(), O_RDONLY | O_CLOEXEC));
        if (!initrd_fd_) fail_errno(ErrorKind::input, cat("initramfs ", cfg_.initrd));
        struct stat st;
        if (::fstat(initrd_fd_.get(), &st) != 0) fail_errno(ErrorKind::input, cat("initramfs ", cfg_.initrd));
        if (!S_ISREG(st.st_mode)) fail(ErrorKind::input, "initramfs ", cfg_.initrd, ": not a regular file");
        initrd_size_ = uint64_t(st.st_size);
        initrd_gpa_ = place_initrd(kernel_, m, initrd_size_);
        spans.push_back({initrd_gpa_, initrd_fd_.get(), 0, initrd_size_, cat("initramfs ", cfg_.initrd)});
    }
    return spans;   // each loader checks them against RAM and the files (check_image_span)
}

void Machine::load_guest() {
    const MemoryLayout &m = mem_;
    auto write = [&](uint64_t gpa, const void *data, size_t len, const char *what) {
        if (!ram_.write(gpa, data, len))
            fail(ErrorKind::usage, what, " (", len, " bytes at ", hex(gpa), ") does not fit in ", m.mem_size >> 20,
                 " MiB of guest RAM");
    };
    const uint64_t initrd_gpa = initrd_gpa_, initrd_size = initrd_size_;
    CmdlineOptions co;
    co.accel = Accel::kvm;
    co.kaslr = cfg_.kaslr;
    co.verbose = cfg_.kernel_verbose;
    co.loglevel = cfg_.kernel_loglevel;
    co.has_initrd = !cfg_.initrd.empty();
    if (m.shm_size) co.shm = ShmRegion{m.shm_base, m.shm_size};
    for (auto &n : topo_.nodes) co.has_memory_only_node |= n.llcs == 0;
    co.extra = cfg_.cmdline_extra;
    if (quirks_.noxsave) {
        co.extra.push_back("noxsave");
        quirk_used("cmdline_noxsave", "\"noxsave\" added to the kernel command line (the emulator refuses xrstor)");
    }
    cmdline_ = build_cmdline(co);
    if (cmdline_.size() > kernel_.cmdline_max)
        fail(ErrorKind::usage, "kernel command line is ", cmdline_.size(), " bytes; ", kernel_.path, " accepts at most ",
             kernel_.cmdline_max, " (cmdline_size of the image / COMMAND_LINE_SIZE)");
    write(CMDLINE_GPA, cmdline_.c_str(), cmdline_.size() + 1, "kernel command line");

    BootParamsInput in;
    in.kernel = &kernel_;
    in.cmdline_len = uint32_t(cmdline_.size());
    in.initrd_gpa = initrd_gpa;
    in.initrd_size = initrd_size;
    in.e820 = e820_table(m);
    auto bp = build_boot_params(in);
    write(ZERO_PAGE_GPA, bp.data(), bp.size(), "boot_params");

    auto gdt = boot_gdt();
    write(GDT_GPA, gdt.data(), sizeof gdt, "GDT");
    uint64_t idt = 0;
    write(IDT_GPA, &idt, sizeof idt, "IDT");
    auto pt = identity_page_tables();
    write(PML4_GPA, pt.data(), pt.size(), "page tables");
    AcpiTables acpi = build_acpi_tables(topo_, m);
    write(ACPI_GPA, acpi.bytes.data(), acpi.bytes.size(), "ACPI tables");
    auto mp = build_mptable(topo_);
    if (!mp.empty()) write(MPTABLE_GPA, mp.data(), mp.size(), "MP table");
}

// ---- run ---------------------------------------------------------------------------

void Machine::finish(ExitReason reason, const std::string &detail, int vcpu) {
    {
        std::lock_guard<std::mutex> lk(mu_);
        if (ended_) return;   // the first end wins
        ended_ = true;
        reason_ = reason;
        detail_ = detail;
        end_vcpu_ = vcpu;
        stop_.store(true, std::memory_order_release);
    }
    notify_eventfd(wake_.get());
    kick_all();
}

void Machine::kick_all() {
    for (size_t i = 0; i < vcpus_.size(); ++i) {
        vcpus_[i].run()->immediate_exit = 1;
        std::atomic_thread_fence(std::memory_order_release);
        if (thread_started_[i].load(std::memory_order_acquire)) pthread_kill(threads_[i], kick_signal());
    }
}

void Machine::console_bytes(const char *p, size_t n) {
    bool panic = false;
    std::string detail;
    {
        std::lock_guard<std::mutex> lk(mu_);
        pending_console_.append(p, n);
        console_tail_.append(p, n);
        for (size_t i = 0; i < n; ++i) {
            if (p[i] != '\n') {
                if (console_line_.size() < 4096) console_line_.push_back(p[i]);
                continue;
            }
            if (!panic && console_line_.find(PANIC_TEXT) != std::string::npos) {
                panic = true;
                detail = std::string(trim(console_line_));
            }
            for (const char *t : POWER_OFF_TEXTS)
                if (console_line_.find(t) != std::string::npos) detail = t;
            console_line_.clear();
        }
    }
    if (panic) finish(ExitReason::panic, detail, -1);
    else if (!detail.empty()) finish(ExitReason::shutdown, cat("guest printed \"", detail, "\""), -1);
}

void Machine::com2_bytes(const char *p, size_t n) {
    std::lock_guard<std::mutex> lk(mu_);
    if (pending_com2_.size() < (8u << 20)) pending_com2_.append(p, n);
}

void Machine::deliver_output() {
    std::string console, com2;
    {
        std::lock_guard<std::mutex> lk(mu_);
        console.swap(pending_console_);
        com2.swap(pending_com2_);
    }
    if (!console.empty()) observer_.on_console(console);
    if (!com2.empty()) observer_.on_com2(com2);
}

void Machine::handle_io(const KvmVcpu &, kvm_run *run) {
    auto &io = run->io;
    uint8_t *data = reinterpret_cast<uint8_t *>(run) + io.data_offset;
    const bool out = io.direction == KVM_EXIT_IO_OUT;
    for (uint32_t c = 0; c < io.count; ++c) {
        uint8_t *item = data + size_t(c) * io.size;
        for (uint32_t byte = 0; byte < io.size; ++byte) {
            uint16_t port = uint16_t(io.port + byte);
            uint8_t &v = item[byte];
            Uart16550 *uart = nullptr;
            uint8_t off = 0;
            if (port >= COM1_PORT && port < COM1_PORT + 8) uart = com1_.get(), off = uint8_t(port - COM1_PORT);
            else if (port >= COM2_PORT && port < COM2_PORT + 8) uart = com2_.get(), off = uint8_t(port - COM2_PORT);
            if (uart) {
                if (out) uart->write(off, v);
                else v = uart->read(off);
            } else if (port == I8042_DATA_PORT || port == I8042_COMMAND_PORT) {
                if (!out) v = 0;
                else if (i8042_is_reset(port, v)) finish(ExitReason::reboot, "i8042 reset (OUT 0x64 <- 0xFE)", -1);
            } else if (!out) {
                v = 0xFF;   // nothing here (COM3/COM4 probes fail)
            }
        }
    }
}

bool Machine::handle_internal_error(const KvmVcpu &vcpu, kvm_run *run, std::string &detail) {
    kvm_regs regs = vcpu.get_regs();
    kvm_sregs sregs = vcpu.get_sregs();
    GuestMemoryAccess mem;
    mem.read = [this](uint64_t gpa, void *buf, size_t len) {
        return ram_.read(gpa, buf, len);
    };
    mem.write = [this](uint64_t gpa, const void *buf, size_t len) {
        return ram_.write(gpa, buf, len);
    };
    // Fetch up to 15 bytes at CS:RIP through the guest's page tables.
    uint8_t code[15] = {};
    size_t got = 0;
    while (got < sizeof code) {
        uint64_t va = regs.rip + got;
        auto pa = guest_virt_to_phys(mem, sregs, va);
        if (!pa) break;
        size_t chunk = std::min<size_t>(sizeof code - got, 0x1000 - (va & 0xFFF));
        if (!mem.read(*pa, code + got, chunk)) break;
        got += chunk;
    }
    std::string bytes;
    for (size_t i = 0; i < std::min<size_t>(got, 8); ++i) bytes += cat(i ? " " : "", std::hex, (code[i] < 16 ? "0" : ""), unsigned(code[i]));
    detail = cat("KVM_EXIT_INTERNAL_ERROR suberror ", run->internal.suberror, " at RIP ", hex(regs.rip), " bytes [",
                 bytes, "]");
    if (!quirks_.emulate_refused || run->internal.suberror != KVM_INTERNAL_ERROR_EMULATION || got == 0) return false;
    EmulationOutcome o = emulate_refused_instruction(code, got, regs, sregs, mem);
    if (o.kind == EmulationOutcome::Kind::unknown) {
        detail += " (an instruction the host's KVM refuses and ktstr-vmm does not emulate)";
        return false;
    }
    vcpu.set_regs(regs);
    if (o.kind == EmulationOutcome::Kind::inject_breakpoint) {
        kvm_vcpu_events ev = vcpu.get_events();
        ev.exception.injected = 1;
        ev.exception.nr = 3;   // #BP
        ev.exception.has_error_code = 0;
        ev.flags = 0;
        vcpu.set_events(ev);
    }
    quirk_used("emulate_" + o.name, cat("the host's KVM refused '", o.name, "'; executed in userspace (first at RIP ",
                                        hex(regs.rip - o.length), ")"));
    return true;
}

// An MSR access the host's KVM refused (KVM_CAP_X86_USER_SPACE_MSR).  EFER is
// applied through the segment registers ioctl; other writes are dropped and
// other reads return 0, each reported.
void Machine::handle_msr(const KvmVcpu &vcpu, kvm_run *run) {
    constexpr uint32_t MSR_EFER = 0xC0000080;
    const bool write = run->exit_reason == KVM_EXIT_X86_WRMSR;
    const uint32_t index = run->msr.index;
    run->msr.error = 0;
    if (index == MSR_EFER) {
        kvm_sregs s = vcpu.get_sregs();
        if (write) {
            // LMA follows LME once paging is on; KVM sets it when CR0.PG is written.
            s.efer = (run->msr.data & ~uint64_t(0x400)) | (s.efer & 0x400);
            vcpu.set_sregs(s);
        } else {
            run->msr.data = s.efer;
        }
        quirk_used(write ? "msr_efer_write" : "msr_efer_read",
                   "the host's KVM refused an EFER access; applied through KVM_SET_SREGS / read from KVM_GET_SREGS");
        return;
    }
    if (!write) run->msr.data = 0;
    quirk_used(cat(write ? "msr_write_ignored_" : "msr_read_zero_", hex(index)),
               cat("the host's KVM refused ", write ? "WRMSR" : "RDMSR", " ", hex(index), "; ",
                   write ? "the write was dropped" : "the guest read 0"));
}

void Machine::vcpu_thread(size_t index) {
    const KvmVcpu &vcpu = vcpus_[index];
    kvm_run *run = vcpu.run();
    const int apic = int(vcpu.id());
    tids_[index] = pid_t(syscall(SYS_gettid));
    char name[16];
    snprintf(name, sizeof name, "vcpu%d", apic);
    pthread_setname_np(pthread_self(), name);
    try {
        if (index == 0) first_run_mono_ns_.store(mono_ns());
        while (!stop_.load(std::memory_order_acquire)) {
            int rc = vcpu.run_once();
            if (index == 0 && first_exit_s_.load() < 0) {
                first_exit_mono_ns_.store(mono_ns());
                first_exit_s_.store(seconds_since(t0_));
            }
            if (rc < 0) {   // kicked
                run->immediate_exit = 0;
                continue;
            }
            switch (run->exit_reason) {
            case KVM_EXIT_IO: handle_io(vcpu, run); break;
            case KVM_EXIT_MMIO:
                if (!run->mmio.is_write) std::memset(run->mmio.data, 0xFF, sizeof run->mmio.data);
                break;
            case KVM_EXIT_HLT:
                // Only without an in-kernel LAPIC; treat as the vCPU being done.
                finish(ExitReason::error, cat("vCPU ", apic, " executed HLT without an in-kernel LAPIC"), apic);
                break;
            case KVM_EXIT_INTR: break;
            case KVM_EXIT_X86_RDMSR:
            case KVM_EXIT_X86_WRMSR: handle_msr(vcpu, run); break;
            case KVM_EXIT_SHUTDOWN: {
                kvm_regs r = vcpu.get_regs();
                finish(ExitReason::triple_fault, cat("KVM_EXIT_SHUTDOWN (triple fault) on vCPU ", apic, " at RIP ", hex(r.rip)), apic);
                break;
            }
            case KVM_EXIT_SYSTEM_EVENT:
                if (run->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN) finish(ExitReason::shutdown, "KVM system event SHUTDOWN", apic);
                else if (run->system_event.type == KVM_SYSTEM_EVENT_RESET) finish(ExitReason::reboot, "KVM system event RESET", apic);
                else if (run->system_event.type == KVM_SYSTEM_EVENT_CRASH) finish(ExitReason::panic, "KVM system event CRASH", apic);
                else finish(ExitReason::error, cat("KVM system event type ", run->system_event.type), apic);
                break;
            case KVM_EXIT_INTERNAL_ERROR: {
                std::string detail;
                if (!handle_internal_error(vcpu, run, detail)) finish(ExitReason::error, cat("vCPU ", apic, ": ", detail), apic);
                break;
            }
            case KVM_EXIT_FAIL_ENTRY:
                finish(ExitReason::error,
                       cat("KVM_EXIT_FAIL_ENTRY on vCPU ", apic, ", hardware reason ",
                           hex(run->fail_entry.hardware_entry_failure_reason)),
                       apic);
                break;
            default: {
                kvm_regs r = vcpu.get_regs();
                finish(ExitReason::error, cat("unexpected KVM exit reason ", run->exit_reason, " on vCPU ", apic, " at RIP ", hex(r.rip)),
                       apic);
            }
            }
        }
    } catch (const std::exception &e) {
        finish(ExitReason::error, cat("vCPU ", apic, ": ", e.what()), apic);
    }
}

ExitResult Machine::run() {
    const Topology &t = topo_;
    validate_kvm_topology(t);   // before any KVM call
    quirks_ = detect_host_quirks(parse_quirk_mode(cfg_.kvm_quirks));
    if (quirks_.emulated) log::warn("host quirk detection: ", quirks_.detection);
    else log::debug("host quirk detection: ", quirks_.detection);
    phase_done("host_quirks");
    kernel_ = load_boot_image(cfg_.kvm_elf.empty() ? cfg_.kernel.bzimage : cfg_.kvm_elf);
    phase_done("open_kernel");
    mem_ = plan_memory(t, cfg_.memory_mb, cfg_.shm_size);
    ram_ = GuestRam::create(kvm_memory_plan(mem_));
    phase_done("guest_ram");

    layout_.accel = Accel::kvm;
    layout_.regions = ram_.regions();
    layout_.mem_size = mem_.mem_size;
    layout_.num_cpus = t.total_cpus();
    for (uint32_t cpu = 0; cpu < t.total_cpus(); ++cpu) layout_.vcpu_ids.push_back(t.apic_id(cpu));
    layout_.vmm_pid = getpid();
    layout_.kernel = kernel_.path;
    layout_.vmlinux = kernel_.kind == BootImage::Kind::elf && cfg_.kvm_elf == cfg_.kernel.vmlinux ? kernel_.path
                                                                                                 : cfg_.kernel.vmlinux;
    if (mem_.shm_size) layout_.shm = ShmRegion{mem_.shm_base, mem_.shm_size};

    // Kernel and initramfs bytes: on demand and in the background while the
    // guest runs (lazy), or on a helper thread while KVM is set up (eager).
    const std::vector<ImageSpan> spans = image_spans();
    const ImageLoadMode load_mode = parse_image_load_mode(cfg_.kvm_image_load);
    std::unique_ptr<LazyImageLoader> lazy;
    if (load_mode != ImageLoadMode::eager) {
        std::string why_not;
        // The background fill waits for the vCPUs: run alongside KVM set-up it
        // slowed KVM_SET_USER_MEMORY_REGION several-fold here (mm contention).
        lazy = LazyImageLoader::start(ram_, spans, why_not, /*background_fill=*/false);
        if (!lazy && load_mode == ImageLoadMode::lazy)
            fail(ErrorKind::environment, "--kvm-image-load lazy: ", why_not);
        if (!lazy) {
            image_load_note_ = cat("eager: ", why_not);
            log::debug("image loading ", image_load_note_);
        }
    }
    phase_done("image_spans");
    std::future<ImageLoadStats> loading;
    if (!lazy) loading = std::async(std::launch::async, [this, &spans] { return load_images_now(ram_, spans); });
    build_vm();
    if (!lazy) image_stats_ = loading.get();
    phase_done("wait_images");
    load_guest();
    phase_done("load_guest");
    layout_.cmdline = cmdline_;
    observer_.on_ram_ready(ram_, layout_);
    phase_done("observer_ram_ready");

    // A load that already failed (a page touched during set-up could not be
    // read) ends the run before any vCPU starts, as an eager copy would.
    if (lazy && lazy->finished()) image_stats_ = lazy->wait();

    install_kick_handler();
    const size_t n = vcpus_.size();
    threads_.assign(n, pthread_t{});
    thread_started_ = std::vector<std::atomic<bool>>(n);
    tids_.assign(n, 0);
    std::vector<std::thread> workers;
    layout_.run_start_mono_ns = mono_ns();
    for (size_t i = 0; i < n; ++i) {
        workers.emplace_back([this, i] { vcpu_thread(i); });
        threads_[i] = workers.back().native_handle();
        thread_started_[i].store(true, std::memory_order_release);
    }
    if (stop_.load()) kick_all();   // a kick before thread_started_ was set
    if (lazy) lazy->fill_rest();
    for (int i = 0; i < 500; ++i) {  // tids for the layout: the threads set them first thing
        if (std::all_of(tids_.begin(), tids_.end(), [](pid_t x) { return x != 0; })) break;
        std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    layout_.vcpu_tids = tids_;
    phase_done("threads");
    // The guest runs. Observers (the monitor socket, the boot event) are handed
    // guest RAM once the lazy fill has put every image page in place, or when
    // the run ends first; meanwhile the watchdog below serves stop requests
    // and the timeout.
    std::string load_error;
    auto images_done = [&] {
        try {
            image_stats_ = lazy->wait();
        } catch (const std::exception &e) {
            image_stats_ = lazy->stats();
            load_error = cat("loading the guest images: ", e.what());
            finish(ExitReason::error, load_error, -1);
        }
        lazy.reset();
    };
    bool announced = false;
    auto announce = [&] {
        if (announced) return;
        announced = true;
        ojson boot = boot_event_fields(cfg_, cmdline_);
        boot["kernel"] = kernel_.path;
        boot["boot_protocol"] = kernel_.kind == BootImage::Kind::elf ? "elf-entry" : "bzimage-64bit";
        boot["entry"] = hex(kernel_.entry);
        boot["shm"] = mem_.shm_size ? ojson{{"base_pa", mem_.shm_base}, {"size", mem_.shm_size}} : ojson(nullptr);
        boot["emulated_kvm"] = quirks_.emulated;
        boot["quirk_detection"] = quirks_.detection;
        boot["host_quirks"] = quirks_json();
        boot["image_load"] = {{"mode", image_stats_.lazy ? "lazy" : "eager"},
                              {"bytes", image_stats_.bytes},
                              {"fill_ms", std::round(image_stats_.fill_ms * 1000) / 1000},
                              {"faults_served", image_stats_.faults_served}};
        if (!image_load_note_.empty()) boot["image_load"]["reason"] = image_load_note_;
        if (!load_error.empty()) boot["image_load"]["error"] = load_error;
        // Where the time to the first guest instruction went (ms per phase, from
        // the VMM's start; the vCPU threads are started at the end of "threads").
        ojson startup = ojson::object();
        for (auto &[name, ms] : phases_) startup[name] = std::round(ms * 1000) / 1000;
        if (uint64_t fr = first_run_mono_ns_.load())
            startup["spawn_to_first_kvm_run"] = std::round(double(int64_t(fr - layout_.run_start_mono_ns)) / 1e3) / 1000;
        boot["startup_ms"] = startup;
        observer_.on_started(ram_, layout_, boot);
    };
    if (!lazy) announce();

    // Watchdog: stop requests, timeout, the lazy fill's end, output hand-over, observer ticks.
    Clock::time_point next_tick = Clock::now();
    while (!stop_.load(std::memory_order_acquire)) {
        pollfd fds[3] = {{stop_source_.fd(), POLLIN, 0}, {wake_.get(), POLLIN, 0}, {lazy ? lazy->done_fd() : -1, POLLIN, 0}};
        ::poll(fds, 3, 20);
        if (lazy && lazy->finished()) {
            images_done();
            if (!load_error.empty()) break;
            announce();
        }
        if (announced) deliver_output();   // console and COM2 after the boot event
        if (auto r = stop_source_.reason()) {
            std::string why = *r == ExitReason::signal ? cat("signal ", strsignal(stop_source_.signal()))
                                                        : std::string("stop requested");
            finish(*r, why, -1);
            break;
        }
        if (cfg_.timeout_s > 0 && seconds_since(t0_) >= cfg_.timeout_s) {
            finish(ExitReason::timeout, cat("no end after ", cfg_.timeout_s, " s (--timeout)"), -1);
            break;
        }
        if (announced && Clock::now() >= next_tick) {
            observer_.on_tick(ram_, stop_source_);
            next_tick = Clock::now() + std::chrono::milliseconds(int(TICK_INTERVAL_S * 1000));
        }
    }

    // Teardown: every vCPU thread leaves KVM_RUN on the kick (immediate_exit + signal).
    kick_all();
    for (auto &w : workers) w.join();
    // The run ended before the fill did: it completes (a vCPU may have been
    // waiting on a page), then the observers hear of the start before the end.
    if (lazy) images_done();
    announce();
    deliver_output();

    ExitResult r;
    {
        std::lock_guard<std::mutex> lk(mu_);
        // A failed load is the cause of whatever the guest did after it.
        if (!load_error.empty()) reason_ = ExitReason::error, detail_ = load_error;
        r.reason = reason_;
        r.detail = detail_;
        r.console_tail = console_tail_.get();
    }
    if (r.reason == ExitReason::signal) r.signal = stop_source_.signal();
    // Where the guest was when we stopped it: the first thing to look up
    // (addr2line / System.map) when a boot hangs.
    if (r.reason == ExitReason::timeout || r.reason == ExitReason::signal || r.reason == ExitReason::stopped) {
        try {
            r.detail += cat("; BSP at RIP ", hex(vcpus_[0].get_regs().rip));
        } catch (const Error &) {
        }
    }
    r.elapsed_s = seconds_since(t0_);
    r.extra["emulated_kvm"] = quirks_.emulated;
    r.extra["host_quirks"] = quirks_json();
    // Timings (CLOCK_MONOTONIC ns): the BSP's first KVM_RUN (its first guest
    // instruction follows) and first exit; bench/vmm_kvm.sh measures from exec.
    r.extra["first_run_mono_ns"] = first_run_mono_ns_.load();
    r.extra["first_exit_mono_ns"] = first_exit_mono_ns_.load();
    r.extra["first_exit_s"] = first_exit_s_.load();
    if (end_vcpu_ >= 0) r.extra["vcpu"] = end_vcpu_;
    observer_.on_exit(ram_, r);
    return r;
}

} // namespace

ExitResult run_kvm(const VmConfig &cfg, Observer &observer, StopSource &stop) {
    Machine m(cfg, observer, stop);
    return m.run();
}

} // namespace ktstr::vmm
