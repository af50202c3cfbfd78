// libktstr/vmm: the accelerator-neutral contract of ktstr-vmm.
//
// One VM run, whichever accelerator executes it:
//
//   VmConfig ──▶ run_vm(config, observer, stop) ──▶ ExitResult
//                    │  KVM: our own VMM (libktstr/vmm/kvm*.cpp)
//                    │  TCG: qemu-system-x86_64 as a supervised child (qemu.cpp)
//                    ▼
//   Observer: console bytes (COM1), COM2 bytes, guest RAM ready (write the SHM
//   header), VM started (layout: the monitor socket, --json-layout), periodic
//   ticks (ring drain), and the final say on the exit result.
//
// Guest RAM is always memfd-backed and shared (MAP_SHARED), described by a
// region table {gpa, size, fd_index, fd_offset, node}; the same fds and table
// go to ktstr-monitor over the monitor socket (ktstr.layout/1), so the monitor
// reads guest memory the same way under both accelerators.
//
// Threading: a backend calls the Observer from the thread that called run_vm()
// only, one call at a time.  StopSource::request() may be called from any
// thread and from a signal handler.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sys/types.h>

#include "ktstr/json.h"
#include "ktstr/topology.h"
#include "ktstr/util.h"

namespace ktstr::vmm {

inline constexpr uint64_t MiB = 1ull << 20;
inline constexpr uint64_t GiB = 1ull << 30;

// ---- accelerators -------------------------------------------------------------

enum class Accel { automatic, kvm, tcg };
const char *accel_name(Accel a);                 // "auto", "kvm", "tcg"
Accel parse_accel(const std::string &text);       // Error(usage) naming the valid words

struct AccelChoice {
    Accel accel = Accel::tcg;                     // never automatic
    std::string reason;                           // one line: why this one
};
// Resolve `requested`; for automatic: KVM only where it runs guests at hardware
// speed (kvm_speed_probe()), else TCG.  Explicit kvm/tcg are returned as is.
AccelChoice choose_accel(Accel requested);

// ---- the kernel ---------------------------------------------------------------

// The boot-protocol fields both backends need from a bzImage's setup header
// (Documentation/arch/x86/boot.rst).
struct BzImageHeader {
    uint16_t protocol = 0;          // 0x206, e.g. 0x020f
    uint8_t setup_sects = 0;        // 0x1F1 (0 means 4)
    uint8_t loadflags = 0;          // 0x211
    uint32_t initrd_addr_max = 0;   // 0x22C
    uint32_t kernel_alignment = 0;  // 0x230
    uint16_t xloadflags = 0;        // 0x236
    uint32_t cmdline_size = 0;      // 0x238 (max strlen of the command line)
    uint32_t init_size = 0;         // 0x260 (bytes the kernel needs from its load address)
};
// Parse and validate (boot signature, "HdrS", protocol >= 2.12, 64-bit entry);
// Error(input) naming `where` and the failed check.
BzImageHeader parse_bzimage_header(std::string_view image, const std::string &where);
// The release ("6.12.118") from the version string the setup header points at
// (0x200 + kernel_version), when it lies within `head`; nullopt otherwise.
std::optional<std::string> bzimage_version(std::string_view head);

struct KernelImage {
    std::string bzimage;            // absolute path
    std::string vmlinux;            // ELF with symbols, "" when not found
    std::string version;            // from kernel.json, else the bzImage's own, else empty
    BzImageHeader header;
};
// --kernel PATH: a bzImage, a directory holding one (bzImage, arch/x86/boot/bzImage,
// vmlinuz*), or a ktstr.kernel/1 kernel.json.  Error(input) with what was tried.
KernelImage resolve_kernel(const std::string &path);

// ---- configuration -------------------------------------------------------------

struct VmConfig {
    Accel accel = Accel::automatic;
    KernelImage kernel;
    std::string initrd;                          // path; "" = none
    std::vector<std::string> cmdline_extra;      // words after the defaults (caller's)
    bool kaslr = true;                           // the monitor wants KASLR on by default
    bool kernel_verbose = false;                 // earlyprintk + loglevel=7 (else loglevel=kernel_loglevel)
    unsigned kernel_loglevel = 0;                // console loglevel without kernel_verbose (0..8)
    Topology topology;
    uint64_t memory_mb = 512;
    uint64_t shm_size = 16 * MiB;                // guest<->host shared region; 0 = none
    double timeout_s = 60;                       // wall clock from start; 0 = none
    int com2_input_fd = -1;                      // bytes read here go to the guest's COM2 (an
                                                 // interactive shell); at EOF an EOT (^D) is sent
    // TCG only.
    std::string qemu_binary;                     // "" = qemu-system-x86_64 from $PATH
    std::string qemu_machine;                    // "" = choose (see qemu_machine_for())
    std::vector<std::string> qemu_extra_args;    // appended verbatim (experiments, debugging)
    // One host thread runs every vCPU ("single", the default) or one thread
    // per vCPU ("multi", MTTCG).  Multi races with the kernel's int3-based
    // code patching (static keys, alternatives): vCPUs execute stale
    // translations and oops on a stray int3, as seen in 4 of 12 boots with
    // 8 vCPUs here; single was reliable and no slower on 2 host cores.
    bool tcg_multi_thread = false;
    // KVM only.
    std::string kvm_elf;                         // boot this ELF64 (a vmlinux, a test guest) through its
                                                 // entry point instead of kernel.bzimage ("" = the bzImage)
    std::string kvm_quirks = "auto";             // host-quirk layer: auto, on, off (see kvm.h)
    // Kernel and initramfs bytes: "lazy" starts the vCPUs at once and fills
    // pages on first touch (userfaultfd), "eager" copies them all first,
    // "auto" is lazy where userfaultfd is usable (see image_load.h).
    std::string kvm_image_load = "auto";
};
// Throws Error(usage) for what no backend could run (memory 0, shm unaligned ...).
void validate_config(const VmConfig &c);

// ---- guest RAM -----------------------------------------------------------------

// One contiguous guest-physical range backed by [fd_offset, fd_offset+size) of
// memfd number fd_index.  Ranges never overlap; `node` is the NUMA node.
struct RamRegion {
    uint64_t gpa = 0;
    uint64_t size = 0;
    uint32_t fd_index = 0;
    uint64_t fd_offset = 0;
    uint32_t node = 0;
    bool operator==(const RamRegion &) const = default;
};

struct ShmRegion {
    uint64_t base_pa = 0;
    uint64_t size = 0;
    bool operator==(const ShmRegion &) const = default;
};

// Where guest memory goes: the memfds to create (their sizes) and the regions
// over them, plus the shared region (inside RAM, outside the guest's RAM map).
struct MemoryPlan {
    std::vector<uint64_t> fd_sizes;
    std::vector<RamRegion> regions;
    std::optional<ShmRegion> shm;
    uint64_t total() const;
};

// The guest's RAM: memfds (no filesystem presence), each mapped MAP_SHARED once
// for its whole size, so host pointers stay valid for the VM's lifetime.
class GuestRam {
public:
    GuestRam() = default;
    GuestRam(GuestRam &&) = default;
    GuestRam &operator=(GuestRam &&) = default;

    // memfd_create("ktstr-guest-ram-<pid>-<i>") per fd, ftruncate, mmap.
    // Throws Error(environment) naming the size on failure.
    static GuestRam create(const MemoryPlan &plan);

    const std::vector<RamRegion> &regions() const { return regions_; }
    size_t fd_count() const { return fds_.size(); }
    int fd(size_t index) const { return fds_.at(index).get(); }
    std::vector<int> fds() const;
    uint64_t fd_size(size_t index) const { return maps_.at(index).size(); }
    uint64_t total_size() const;

    // Host pointer to [gpa, gpa+len) if that range lies inside one region,
    // else nullptr (guest-supplied addresses are untrusted).
    uint8_t *host(uint64_t gpa, uint64_t len) const;
    bool read(uint64_t gpa, void *dst, uint64_t len) const;
    bool write(uint64_t gpa, const void *src, uint64_t len) const;
    // Copy [file_offset, file_offset+len) of the regular file `fd` to guest
    // [gpa, gpa+len), which must lie inside one region (else false). The bytes
    // go through the memfd (pwrite from a read-only mapping of the file), so
    // the kernel fills the page cache without one user page fault per guest
    // page. `what` names the file in errors: Error(input) on a failed or
    // short read (the file shrank), Error(environment) if the memfd refuses.
    bool load_file(uint64_t gpa, int fd, uint64_t file_offset, uint64_t len, const std::string &what) const;

private:
    // The region holding all of [gpa, gpa+len), or nullptr.
    const RamRegion *region_of(uint64_t gpa, uint64_t len) const;
    std::vector<unique_fd> fds_;
    std::vector<Mapping> maps_;
    std::vector<RamRegion> regions_;
};

// Error(input) naming `what` unless fd is a regular file holding bytes
// [file_offset, file_offset+len).
void check_file_range(int fd, uint64_t file_offset, uint64_t len, const std::string &what);

// ---- the layout handed to the monitor --------------------------------------------

// ktstr.layout/1: sent with the RAM fds over the monitor socket (fd i of the
// message = fd_index i) and printed by --json-layout as a `layout` event.
struct Layout {
    std::string arch = "x86_64";
    Accel accel = Accel::tcg;
    std::vector<RamRegion> regions;
    uint64_t mem_size = 0;
    uint32_t num_cpus = 0;
    std::vector<uint32_t> vcpu_ids;              // APIC id of each vCPU, in CPU order
    pid_t vmm_pid = 0;                           // KVM: ktstr-vmm; TCG: QEMU
    std::optional<std::vector<pid_t>> vcpu_tids; // thread of each vCPU when known
    uint64_t run_start_mono_ns = 0;              // CLOCK_MONOTONIC when the guest started
    std::string kernel;                          // bzImage path
    std::string vmlinux;                         // "" -> null
    std::optional<ShmRegion> shm;
    std::string cmdline;

    ojson to_json() const;
    static Layout from_json(const json &doc, const std::string &where);  // Error(input)
};

// ---- running --------------------------------------------------------------------

enum class ExitReason {
    shutdown,       // guest powered off
    reboot,         // guest reset itself (the guest agent ends with a reboot)
    timeout,        // --timeout expired
    signal,         // ktstr-vmm got SIGINT/SIGTERM/SIGHUP
    stopped,        // an Observer or another thread asked to stop (detail says why)
    panic,          // guest kernel panic
    triple_fault,   // reset without the kernel asking for one
    error,          // the accelerator failed (QEMU died, KVM error ...)
};
const char *exit_reason_name(ExitReason r);

struct ExitResult {
    ExitReason reason = ExitReason::error;
    std::string detail;                    // one line: what happened, for humans and the exit event
    double elapsed_s = 0;                  // guest start -> guest gone
    std::string console_tail;              // last lines of COM1 (kernel console)
    int signal = 0;                        // for ExitReason::signal
    // Filled by the guest side (Observer::on_exit) from the ring/COM2 sentinels.
    std::optional<int> guest_exit_code;
    ojson extra = ojson::object();         // more fields for the exit event (timings ...)
};

// Process exit status for a run (guide: 0 ok, 1 guest reported failure,
// 3 infrastructure): a guest exit code decides when present; otherwise a clean
// power-off is success, and everything else is an infrastructure failure.
int process_exit_code(const ExitResult &r);

// Ask a running VM to stop.  request() is async-signal-safe and thread-safe;
// the first request wins.  The backend polls fd() (an eventfd) in its loop.
class StopSource {
public:
    StopSource();
    void request(ExitReason reason, int signal = 0);
    bool requested() const { return reason_.load() >= 0; }
    std::optional<ExitReason> reason() const;
    int signal() const { return signal_.load(); }
    int fd() const { return event_.get(); }
    // Route SIGINT, SIGTERM and SIGHUP to request(ExitReason::signal, sig) for
    // the lifetime of the returned guard (previous handlers restored after).
    std::shared_ptr<void> install_signal_handlers();

private:
    std::atomic<int> reason_{-1};
    std::atomic<int> signal_{0};
    unique_fd event_;
};

// Everything a backend reports while it runs.  Defaults do nothing.
class Observer {
public:
    virtual ~Observer() = default;
    // Guest RAM exists, the guest has not run yet: write the SHM header here.
    virtual void on_ram_ready(const GuestRam &, const Layout &) {}
    // The guest is running; layout is complete (pids, tids).
    virtual void on_started(const GuestRam &, const Layout &, const ojson & /*boot_event*/) {}
    virtual void on_console(std::string_view) {}    // COM1 bytes as they arrive
    virtual void on_com2(std::string_view) {}       // COM2 bytes as they arrive
    // About every tick_interval_s while the guest runs (ring drain, watchdogs).
    // May call stop.request(ExitReason::stopped) (say why through on_exit's detail).
    virtual void on_tick(const GuestRam &, StopSource &) {}
    // Last word before run_vm() returns; RAM is still mapped (final ring drain)
    // and the guest is gone.  May set guest_exit_code, detail, extra.
    virtual void on_exit(const GuestRam &, ExitResult &) {}
    // VmConfig::com2_input_fd is forwarded to the guest only while this holds
    // (the guest's shell is up: bytes sent earlier would be lost in the UART).
    virtual bool wants_com2_input() const { return true; }
};
inline constexpr double TICK_INTERVAL_S = 0.1;

// Fan-out to several observers, in order (front end: console sink, COM2 file,
// event writer, monitor socket, guest-side ring/sentinel parser ...).
class ObserverList : public Observer {
public:
    void add(Observer *o) { list_.push_back(o); }
    void on_ram_ready(const GuestRam &ram, const Layout &l) override;
    void on_started(const GuestRam &ram, const Layout &l, const ojson &boot) override;
    void on_console(std::string_view b) override;
    void on_com2(std::string_view b) override;
    void on_tick(const GuestRam &ram, StopSource &s) override;
    void on_exit(const GuestRam &ram, ExitResult &r) override;
    bool wants_com2_input() const override;

private:
    std::vector<Observer *> list_;
};

// Run one VM to the end.  `config.accel` must be kvm or tcg (choose_accel()
// first).  Errors before the guest starts throw ktstr::Error; once it runs,
// every ending is a ExitResult (reason error with detail for backend failures).
ExitResult run_vm(const VmConfig &config, Observer &observer, StopSource &stop);
ExitResult run_tcg(const VmConfig &config, Observer &observer, StopSource &stop);
ExitResult run_kvm(const VmConfig &config, Observer &observer, StopSource &stop);

// The boot event's common fields (accel, kernel, topology, cpus, memory_mb, cmdline);
// backends add their own (qemu argv, machine ...).
ojson boot_event_fields(const VmConfig &config, const std::string &cmdline);

// ---- the kernel command line ------------------------------------------------------

struct CmdlineOptions {
    Accel accel = Accel::tcg;
    bool kaslr = true;
    bool verbose = false;      // earlyprintk=serial loglevel=7
    unsigned loglevel = 0;     // loglevel=N when not verbose
    bool has_initrd = true;
    std::optional<ShmRegion> shm;
    bool has_memory_only_node = false;
    // TCG: the guest's TSC ticks at the host's rate; telling the kernel skips
    // calibrations that fail (and then hang the boot) on a loaded host.
    std::optional<uint64_t> tsc_khz;
    std::vector<std::string> extra;
};
// spec vmm.md §14, per accelerator: TCG has no kvm-clock; the SHM region is
// kept out of RAM with memmap=SIZE$ADDR under TCG (the KVM backend leaves it out
// of its own E820 table) and announced as KTSTR_SHM_BASE/KTSTR_SHM_SIZE.
std::string build_cmdline(const CmdlineOptions &o);
// "memmap=16M$0x1e000000" (size in K/M/G when exact, else bytes).
std::string memmap_param(const ShmRegion &shm);
// "KTSTR_SHM_BASE=0x1e000000 KTSTR_SHM_SIZE=0x1000000"
std::string shm_params(const ShmRegion &shm);

} // namespace ktstr::vmm
