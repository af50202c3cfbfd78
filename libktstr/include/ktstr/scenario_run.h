// libktstr/scenario: running a scenario (guest side, also usable on a host in
// short runs): cgroup2 management under a root path, forked workers that
// measure themselves, the sched_ext scheduler's lifecycle, and the step
// engine that ties them together and reports through a callback.
//
// Events produced (each an ojson with "event" set; the agent forwards them to
// the host, which prints them as ktstr.vmm/1 lines):
//   scenario_start, step, worker_report, check, scenario_end
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <sys/types.h>

#include "ktstr/scenario.h"

namespace ktstr::scenario {

using EmitFn = std::function<void(const ojson &)>;

// ---- cgroups -------------------------------------------------------------------------------

// The scenario's cgroups live under <root>/<parent>.  On a real cgroup2 mount
// the controllers (+cpuset +cpu) are enabled on the way down; on a plain
// directory (tests) the same file writes happen and removal deletes the files
// the test wrote.  Every failure names the file and the errno.
class Cgroups {
public:
    Cgroups(std::string root, std::string parent = "ktstr");
    ~Cgroups();
    Cgroups(const Cgroups &) = delete;
    Cgroups &operator=(const Cgroups &) = delete;

    const std::string &root() const { return root_; }
    std::string path(const std::string &name) const;   // name "" = the parent
    bool is_cgroup2() const { return cgroup2_; }
    // mkdir (idempotent), parents first, +cpuset (+cpu) in each level's subtree_control.
    void create(const std::string &name);
    void set_cpus(const std::string &name, const CpuSet &cpus);
    void clear_cpus(const std::string &name);
    std::string read_cpus(const std::string &name) const;
    // Write pid to cgroup.procs; EBUSY retried 3x at 100 ms; ESRCH -> false (warned).
    bool move(pid_t pid, const std::string &name);
    std::vector<pid_t> procs(const std::string &name) const;
    void clear_subtree_control(const std::string &name);
    // Drain leftover tasks to the root, then rmdir (ENOENT ignored).
    void remove(const std::string &name);

private:
    void write(const std::string &file, const std::string &value) const;
    void enable_controllers(const std::string &dir);
    std::string root_, parent_;
    bool cgroup2_ = false;
    bool controllers_warned_ = false;
    std::vector<std::string> created_;   // for teardown, deepest last
};

// ---- workers ---------------------------------------------------------------------------------

// Worker processes of one Work group: forked together, placed, started,
// stopped and collected together.  A worker runs its loop until SIGUSR1,
// then writes its WorkerReport as JSON on its report pipe.
class WorkerGroup {
public:
    struct Options {
        Work work;
        uint32_t count = 1;
        std::vector<CpuSet> affinity;    // per worker; empty set = leave as is
        uint64_t scenario_start_ns = 0;  // CLOCK_MONOTONIC; gap offsets are relative to it
        double start_timeout_s = 30;     // a worker never started exits after this
    };
    static std::unique_ptr<WorkerGroup> spawn(const Options &opt);
    ~WorkerGroup();   // kills whatever is still running

    const std::vector<pid_t> &pids() const { return pids_; }
    const Work &work() const { return opt_.work; }
    bool started() const { return started_; }
    void start();                        // idempotent
    uint64_t total_iterations() const;
    // Tell workers their cgroup's cpuset changed (isolation bookkeeping).
    void bump_cpuset_epoch();
    // SIGUSR1 to every worker (an unstarted group is started and runs 500 ms
    // first).  Idempotent; collect() does it when it was not done.
    void request_stop();
    // Read the reports for at most `deadline_s`, then kill and reap.  Stop
    // several groups first and collect them after, so that they all stop
    // at the same time and share one deadline.
    std::vector<WorkerReport> collect(double deadline_s = 5.0);
    void kill_all();                     // discard

private:
    WorkerGroup() = default;
    Options opt_;
    std::vector<pid_t> pids_;
    std::vector<unique_fd> start_fds_, report_fds_;
    Mapping shared_;
    bool started_ = false, done_ = false, stop_sent_ = false;
};

// Run one worker loop in the calling process until *stop becomes true or
// `max_s` elapses (in-process use by tests and benchmarks).
WorkerReport run_worker_inline(const WorkType &type, double max_s, const std::atomic<bool> *stop = nullptr);

// ---- the scheduler under test ------------------------------------------------------------------

struct SchedulerOptions {
    std::string path;
    std::vector<std::string> args;
    double enable_timeout_s = 10;          // sched_ext must say "enabled" within this
    std::string sched_ext_dir = "/sys/kernel/sched_ext";
    std::string log_path = "/tmp/ktstr-sched.log";
    std::string kmsg_path = "/dev/kmsg";
    // Once it has stopped running: how long to wait for the whole story (its wait status,
    // sched_ext past "disabling", the kernel's "disabled (<reason>)" line), which arrive in
    // no fixed order after a kill.
    double end_grace_s = 3;
};

class Scheduler {
public:
    // Start the binary (output to log_path), wait until sched_ext reports it
    // enabled with a root ops name; throws Error(guest) with the reason and the
    // output tail when it exits or the timeout passes first.
    static std::unique_ptr<Scheduler> start(const SchedulerOptions &opt);
    ~Scheduler();
    pid_t pid() const { return pid_; }
    const std::string &path() const { return opt_.path; }
    const std::vector<std::string> &args() const { return opt_.args; }
    const std::string &ops_name() const { return ops_; }
    double enable_seconds() const { return enable_s_; }
    // Still running and still attached?  Caches the end once seen.
    bool alive();
    void signal(int sig);
    // Stop it at the end of the run (SIGINT, 2 s grace, SIGKILL).
    void stop();
    // {"status":"running"|"exited"|"kicked_out", "exit", "sched_ext_state", "kernel", "output_tail", ...}
    ojson end_record();
    std::string describe_end();            // one line for the death verdict
    std::string output_tail(size_t lines = 20) const;

private:
    Scheduler() = default;
    void reap(bool block);
    void read_kmsg();
    bool kernel_reason_seen() const;
    void settle_end();
    SchedulerOptions opt_;
    pid_t pid_ = -1;
    std::optional<int> status_;
    std::string ops_;
    double enable_s_ = 0;
    unique_fd kmsg_;
    std::vector<std::string> kernel_lines_;
    bool stopped_by_us_ = false;
    bool end_settled_ = false;
};

// Current sched_ext state ("enabled", "disabled", ...; "" when absent).
std::string sched_ext_state(const std::string &dir = "/sys/kernel/sched_ext");

// ---- the runner -----------------------------------------------------------------------------------

struct RunOptions {
    RunContext ctx;
    // Where the run's side effects land: no defaults on purpose.  The guest job passes
    // /sys/fs/cgroup and /proc/sys; tests pass scratch directories.  run_scenario()
    // refuses to run without both, so no caller touches the machine's real cgroups or
    // sysctls by forgetting to set them.
    std::string cgroup_root;
    std::string cgroup_parent = "ktstr";
    std::string proc_sys;
    CheckConfig check_overrides;           // top layer (command line)
    Scheduler *scheduler = nullptr;        // null: EEVDF
    double collect_deadline_s = 5;
};

struct RunOutcome {
    Verdict verdict;
    int exit_code = 0;                     // 0 pass/skip, 1 a check failed
};

// Resolve, run, check, report.  Throws Error for bad input or when the
// environment refuses (cgroup root unusable); a failing step is a failed
// verdict, not an exception.
RunOutcome run_scenario(const Scenario &s, const CpuLayout &layout, const RunOptions &opt, const EmitFn &emit);

} // namespace ktstr::scenario
