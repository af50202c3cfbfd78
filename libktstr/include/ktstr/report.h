// libktstr/report: turns the JSON lines of ktstr-vmm (ktstr.vmm/1) and
// ktstr-monitor (ktstr.monitor/1) into verdicts, readable summaries, machine
// formats (JSON, JUnit, HTML) and A/B comparisons.
//
//   ingest      JSON-lines streams -> Run (scenarios, steps, worker reports,
//               checks, exit, monitor samples); truncation is recorded, not fatal
//   evaluate    Run -> per-scenario verdicts, cgroup stats, monitor findings
//               correlated with the scenario's steps; Report -> overall verdict
//   render      text, ktstr.report/1 JSON, JUnit XML, self-contained HTML
//   compare     two sets of runs -> per-metric A/B rows with the dual gate
//
// Specs: shared/spec/scenarios.md sections 4.2, 5, 6; monitor.md 8 and 10.
#pragma once

#include <array>
#include <cstdint>
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ktstr/json.h"
#include "ktstr/monitor.h"

namespace ktstr::report {

// ---- verdicts ----------------------------------------------------------------

// pass 0, fail 1, inconclusive 2 (the process exit codes of ktstr-report).
enum class Verdict { pass, fail, inconclusive, skip };
const char *verdict_name(Verdict v);      // "pass" "fail" "inconclusive" "skip"
int exit_code_of(Verdict overall);        // pass/skip-free pass 0, fail 1, else 2

// ---- input model ---------------------------------------------------------------

// One applied scenario step (guest stimulus record, scenarios.md 4.2).
struct StepMark {
    int index = 0;
    double at_s = 0;            // host elapsed_s of the event (same clock as the monitor's elapsed_ms/1000)
    double scenario_ms = -1;    // guest elapsed_ms since scenario start, when given
    int op_count = 0;
    uint32_t op_kinds = 0;
    int cgroups = 0;
    int workers = 0;
    uint64_t total_iterations = 0;
    // Each cgroup's cpuset while the step ran: CPU list, or nullopt for none
    // (all CPUs), in cgroup name order; empty in streams from before it was recorded.
    std::vector<std::pair<std::string, std::optional<std::vector<int>>>> cpusets{};
};

// One worker's report (scenarios.md 4.2), keyed by the cgroup it ran in.
struct WorkerReport {
    std::string cgroup;
    std::string work_type;
    int64_t tid = 0;
    uint64_t work_units = 0;
    uint64_t iterations = 0;
    uint64_t cpu_time_ns = 0;
    uint64_t wall_time_ns = 0;
    uint64_t off_cpu_ns = 0;
    uint64_t migration_count = 0;
    std::vector<int> cpus_used;
    uint64_t max_gap_ms = 0;
    int max_gap_cpu = -1;
    uint64_t max_gap_at_ms = 0;
    uint64_t schedstat_run_delay_ns = 0;
    uint64_t schedstat_run_count = 0;
    std::vector<uint64_t> resume_latencies_ns;
    uint64_t wake_p50_ns = 0, wake_p99_ns = 0;   // when the reservoir stayed in the guest
    std::string exit_info;      // synthetic reports only
};

// A check outcome.  Failing ones are what the text summary lists.
struct Finding {
    std::string source;         // "check", "scenario", "monitor", "exit", "input"
    std::string kind;           // Starved, Stuck, Unfair, Isolation, Monitor, SchedulerDied, Other ...
    std::string check;          // check name when known ("gap", "spread", "imbalance" ...)
    std::string message;        // upstream wording (scenarios.md 5.4) where it applies
    std::string cgroup;
    std::optional<int> cpu;
    std::optional<double> at_s;        // time into the run (host clock) when known
    std::optional<double> duration_ms;  // how long the condition lasted
    std::optional<int> step;           // the step during which it happened
    bool failed = true;
};

struct ScenarioRun {
    std::string name;
    std::string topology;       // topology label "1n2l2c1t" (scenario_start, else the boot event)
    std::string scheduler;      // "" or "eevdf" = no sched_ext scheduler under test
    std::string work_type;
    std::vector<std::string> flags;
    json checks_config;         // merged checks from scenario_start, if given
    double start_s = -1;
    double end_s = -1;
    bool ended = false;         // a scenario_end event was seen
    std::optional<bool> passed;     // from scenario_end
    bool skipped = false;
    std::string skip_reason;
    int checks_seen = 0;
    std::vector<StepMark> steps;
    std::vector<WorkerReport> workers;
    std::vector<Finding> findings;  // failing checks and details
    json stats;                     // scenario_end "stats" if given (ext_metrics ride here)
};

// One CPU in one monitor sample (monitor.md 10).
struct CpuReading {
    uint32_t nr_running = 0;
    uint32_t scx_nr_running = 0;
    uint32_t local_dsq_depth = 0;
    uint32_t scx_flags = 0;
    uint64_t rq_clock = 0;
    int64_t vcpu_cpu_time_ns = -1;     // -1: absent
};

// Event counters summed over the CPUs that carry them (monitor.md 8.2), in
// the order of monitor::scx_event_names(); unknown names in the input are ignored.
struct EventSums {
    bool present = false;
    std::array<int64_t, monitor::SCX_EVENT_COUNT> sum{};
};

struct MonitorSample {
    double elapsed_ms = 0;
    uint32_t first = 0;         // index into MonitorData::readings
    uint32_t count = 0;         // number of CPUs
    EventSums events;
};

struct MonitorData {
    bool present = false;       // any ktstr.monitor/1 line was read
    std::vector<MonitorSample> samples;
    std::vector<CpuReading> readings;
    uint64_t preemption_threshold_ns = 0;   // from meta; 0 = derive (HZ 250)
    int hz = 0;
    bool ended = false;
    std::string end_reason;
    std::vector<std::string> warnings;      // status: warning messages
    std::vector<std::string> reported_violations;  // messages of the monitor's own violation lines

    const CpuReading *cpus(const MonitorSample &s) const { return readings.data() + s.first; }
};

struct ExitInfo {
    std::string reason;
    std::optional<int64_t> exit_code;
    double elapsed_s = 0;
    std::string console_tail;
};

// Everything read for one VM run: the ktstr-vmm stream plus its monitor stream.
struct Run {
    std::vector<std::string> sources;   // file names ("-" for stdin)
    std::string label;                  // stem used for pairing and as the JUnit suite name
    bool has_vmm = false;
    // boot event
    std::string kernel, topology, accel, scheduler;
    int cpus = 0;
    std::optional<ExitInfo> exit;
    std::vector<ScenarioRun> scenarios;
    MonitorData monitor;
    std::vector<std::string> truncated;  // why the input was cut short ("run.jsonl: no exit event")
    uint64_t ignored_events = 0;         // unknown event kinds (ignored by contract)
};

// ---- ingest -------------------------------------------------------------------

// Incremental reader: feed lines of one source; finish() records truncation.
// Lines with an unknown major schema (ktstr.vmm/2) or broken JSON in the middle
// of a stream throw Error(input) naming source:line.  A broken *last* line is
// what a crashed producer leaves: it is recorded as truncation, not an error.
class StreamReader {
public:
    StreamReader(Run &run, std::string source);
    void line(std::string_view text);       // one line without its '\n'
    // at_eof_without_newline: the stream's last line had no trailing newline.
    void finish(bool last_line_unterminated);
    uint64_t lines() const { return lineno_; }

private:
    void handle_vmm(const json &doc, const std::string &where);
    void handle_monitor(const json &doc, const std::string &where);
    ScenarioRun &current_scenario(const std::string &where);

    Run &run_;
    std::string source_;
    uint64_t lineno_ = 0;
    std::string pending_error_;    // parse error of the latest line (fatal unless it was the last)
    bool saw_vmm_ = false, saw_monitor_ = false;
    bool warned_kinds_ = false;
};

// Read a whole file ("-" = stdin) into run.  Throws Error(input) when the file
// cannot be opened or holds a bad line; truncation is recorded in run.
void read_stream(Run &run, const std::string &path);
// Read a set of inputs (files, directories of *.jsonl, "-") into runs: a vmm
// stream and a monitor stream form one run when they share a stem
// ("x.jsonl" + "x.monitor.jsonl"), when one file holds both, or when exactly
// one vmm run was given.  A file holding only unrecognised lines is an error.
std::vector<Run> read_runs(const std::vector<std::string> &inputs);

// ---- monitor summary and verdict (monitor.md 8) ----------------------------------
//
// ktstr-report does not judge monitor data by itself: it rebuilds each stored
// sample as a monitor::Sample and runs libktstr/monitor's SummaryBuilder and
// ViolationChecker over them, so ktstr-monitor and ktstr-report give one
// verdict with one set of thresholds and one wording.

// Layer a checks object (scenarios.md 5.1 names) onto t; unknown keys ignored.
// Error(input) for sustained_samples 0 (it would fail every run).
monitor::Thresholds thresholds_from_checks(monitor::Thresholds t, const json &checks);
// The meta line's preemption_threshold_ns, else 10 ticks of its HZ (250 when unknown).
uint64_t preemption_threshold_ns(const MonitorData &m);
// Sample i of m as the monitor library sees it, reusing out's storage.  Only
// the per-sample sums of the event counters are stored: they ride on the
// first CPU, which is all the summary and the verdict read (sum_event).
void monitor_sample(const MonitorData &m, size_t i, monitor::Sample &out);

struct MonitorEvaluation {
    size_t first = 0;                 // first sample evaluated (after warmup)
    monitor::Summary summary;
    monitor::Verdict verdict;         // sample indices count from the start of the stream
};
// Samples [first, end) of m.
MonitorEvaluation evaluate_monitor(const MonitorData &m, const monitor::Thresholds &t, size_t first = 0);
// Upstream's warmup rule (8.7): with more than 20 samples skip the first 20.
size_t warmup_skip(const MonitorData &m);

// Where a violation's worst run lies on the monitor's clock.
struct ViolationSpan {
    double start_ms = 0, end_ms = 0;
};
ViolationSpan violation_span(const MonitorData &m, const monitor::Verdict::Violation &v);

// ---- evaluation ---------------------------------------------------------------

struct CgroupStats {
    std::string name;
    size_t workers = 0;
    std::vector<int> cpus;              // union of cpus_used
    double min_off_cpu_pct = 0, max_off_cpu_pct = 0, spread_pct = 0;
    uint64_t max_gap_ms = 0;
    int max_gap_cpu = -1;
    uint64_t migrations = 0;
    uint64_t iterations = 0;
    double migration_ratio = 0;
    double mean_run_delay_us = 0, worst_run_delay_us = 0;
    double p99_wake_us = 0, median_wake_us = 0, wake_cv = 0;
    size_t wake_samples = 0;
};
std::vector<CgroupStats> cgroup_stats(const std::vector<WorkerReport> &workers);

// When the monitor's verdict counts (upstream: only with a sched_ext scheduler).
enum class MonitorPolicy { automatic, always, never };

struct ScenarioResult {
    const ScenarioRun *scenario = nullptr;
    Verdict verdict = Verdict::inconclusive;
    std::string reason;                 // one line: why this verdict
    double duration_s = 0;
    std::vector<Finding> findings;      // failing checks (+ monitor ones that count)
    std::vector<Finding> notes;         // monitor findings shown but not counted, input notes
    std::vector<CgroupStats> cgroups;
};

struct RunResult {
    const Run *run = nullptr;
    Verdict verdict = Verdict::inconclusive;
    std::string reason;
    std::vector<ScenarioResult> scenarios;
    MonitorEvaluation monitor;
    bool monitor_counts = false;        // the monitor verdict is part of the verdict
    std::vector<Finding> findings;      // run-level failures (guest exit, monitor outside scenarios)
};

struct Report {
    Verdict verdict = Verdict::inconclusive;
    std::string reason;
    std::vector<RunResult> runs;
    size_t passed = 0, failed = 0, skipped = 0, inconclusive = 0;   // scenario counts
};

struct EvaluateOptions {
    MonitorPolicy monitor = MonitorPolicy::automatic;
    bool warmup = true;                 // drop the first 20 monitor samples when > 20
};

// Results point into the runs they were computed from: keep those alive
// (temporaries are refused at compile time).
RunResult evaluate_run(const Run &run, const EvaluateOptions &opt = {});
Report evaluate_runs(const std::vector<Run> &runs, const EvaluateOptions &opt = {});
RunResult evaluate_run(const Run &&, const EvaluateOptions & = {}) = delete;
Report evaluate_runs(const std::vector<Run> &&, const EvaluateOptions & = {}) = delete;

// Which step (index into s.steps) was in force at host time t; -1 before the first.
int step_at(const ScenarioRun &s, double t_s);

// ---- renderers ------------------------------------------------------------------

std::string render_text(const Report &r, bool color = false);
ojson render_json(const Report &r);
std::string render_junit(const Report &r);
std::string render_html(const Report &r);

// ---- A/B comparison (scenarios.md 6) -------------------------------------------

struct MetricDef {
    const char *name;
    const char *unit;
    double abs_gate;
    double rel_gate;            // fraction: 0.25 = 25%
    bool higher_is_better;
};
const std::vector<MetricDef> &metric_registry();
const MetricDef *find_metric(const std::string &name);

// One row of the A/B table input: a scenario of one run with its metrics.
struct MetricRow {
    std::string scenario, topology, scheduler, work_type, kernel, flags, source;
    bool passed = false, skipped = false;
    std::map<std::string, double> metrics;          // registry metrics present
    std::map<std::string, double> ext_metrics;      // unregistered, lower is better
};
std::vector<MetricRow> metric_rows(const Run &run, const EvaluateOptions &opt = {});

struct ComparePolicy {
    std::optional<double> threshold_pct;                 // --threshold: replaces every rel gate
    std::optional<double> default_pct;                   // policy file default_percent
    std::map<std::string, double> per_metric_pct;        // policy file per_metric_percent
    bool average = true;                                 // false: --no-average
};
// Parse a policy file {"default_percent":N,"per_metric_percent":{metric:N}}.
ComparePolicy parse_policy(const json &doc, const std::string &where, ComparePolicy base = {});

enum class Change { regression, improvement, unchanged };
const char *change_name(Change c);

struct MetricCompare {
    std::string key, metric, unit;
    double a = 0, b = 0, delta = 0, rel = 0;     // rel as a fraction of |a|; 0 when a == 0
    double abs_gate = 0, rel_gate = 0;
    size_t n_a = 0, n_b = 0;
    double sd_a = 0, sd_b = 0;                   // sample standard deviations (0 for n < 2)
    std::optional<double> p_value;               // Mann-Whitney U, two-sided, ties corrected (n >= 3 each)
    Change change = Change::unchanged;
};

struct CompareResult {
    std::vector<MetricCompare> rows;
    size_t regressions = 0, improvements = 0, unchanged = 0;
    std::vector<std::string> added, removed;          // keys only in B / only in A
    std::vector<std::string> dropped;                 // keys with a failed or skipped side
    std::vector<std::string> slicing_dims;            // dimensions that differ between A and B
    size_t pass_a = 0, total_a = 0, pass_b = 0, total_b = 0;
};

// Core statistics, exposed for tests.
Change classify(const MetricDef &def, double a, double b, double rel_gate, double *rel_out = nullptr);
std::optional<double> mann_whitney_p(const std::vector<double> &a, const std::vector<double> &b);
double sample_sd(const std::vector<double> &v);

CompareResult compare(const std::vector<MetricRow> &a, const std::vector<MetricRow> &b,
                      const ComparePolicy &policy);
std::string render_compare_text(const CompareResult &c);
ojson render_compare_json(const CompareResult &c);

} // namespace ktstr::report
