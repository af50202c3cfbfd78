// libktstr/scenario: the scenario data model (ktstr.scenario/1), its loader and
// validator, topology-relative cpuset math, the canned catalog, worker reports
// and the checks that turn reports into verdicts.
//
// Everything here is pure (no syscalls besides reading sysfs in
// CpuLayout::from_sysfs) and is shared by the host (listing, validation) and
// the guest agent (running); the guest side links it statically, so it uses
// only util.  The runner that executes a scenario is in ktstr/scenario_run.h.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "ktstr/json.h"
#include "ktstr/util.h"

namespace ktstr::scenario {

inline constexpr const char *SCHEMA_KIND = "scenario";
inline constexpr int SCHEMA_MAJOR = 1;

// ---- CPUs as the scenario sees them ----------------------------------------

using CpuSet = std::set<uint32_t>;

// The guest's CPUs with their LLC, NUMA node and core.  Built from counts
// (numbering of the ktstr topology: LLC by LLC, core by core, SMT siblings
// adjacent) or read from sysfs inside the guest.
struct CpuLayout {
    std::vector<uint32_t> cpus;                // ascending
    std::map<uint32_t, uint32_t> llc_of;       // dense LLC index 0..num_llcs-1
    std::map<uint32_t, uint32_t> node_of;
    std::map<uint32_t, uint32_t> core_of;      // dense core index; SMT siblings share it
    uint32_t num_llcs = 0, num_nodes = 0;

    static CpuLayout uniform(uint32_t numa, uint32_t llcs, uint32_t cores, uint32_t threads);
    // "2n4l2c2t"
    static CpuLayout parse(const std::string &topology);
    // /sys/devices/system/{cpu,node}: LLC = the CPUs sharing the highest cache
    // level (else the package); node from node*/cpulist (else 0).
    static CpuLayout from_sysfs(const std::string &sys_root = "/sys");

    uint32_t total() const { return static_cast<uint32_t>(cpus.size()); }
    bool smt() const;
    std::vector<uint32_t> usable() const;      // all minus the last CPU when N > 2
    std::vector<uint32_t> cpus_of_llc(uint32_t llc) const;
    std::vector<uint32_t> cpus_of_node(uint32_t node) const;
    std::string label() const;                 // "1n2l2c1t" when regular, else "<n> cpus"
    ojson to_json() const;
};

// "0-3,5,7-9"; empty set -> "".
std::string format_cpuset(const CpuSet &s);
// Strict: throws Error(input) naming the text; lenient skips junk words.
CpuSet parse_cpuset(const std::string &text);
CpuSet parse_cpuset_lenient(const std::string &text);

// ---- model ---------------------------------------------------------------------

struct CpusetSpec {
    enum class Kind { llc, numa, exact, range, disjoint, overlap } kind = Kind::exact;
    uint32_t index = 0;        // llc/numa id, disjoint/overlap index
    uint32_t of = 0;           // disjoint/overlap partitions
    double start = 0, end = 0; // range
    double frac = 0;           // overlap
    std::vector<uint32_t> cpus;// exact
    std::string describe() const;   // "disjoint{index=1,of=2}"
    ojson to_json() const;
};

struct Count {
    enum class Base { fixed, per_cgroup, total_cpus, usable_cpus, num_llcs } base = Base::per_cgroup;
    uint32_t n = 0;                     // fixed
    uint32_t div = 1, mul = 1;
    int64_t add = 0;
    std::optional<uint32_t> min, max;
    enum class Round { none, down, up } round = Round::none;
    ojson to_json() const;
};

enum class WorkKind { CpuSpin, YieldHeavy, Mixed, IoSync, Bursty, PipeIo, FutexPingPong, CachePressure };
const char *work_kind_name(WorkKind k);
std::vector<std::string> work_kind_names();

struct WorkType {
    WorkKind kind = WorkKind::CpuSpin;
    uint64_t burst_ms = 50, sleep_ms = 100;   // Bursty
    uint64_t burst_iters = 1024;              // PipeIo
    uint64_t spin_iters = 1024;               // FutexPingPong
    uint64_t size_kb = 32, stride = 64;       // CachePressure
    uint32_t group_size() const;              // 2 for the paired types, else 1
    std::string describe() const;             // "Bursty(50,100)"
    ojson to_json() const;
};

struct SchedPolicy {
    enum class Kind { normal, batch, idle, fifo, rr } kind = Kind::normal;
    int priority = 0;                          // fifo/rr 1..99
    std::string describe() const;
    ojson to_json() const;
};

struct Affinity {
    enum class Kind { inherit, random_subset, llc_aligned, cross_cgroup, single_cpu, exact } kind = Kind::inherit;
    std::vector<uint32_t> cpus;                // exact
    std::string describe() const;
    ojson to_json() const;
};

struct MemPolicy {
    enum class Kind { default_, local, preferred, bind, interleave, preferred_many, weighted_interleave } kind = Kind::default_;
    std::vector<uint32_t> nodes;
    ojson to_json() const;
};

// One threshold: unset (take the layer below), off (explicit false), or a value.
struct Limit {
    enum class State { unset, off, on } state = State::unset;
    double value = 0;
    static Limit of(double v) { return {State::on, v}; }
    static Limit disabled() { return {State::off, 0}; }
    bool set() const { return state != State::unset; }
};

// The check configuration (spec 5.1); each layer overrides the one below it
// field by field.  Flags use Limit too (value 1 = on).
struct CheckConfig {
    std::map<std::string, Limit> fields;       // keyed by the JSON names
    static const std::vector<std::string> &known_fields();
    static bool is_flag(const std::string &field);
    static CheckConfig defaults();             // not_starved on
    // Later layer wins field-wise.
    CheckConfig merged(const CheckConfig &over) const;
    Limit get(const std::string &field) const;
    bool flag(const std::string &field) const { auto l = get(field); return l.state == Limit::State::on && l.value != 0; }
    // Threshold in effect: set value; off -> nullopt; unset -> fallback.
    std::optional<double> limit(const std::string &field, std::optional<double> fallback = std::nullopt) const;
    // Parse a Checks object / one "field=value" override (value: number, true, false).
    static CheckConfig from_json(const json &j, const std::string &where);
    void set_from_text(const std::string &assignment);   // throws Error(usage)
    ojson to_json() const;
};

struct Work {
    WorkType type;
    std::optional<Count> workers;             // unset: per_cgroup
    SchedPolicy policy;
    Affinity affinity;
    MemPolicy mem_policy;
    std::vector<std::string> mpol_flags;
    CheckConfig checks;
    ojson to_json() const;
};

struct CgroupDef {
    std::string name;
    std::optional<CpusetSpec> cpuset;
    std::vector<Work> works;                  // empty: one default Work (CpuSpin x pc)
    bool swappable = false;
    uint32_t min_cpus = 0;                    // ours: dropped (with ops naming it) below this
    ojson to_json() const;
};

enum class OpKind { add_cgroup, remove_cgroup, set_cpuset, clear_cpuset, swap_cpusets, spawn, stop_cgroup,
                    set_affinity, spawn_host, move_all_tasks, sleep, kill_scheduler };
const char *op_kind_name(OpKind k);
// Bit in the stimulus op_kinds mask (spec 4.2: sleep is 13; ours after it).
uint32_t op_kind_bit(OpKind k);

struct Op {
    OpKind kind = OpKind::sleep;
    std::string name, cgroup, a, b, from, to;  // as the op needs
    std::optional<CpusetSpec> cpus;
    std::optional<Work> work;
    std::optional<Affinity> affinity;
    uint64_t ms = 0;
    int signal = 9;                            // kill_scheduler
    // The cgroup names the op refers to.
    std::vector<std::string> cgroups() const;
    ojson to_json() const;
};

struct Hold {
    bool loop = false;
    double frac = 0;
    uint64_t ms = 0;
    bool plus_settle = false;
    uint64_t loop_ms = 0;
    ojson to_json() const;
};

struct Step {
    std::vector<CgroupDef> setup;
    std::vector<Op> ops;
    Hold hold;
};

struct Partition {
    enum class Kind { none, llc_aligned, split_half, split_misaligned, overlap, uneven, holdback } kind = Kind::none;
    double frac = 0;
    std::string describe() const;
    ojson to_json() const;
};

struct Steady {
    uint32_t num_cgroups = 1;
    Partition partition;
    std::vector<Work> works;
};

struct Requires {
    uint32_t min_cpus = 0, min_llcs = 0, min_numa_nodes = 0;
    bool smt = false;
};

struct Scenario {
    std::string name, category, description;
    std::vector<std::string> required_flags, excluded_flags;
    Requires requires_;
    CheckConfig checks;
    std::map<std::string, std::string> sysctls;   // ours: "kernel.x" -> value, restored after
    std::vector<CgroupDef> backdrop_cgroups;
    std::vector<Op> backdrop_ops;
    std::vector<Step> steps;
    std::optional<Steady> steady;
    ojson to_json() const;                        // canonical ktstr.scenario/1
};

// Parse and validate; errors are Error(input) "<where>: scenario '<name>': <path>: <problem>"
// naming the field and the value at fault.
Scenario parse_scenario(const json &doc, const std::string &where);
Scenario load_scenario_text(const std::string &text, const std::string &where);

// ---- context and resolution ------------------------------------------------------

struct RunContext {
    double duration_s = 2.0;
    uint32_t workers_per_cgroup = 2;
    uint64_t settle_ms = 500;
};

// Cpuset math (spec 1.2).  Throws Error(input) for specs that can never
// resolve on this layout; returns an empty set for one that resolves to
// nothing (the caller skips).
CpuSet resolve_cpuset(const CpusetSpec &spec, const CpuLayout &layout);
// Partition sets for n cgroups (spec 1.4).  Empty optional = skip (reason set).
std::vector<CpuSet> partition_cpusets(const Partition &p, uint32_t n, const CpuLayout &layout);
uint32_t resolve_count(const std::optional<Count> &count, const WorkType &type, const CpuLayout &layout,
                       const RunContext &ctx, const std::string &cgroup);
// Hold length in ms (loop holds: the remaining duration is decided at run time).
uint64_t resolve_hold_ms(const Hold &h, const RunContext &ctx);

// Affinity for worker `index` of a group (spec 1.5); empty = leave as is.
// `random_seed` makes random_subset reproducible per worker.
CpuSet resolve_affinity(const Affinity &a, const std::optional<CpuSet> &cpuset, const CpuLayout &layout,
                        uint64_t random_seed);

// A scenario made concrete for one layout and context: steady expanded into
// one step, every cpuset/count/hold resolved up front, or a skip reason.
struct ResolvedWork {
    Work work;
    uint32_t workers = 0;
};
struct ResolvedCgroup {
    std::string name;
    std::optional<CpuSet> cpuset;
    std::vector<ResolvedWork> works;
};
struct ResolvedOp {
    Op op;
    std::optional<CpuSet> cpus;     // set_cpuset
    uint32_t workers = 0;           // spawn / spawn_host
};
struct ResolvedStep {
    std::vector<ResolvedCgroup> setup;
    std::vector<ResolvedOp> ops;
    Hold hold;
    uint64_t hold_ms = 0;
};
struct Plan {
    Scenario scenario;
    std::string skip_reason;        // non-empty: do not run
    std::vector<ResolvedCgroup> backdrop;
    std::vector<ResolvedOp> backdrop_ops;
    std::vector<ResolvedStep> steps;
    bool steady = false;            // start all groups together after all are placed
    CheckConfig checks;             // defaults + scenario (+ caller layers)
};
Plan make_plan(const Scenario &s, const CpuLayout &layout, const RunContext &ctx);

// ---- catalog ----------------------------------------------------------------------

struct CatalogEntry {
    std::string name;
    std::string json_text;
};
const std::vector<CatalogEntry> &catalog();
Scenario catalog_scenario(const std::string &name);   // throws Error(usage) with the list
// NAME from the catalog, or a FILE path (contains '/' or ends in .json, or exists).
Scenario load_scenario_arg(const std::string &arg);
// One line per scenario: "name  category  description".
std::string format_catalog();

// ---- worker reports and checks ---------------------------------------------------------

struct Migration {
    uint64_t at_ns = 0;
    uint32_t from_cpu = 0, to_cpu = 0;
};

// One worker's measurements (spec 4.2).
struct WorkerReport {
    int64_t tid = 0;
    uint64_t work_units = 0, iterations = 0;
    uint64_t cpu_time_ns = 0, wall_time_ns = 0, off_cpu_ns = 0;
    uint64_t migration_count = 0;
    std::vector<Migration> migrations;
    CpuSet cpus_used;
    // ours: CPUs seen since the worker's cgroup got its current cpuset (isolation)
    CpuSet cpus_since_cpuset;
    bool cpuset_epoch_current = true;
    uint64_t max_gap_ms = 0;
    uint32_t max_gap_cpu = 0;
    uint64_t max_gap_at_ms = 0;
    std::vector<uint64_t> resume_latencies_ns;
    uint64_t wake_sample_total = 0;
    uint64_t schedstat_cpu_time_ns = 0, schedstat_run_delay_ns = 0, schedstat_run_count = 0;
    bool completed = false;
    bool is_messenger = false;
    std::string exit_info;            // synthetic reports only
    ojson to_json() const;
    static WorkerReport from_json(const json &j, const std::string &where);
};

// Reports of one spawned Work group, with what the checks need to know.
struct GroupResult {
    std::string cgroup;               // cgroup name ("" = the harness's own)
    std::string work;                 // "CpuSpin", "Bursty(50,100)"
    std::optional<CpuSet> cpuset;     // recorded at collection (isolation)
    CheckConfig checks;               // effective for the group
    std::vector<WorkerReport> reports;
};

enum class DetailKind { Starved, Stuck, Unfair, Isolation, Benchmark, Migration, SchedulerDied, Skip, Other };
const char *detail_kind_name(DetailKind k);

// One evaluated check.
struct CheckOutcome {
    std::string check;                // "starvation", "gap", "spread", ...
    std::string group;                // "cg_0 CpuSpin"
    bool passed = true;
    std::optional<double> value, threshold;
    std::vector<std::pair<DetailKind, std::string>> details;   // why it failed
    std::string summary;              // one line, for passes too
    ojson to_json() const;
};

struct GroupStats {
    uint32_t workers = 0;
    uint32_t cpus = 0;
    double avg_off_cpu_pct = 0, min_off_cpu_pct = 0, max_off_cpu_pct = 0, spread = 0;
    uint64_t max_gap_ms = 0;
    uint32_t max_gap_cpu = 0;
    uint64_t total_migrations = 0;
    double migration_ratio = 0;
    double p99_wake_latency_us = 0, median_wake_latency_us = 0, wake_latency_cv = 0;
    uint64_t total_iterations = 0;
    double mean_run_delay_us = 0, worst_run_delay_us = 0;
    double wake_latency_tail_ratio = 0;
    double iterations_per_worker = 0;
    ojson to_json() const;
};
GroupStats group_stats(const GroupResult &g);

// Evaluate every enabled worker check on one group (spec 5.2).
std::vector<CheckOutcome> evaluate_group(const GroupResult &g);

// Nearest-rank percentile (index ceil(p*n)-1), on a copy.
uint64_t percentile(std::vector<uint64_t> samples, double p);

// Scheduler fate for the scheduler-death check.
struct SchedulerFate {
    bool present = false;             // a scheduler was under test
    bool died = false;                // stopped (exited, killed, kicked out) before the end
    double died_at_s = 0;             // seconds into the test when noticed
    int steps_completed = -1;         // -1: during the workload of a step / steady
    int steps_total = 0;
    bool after_all_steps = false;
    std::string how;                  // "killed by signal 9; sched_ext: disabled (unregistered from user space)"
};
CheckOutcome evaluate_scheduler(const SchedulerFate &f);

// The whole verdict (spec 5.3).
struct Verdict {
    bool passed = true, skipped = false;
    std::vector<std::pair<DetailKind, std::string>> details;
    ojson stats;                       // roll-up
    void add(const CheckOutcome &c);
    ojson to_json() const;
};
ojson rollup_stats(const std::vector<GroupStats> &groups);

} // namespace ktstr::scenario
