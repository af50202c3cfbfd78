// libktstr/monitor: sampling a running guest kernel's scheduler state from
// host-side reads of guest memory, and the pure functions that turn samples
// into a summary and a verdict (ktstr-report calls the same ones).
//
//   Vmlinux        symbols + BTF offsets + banner + HZ of one kernel build
//   locate_kernel  where that kernel sits in guest memory (KASLR recovery)
//   resolve_rq_pas readiness: per-CPU runqueues valid and self-consistent
//   Sampler        one Sample per call: per-CPU rq / sched_ext / schedstat / domains
//   summarize / evaluate   spec section 8
//   list_maps / list_progs / array value read+write   spec section 9
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ktstr/guestmem.h"
#include "ktstr/json.h"
#include "ktstr/sym.h"

namespace ktstr::monitor {

using guestmem::AddressSpace;
using guestmem::GuestMem;
using guestmem::KernelLayout;

// ---- what we need from the vmlinux -----------------------------------------------

struct KernelSymbols {
    uint64_t runqueues = 0;            // per-CPU symbol: raw st_value
    uint64_t per_cpu_offset = 0;       // unsigned long[NR_CPUS]
    uint64_t linux_banner = 0;
    std::optional<uint64_t> page_offset_base, init_top_pgt, pgtable_l5_enabled, phys_base, text;
    std::optional<uint64_t> scx_root, scx_watchdog_timeout, map_idr, prog_idr;
};

// Number of sched_ext event counters we know (spec 3.2), in output order.
inline constexpr size_t SCX_EVENT_COUNT = 13;
// Lower-snake names without the SCX_EV_ prefix ("select_cpu_fallback", ...).
const std::array<const char *, SCX_EVENT_COUNT> &scx_event_names();
// Index of a counter by that name (also the pre-rename "enq_slice_dfl"); nullopt if unknown.
std::optional<size_t> scx_event_index(std::string_view name);
// The two counters the verdict rates (spec 8.6 step 5).
inline constexpr size_t SCX_EV_SELECT_CPU_FALLBACK = 0, SCX_EV_DISPATCH_KEEP_LAST = 2;

struct DomainOffsets {
    uint64_t parent = 0, level = 0, flags = 0, span_weight = 0, balance_interval = 0,
             nr_balance_failed = 0, max_newidle_lb_cost = 0;
    std::optional<uint64_t> name;
    // newidle_call, newidle_success, newidle_ratio: all three or none.
    std::optional<std::array<uint64_t, 3>> newidle;
};

struct KernelOffsets {
    // struct rq (required)
    uint64_t rq_nr_running = 0, rq_clock = 0;
    std::optional<uint64_t> rq_cpu;
    // sched_ext group, offsets from the start of struct rq
    bool scx = false;
    uint64_t scx_nr_running = 0, scx_flags = 0, scx_local_dsq_nr = 0;
    // sched_ext event counters (3.2)
    enum class Events { none, v6_16, v6_18 } events = Events::none;
    uint64_t scx_sched_pcpu = 0;       // scx_sched.pcpu or .event_stats_cpu
    uint64_t event_stats_off = 0;      // inside the per-CPU object
    std::array<std::optional<uint64_t>, SCX_EVENT_COUNT> event_off{};
    std::optional<uint64_t> scx_sched_watchdog_timeout;
    // schedstats (3.4), all-or-nothing; offsets from struct rq
    bool schedstat = false;
    uint64_t run_delay = 0, pcount = 0, yld_count = 0, sched_count = 0, sched_goidle = 0,
             ttwu_count = 0, ttwu_local = 0;
    // sched domains (3.5)
    std::optional<uint64_t> rq_sd;
    std::optional<DomainOffsets> domain;
    // IDR / xarray (3.6)
    bool idr = false;
    uint64_t idr_xa_head = 0, idr_next = 0, xa_node_shift = 0, xa_node_slots = 0;
    // BPF maps
    bool bpf_map = false;
    uint64_t map_name = 0, map_type = 0, map_flags = 0, map_key_size = 0, map_value_size = 0,
             map_max_entries = 0, map_btf = 0, map_btf_value_type_id = 0, array_value = 0;
    std::optional<uint64_t> map_id;
    // BPF programs
    bool bpf_prog = false;
    uint64_t prog_type = 0, prog_aux = 0, aux_verified_insns = 0, aux_name = 0;
    std::optional<uint64_t> aux_id;
};

// Throws Error(input) when struct rq, rq.nr_running or rq.clock is missing;
// every other group degrades to "absent".
KernelOffsets resolve_offsets(const sym::Btf &btf);
// Throws Error(input) naming the symbol (runqueues, __per_cpu_offset,
// linux_banner are required).
KernelSymbols resolve_symbols(const sym::ElfSymbols &elf);

// One kernel build: everything read from its vmlinux before we touch the guest.
struct Vmlinux {
    sym::ElfSymbols elf;
    KernelSymbols syms;
    KernelOffsets off;
    std::string banner;               // linux_banner's bytes, without the NUL
    sym::HzResult hz;
    // Throws Error(input) with one line naming the file and what is missing.
    static Vmlinux load(const std::string &path, std::optional<uint32_t> explicit_hz = std::nullopt);
};

// ---- locating the kernel in guest memory (KASLR recovery) --------------------------

struct Located {
    enum class Status {
        not_yet,      // no banner in memory yet (kernel still decompressing / booting)
        mismatch,     // another kernel's banner is in memory: wrong vmlinux
        found,        // layout recovered and verified by page walks
    } status = Status::not_yet;
    KernelLayout layout;
    std::string detail;               // why not / the foreign banner
};

// Find the kernel image from guest memory alone:
//   1. linux_banner's bytes at a PA congruent to its link address modulo
//      2 MiB (the kernel is placed and slid in 2 MiB steps) => image_delta;
//   2. phys_base (read through that image mapping) => text_slide =
//      image_delta - phys_base;
//   3. page_offset_base, __pgtable_l5_enabled, init_top_pgt the same way;
//   4. verify: the kernel's own page tables map _text + slide and
//      linux_banner + slide to the PAs found in step 1.
// Cheap when nothing moved (tries the previous layout first).
Located locate_kernel(const GuestMem &mem, const Vmlinux &vm, const KernelLayout *hint = nullptr);

// A "Linux version ..." banner anywhere in memory that is not ours (a
// NUL-terminated line ending in "\n"), or empty.
std::string find_foreign_banner(const GuestMem &mem, const std::string &ours);

// Per-CPU runqueue PAs once the kernel's per-CPU areas are set up: every rq
// KVA in the direct map, offsets pairwise distinct, and rq.cpu == cpu where
// BTF has it.  nullopt (with *why) until then.
std::optional<std::vector<uint64_t>> resolve_rq_pas(const AddressSpace &as, const Vmlinux &vm,
                                                    uint32_t num_cpus, std::string *why = nullptr);

// ---- samples ------------------------------------------------------------------------

struct Schedstat {
    uint64_t run_delay = 0, pcount = 0;
    uint32_t yld_count = 0, sched_count = 0, sched_goidle = 0, ttwu_count = 0, ttwu_local = 0;
};

struct DomainLevel {
    int32_t level = 0;
    std::string name;
    int32_t flags = 0;
    uint32_t span_weight = 0, balance_interval = 0, nr_balance_failed = 0;
    uint64_t max_newidle_lb_cost = 0;
    std::optional<std::array<uint32_t, 3>> newidle;   // call, success, ratio
};

struct CpuSample {
    uint32_t nr_running = 0;
    uint64_t rq_clock = 0;
    // sched_ext (absent on kernels without it)
    bool has_scx = false;
    uint32_t scx_nr_running = 0, local_dsq_depth = 0, scx_flags = 0;
    std::optional<std::array<std::optional<int64_t>, SCX_EVENT_COUNT>> events;
    std::optional<Schedstat> schedstat;
    std::optional<uint64_t> vcpu_cpu_time_ns;
    std::optional<std::vector<DomainLevel>> domains;
};

struct Sample {
    uint64_t elapsed_ms = 0;
    std::vector<CpuSample> cpus;
};

// Reads one sample per call.  Re-reads scx_root every time (schedulers
// reload, scx_sched is reallocated) and caches its per-CPU translation.
class Sampler {
public:
    Sampler(const AddressSpace &as, const Vmlinux &vm, std::vector<uint64_t> rq_pas);
    // Reads into `out` (reusing its storage); vCPU times are filled by the caller.
    void sample(uint64_t elapsed_ms, Sample &out);
    bool domains_enabled = true;

private:
    void read_events(std::vector<CpuSample> &cpus);
    const AddressSpace &as_;
    const Vmlinux &vm_;
    std::vector<uint64_t> rq_pas_;
    std::vector<uint64_t> cpu_offsets_;
    uint64_t cached_root_ = 0, cached_pcpu_ = 0;
    std::vector<std::optional<uint64_t>> event_pas_;
};

void read_domains(const AddressSpace &as, const KernelOffsets &off, uint64_t sd_kva,
                  std::vector<DomainLevel> &out);

ojson sample_to_json(const Sample &s);
// Parses a "sample" line (extra fields ignored); Error(input) naming the field.
Sample sample_from_json(const json &doc, const std::string &where);

// ---- summary and verdict (spec section 8) ---------------------------------------------

inline constexpr uint32_t DSQ_PLAUSIBILITY_CEILING = 10000;
inline constexpr size_t MONITOR_WARMUP_SAMPLES = 20;

struct Thresholds {
    double max_imbalance_ratio = 4.0;
    uint32_t max_local_dsq_depth = 50;
    bool fail_on_stall = true;
    uint32_t sustained_samples = 5;
    double max_fallback_rate = 200.0;
    double max_keep_last_rate = 100.0;
    // Error(usage) for sustained_samples == 0 or negative/NaN limits.
    void validate() const;
};

// 10 ticks of 1/HZ in ns (HZ 1000 -> 10 ms).
uint64_t preemption_threshold_ns(uint32_t hz);

double imbalance_ratio(const Sample &s);
bool sample_looks_valid(const Sample &s);
// Sum of one event counter over the CPUs that have counters; nullopt if none.
std::optional<int64_t> sum_event(const Sample &s, size_t event_index);
bool stalled(const CpuSample &prev, const CpuSample &curr, uint64_t preemption_threshold_ns);
// True when every vCPU of a sample reports the same host CPU time: one host
// thread runs them all (QEMU TCG single-threaded), so that time says nothing
// about whether a given vCPU ran. QEMU then runs the vCPUs round-robin, and a
// busy vCPU may get no slice for a sample interval or more; a stall is only
// claimed once its rq clock stays stuck for as many consecutive samples as
// there are vCPUs.
bool shared_vcpu_thread(const Sample &s);
// Consecutive stalled intervals that make a stall: `base`, or at least the
// vCPU count when one thread runs every vCPU (above).
uint32_t stall_run_needed(uint32_t base, size_t vcpus, bool shared_thread);

struct SustainedTracker {
    uint32_t consecutive = 0, worst_run = 0;
    double worst_value = 0;
    size_t worst_at = 0;
    void record(bool violated, double value, size_t index);
    bool sustained(uint32_t n) const { return worst_run >= n; }
};

struct Summary {
    size_t total_samples = 0, valid_samples = 0;
    double max_imbalance_ratio = 1.0, avg_imbalance_ratio = 0;
    uint32_t max_local_dsq_depth = 0;
    double avg_nr_running = 0, avg_local_dsq_depth = 0;
    bool stall_detected = false;
    std::optional<std::array<int64_t, SCX_EVENT_COUNT>> event_deltas;
    double fallback_rate = 0, keep_last_rate = 0;
    int64_t max_fallback_burst = 0;
    std::optional<Schedstat> schedstat_deltas;
    double run_delay_rate = 0, sched_count_rate = 0;
};

// The summary of spec 8.5 built one sample at a time, so that a long run
// need not be kept in memory (the live monitor, ktstr-report's compact store).
class SummaryBuilder {
public:
    explicit SummaryBuilder(uint64_t preemption_threshold_ns) : threshold_ns_(preemption_threshold_ns) {}
    void add(const Sample &s);
    Summary result() const;

private:
    uint64_t threshold_ns_;
    Summary r_;
    double ratio_sum_ = 0, nr_sum_ = 0, dsq_sum_ = 0;
    size_t readings_ = 0;
    std::optional<Sample> prev_valid_;                 // neighbour for the stall flag
    std::vector<SustainedTracker> stuck_;              // per CPU: consecutive stalled intervals
    // CPU sums of the first and the latest sample carrying counters / schedstats.
    struct Counters { uint64_t elapsed_ms; std::array<int64_t, SCX_EVENT_COUNT> sum; };
    std::optional<Counters> first_events_, last_events_;
    struct Schedstats { uint64_t elapsed_ms; Schedstat sum; };
    std::optional<Schedstats> first_ss_, last_ss_;
};
Summary summarize(const std::vector<Sample> &samples, uint64_t preemption_threshold_ns);
ojson summary_to_json(const Summary &s);

struct Verdict {
    bool passed = true;
    bool evaluated = false;             // false: no samples, or data not initialized (no checks ran)
    // "monitor OK" / "monitor FAILED: <n> violation(s)" / "no monitor samples" /
    // "monitor data not yet initialized (<why>)"
    std::string summary;
    std::vector<std::string> details;   // one line per failing check
    // One per failing check: its worst sustained run, samples [at + 1 - run, at].
    struct Violation {
        std::string check;              // imbalance, local_dsq_depth, stall, fallback_rate, keep_last_rate
        std::optional<uint32_t> cpu;
        double value;
        size_t run;
        size_t at;
        std::string message;            // scenarios.md 5.4 wording
        size_t first() const { return at + 1 - run; }
    };
    std::vector<Violation> violations;
};
// Spec 8.6 over every sample (a ViolationChecker fed with them).
Verdict evaluate(const std::vector<Sample> &samples, const Thresholds &t, uint64_t preemption_threshold_ns);

// The verdict of spec 8.6 fed one sample at a time: evaluate() uses it, and
// the live monitor reports a violation line the moment a check becomes
// sustained.  Sample indices in messages count from first_index (a caller
// that skipped warmup samples passes how many, so indices match its input).
class ViolationChecker {
public:
    ViolationChecker(Thresholds t, uint64_t preemption_threshold_ns, size_t first_index = 0)
        : t_(t), threshold_ns_(preemption_threshold_ns), first_index_(first_index), index_(first_index) {}
    // Returns the checks that became sustained with this sample.
    std::vector<Verdict::Violation> add(const Sample &s);
    // Every check sustained so far (worst runs), in a fixed order.
    std::vector<Verdict::Violation> sustained() const;
    // The verdict over every sample added so far, plausibility rules included.
    Verdict verdict() const;

private:
    Thresholds t_;
    uint64_t threshold_ns_;
    size_t first_index_, index_;
    std::optional<Sample> prev_;
    SustainedTracker imbalance_, dsq_, fallback_, keep_last_;
    uint32_t dsq_worst_cpu_ = 0;           // the deepest CPU at the end of dsq_'s worst run
    std::vector<SustainedTracker> stall_;
    std::vector<std::string> reported_;
    // Data plausibility over every sample (spec 8.6 step 2).
    std::optional<size_t> first_implausible_;
    size_t readings_ = 0;
    std::optional<uint64_t> first_clock_;
    bool all_same_clock_ = true;
    bool shared_thread_ = false;   // some pair had shared_vcpu_thread() on both sides
};
// Drop the first MONITOR_WARMUP_SAMPLES when there are more than that.
std::vector<Sample> trim_warmup(const std::vector<Sample> &samples);

// ---- BPF objects in guest memory (spec section 9) ------------------------------------

// Every (id, object KVA) in an IDR at idr_pa (the PA of map_idr/prog_idr).
std::vector<std::pair<uint32_t, uint64_t>> idr_entries(const AddressSpace &as, const KernelOffsets &off,
                                                       uint64_t idr_pa);

struct MapInfo {
    uint32_t id = 0;
    uint64_t kva = 0;
    std::string name;
    uint32_t type = 0, flags = 0, key_size = 0, value_size = 0, max_entries = 0;
    uint64_t btf_kva = 0;
    uint32_t btf_value_type_id = 0;
};
inline constexpr uint32_t BPF_MAP_TYPE_ARRAY = 2;
inline constexpr uint32_t BPF_PROG_TYPE_STRUCT_OPS = 27;
std::vector<MapInfo> list_maps(const AddressSpace &as, const Vmlinux &vm);
const char *map_type_name(uint32_t type);

struct ProgInfo {
    uint32_t id = 0;
    uint64_t kva = 0;
    uint32_t type = 0;
    std::string name;
    uint32_t verified_insns = 0;
};
std::vector<ProgInfo> list_progs(const AddressSpace &as, const Vmlinux &vm);

// Finds one ARRAY map whose name equals `name` or ends with it (".bss"
// matches "simple_bpf.bss"); Error(input) when none or ambiguous.
MapInfo find_array_map(const std::vector<MapInfo> &maps, const std::string &name);
// Value bytes of key 0 at [offset, offset+len); Error(input) past value_size,
// Error(guest) when a page is unmapped (no partial data).
std::string read_array_value(const AddressSpace &as, const Vmlinux &vm, const MapInfo &m,
                             uint64_t offset, uint64_t len);
void write_array_value(const AddressSpace &as, const Vmlinux &vm, const MapInfo &m, uint64_t offset,
                       const std::string &bytes);

// ---- synthetic guests (tests and benchmarks) ------------------------------------------

// A guest memory image laid out like a booted x86-64 kernel: 4- or 5-level
// page tables (direct map with 1 GiB pages, image with 2 MiB pages), the
// banner, page_offset_base, phys_base, __per_cpu_offset and one struct rq
// per CPU, all at the offsets of the given Vmlinux.
struct SyntheticGuest {
    std::vector<uint8_t> bytes;
    KernelLayout layout;
    std::vector<uint64_t> rq_pa;
    uint64_t free_pa = 0;            // [free_pa, end) is unused: room for test objects
    uint64_t next_table = 0;         // page-table pages are taken from here
    GuestMem mem() { return GuestMem({{bytes.data(), 0, bytes.size()}}); }
    // Add a mapping of one 4 KiB / 2 MiB / 1 GiB page to init_top_pgt.
    void map(uint64_t kva, uint64_t pa, uint64_t size);
};
struct SyntheticSpec {
    uint32_t cpus = 4;
    uint64_t image_delta = 0, text_slide = 0;    // KASLR placement
    uint64_t page_offset = guestmem::PAGE_OFFSET_L4;
    bool l5 = false;
    uint64_t extra_bytes = 0;                    // room for tests to add objects
    uint32_t domain_levels = 0;                  // a sched_domain chain per CPU (rq->sd)
};
SyntheticGuest build_synthetic_guest(const Vmlinux &vm, const SyntheticSpec &spec);

// ---- the session (what ktstr-monitor runs) -----------------------------------------------

struct SessionOptions {
    std::string socket_path;           // ktstr-vmm --monitor-socket
    std::string memory_file;           // or: a file holding guest RAM from GPA 0
    uint32_t memory_file_cpus = 0;
    int64_t vmm_pid = 0;               // with memory_file: the VMM (QEMU) process, for liveness and vCPU times
    uint64_t interval_ms = 100;
    uint64_t max_samples = 0;          // 0 = until the VM goes away
    double ready_timeout_s = 120;
    Thresholds thresholds;
    bool read_only = false;
};

// Guest memory received from ktstr-vmm (or a file), mapped.
struct AttachedGuest {
    json layout;
    std::vector<Mapping> mappings;
    GuestMem mem;
    uint32_t num_cpus = 0;
    int64_t vmm_pid = 0;
    std::vector<int64_t> vcpu_tids;
    std::optional<uint64_t> run_start_mono_ns;
    std::optional<uint64_t> shm_base_pa;  // the guest-host shared region (layout "shm"), if any
    unique_fd sock;                    // kept open: EOF/HUP = the VM went away
};
// Parses a ktstr.layout/1 message and maps its fds (Error(input) for layout
// mistakes, naming the field).
AttachedGuest attach_from_message(const std::string &layout_text, std::vector<unique_fd> fds, bool read_only);
AttachedGuest attach(const SessionOptions &opt);

// Run until EOF, a signal (`stop` returns true) or max_samples: emits meta,
// status, sample, violation, summary and end lines through `emit`.  Returns
// the exit code (0; 1 when thresholds were violated and fail_on_violation).
int run_session(AttachedGuest &guest, const Vmlinux &vm, const SessionOptions &opt,
                const std::function<void(const ojson &)> &emit, const std::function<bool()> &stop);

// Waits (until ready_timeout_s) for the kernel to be located and its per-CPU
// areas valid; Error(input) on a banner mismatch, Error(guest) on timeout.
struct ReadyKernel {
    KernelLayout layout;
    std::vector<uint64_t> rq_pas;
};
ReadyKernel wait_for_kernel(const AttachedGuest &guest, const Vmlinux &vm, double timeout_s,
                            const std::function<void(const ojson &)> &emit, const std::function<bool()> &stop);

// The VM went away: the VMM process (vmm_pid) exited, or, without a pid,
// the monitor socket reached EOF.  Guest memory stays readable either way.
bool vm_gone(const AttachedGuest &g);

// vCPU thread ids of a QEMU process by their names ("CPU <n>/TCG"), index =
// CPU; empty when none is found.
std::vector<int64_t> discover_vcpu_tids(int64_t pid, uint32_t num_cpus);

// vCPU on-CPU time from /proc/<pid>/task/<tid>/schedstat; nullopt when unreadable.
std::optional<uint64_t> vcpu_cpu_time_ns(int64_t pid, int64_t tid);

} // namespace ktstr::monitor
