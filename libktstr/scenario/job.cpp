// libktstr/scenario: the "scenario" job of the guest agent, and the host-side
// half that describes it (job arguments + the scenario document).
//
// The host validates the scenario before booting and ships its canonical
// JSON as /scenario.json; /args carries the run context:
//   scenario
//   --duration S   --workers N   --settle MS   --check NAME=VALUE ...
//   --scheduler /ktstr-sched/NAME   --sched-arg ARG ...   --enable-timeout S
//   --file scenario-2.json ...   (several scenarios run one after the other)
// The scheduler is packed away from /scheduler so that the agent's own
// scheduler launch stays out of the way: this job owns its lifecycle.
#include "ktstr/scenario_job.h"

#include <csignal>
#include <unistd.h>

#include "ktstr/cli.h"
#include "ktstr/scenario_run.h"

namespace ktstr::scenario {

namespace {
const std::vector<cli::Option> &job_options() {
    static const std::vector<cli::Option> o = {
        {"file", 0, "PATH", "scenario document, relative to the job root (default scenario.json); repeatable", true},
        {"duration", 0, "S", "run duration in seconds"},
        {"workers", 0, "N", "workers per cgroup"},
        {"settle", 0, "MS", "pause after cgroup creation"},
        {"check", 0, "NAME=VALUE", "check override", true},
        {"scheduler", 0, "PATH", "scheduler binary in the guest"},
        {"sched-arg", 0, "ARG", "scheduler argument", true},
        {"enable-timeout", 0, "S", "seconds for sched_ext to report the scheduler enabled"},
        {"cgroup-root", 0, "DIR", "cgroup2 mount (default /sys/fs/cgroup, in the guest only)"},
        {"proc-sys", 0, "DIR", "sysctl root (default /proc/sys, in the guest only)"},
        {"sys-root", 0, "DIR", "sysfs to read the CPU layout from (default /sys)"},
    };
    return o;
}
} // namespace

std::string job_scenario_file(size_t index) {
    return index == 0 ? std::string(JOB_SCENARIO_FILE) : cat("scenario-", index + 1, ".json");
}

std::vector<std::string> ScenarioJobOptions::args() const {
    std::vector<std::string> a = {"--duration", cat(duration_s), "--workers", cat(workers_per_cgroup), "--settle",
                                  cat(settle_ms)};
    if (scenario_count > 1)
        for (size_t i = 0; i < scenario_count; ++i) a.insert(a.end(), {"--file", job_scenario_file(i)});
    for (auto &c : checks) a.insert(a.end(), {"--check", c});
    if (!scheduler_guest_path.empty()) {
        a.insert(a.end(), {"--scheduler", scheduler_guest_path, "--enable-timeout", cat(enable_timeout_s)});
        for (auto &s : sched_args) a.insert(a.end(), {"--sched-arg", s});
    }
    return a;
}

void ScenarioJobOptions::validate() const {
    if (!(duration_s > 0) || duration_s > 24 * 3600)
        fail(ErrorKind::usage, "--duration ", duration_s, ": expected seconds, more than 0");
    if (workers_per_cgroup == 0 || workers_per_cgroup > 4096)
        fail(ErrorKind::usage, "--workers ", workers_per_cgroup, ": expected 1..4096");
    if (!(enable_timeout_s > 0) || enable_timeout_s > 3600)
        fail(ErrorKind::usage, "--sched-timeout ", enable_timeout_s, ": expected seconds, more than 0 and at most 3600");
    CheckConfig c;
    for (auto &s : checks) c.set_from_text(s);   // names the bad one
}

namespace {

// The events of a scenario that could not run at all (the scheduler never attached, or
// the run stopped on an error): a start, the failed check and the end, so that every
// consumer sees the scenario, what failed and how it ended.
void emit_not_run(const Scenario &s, const std::string &check, DetailKind kind, const std::string &why, int exit_code,
                  const std::string &scheduler, const EmitFn &emit) {
    log::error(why);
    if (!emit) return;
    ojson start;
    start["event"] = "scenario_start";
    start["scenario"] = s.name;
    start["category"] = s.category;
    start["description"] = s.description;
    if (scheduler.empty()) start["scheduler"] = "eevdf";
    else start["scheduler"] = {{"path", scheduler}};
    start["not_run"] = true;
    emit(start);
    const ojson details = ojson::array({{{"kind", detail_kind_name(kind)}, {"message", why}}});
    ojson c;
    c["event"] = "check";
    c["scenario"] = s.name;
    c["check"] = check;
    c["group"] = "";
    c["passed"] = false;
    c["message"] = why;
    c["details"] = details;
    emit(c);
    ojson end;
    end["event"] = "scenario_end";
    end["scenario"] = s.name;
    end["passed"] = false;
    end["skipped"] = false;
    end["details"] = details;
    end["exit_code"] = exit_code;
    emit(end);
}

int exit_code_of(const Error &e) {
    return e.kind() == ErrorKind::usage || e.kind() == ErrorKind::input ? JOB_EXIT_BAD_INPUT : JOB_EXIT_ENVIRONMENT;
}

int run_one(const Scenario &s, const CpuLayout &layout, const RunOptions &base, const cli::Args &a,
            const EmitFn &emit) {
    RunOptions opt = base;
    std::unique_ptr<Scheduler> sched;
    if (a.has("scheduler")) {
        SchedulerOptions so;
        so.path = a.get("scheduler");
        so.args = a.all("sched-arg");
        so.enable_timeout_s = a.get_double("enable-timeout", so.enable_timeout_s);
        try {
            sched = Scheduler::start(so);
        } catch (const Error &e) {
            // The scheduler under test never attached: that is its failure (exit 1), reported
            // as a failed scenario naming why, with its output.
            emit_not_run(s, "scheduler", DetailKind::SchedulerDied, e.what(), JOB_EXIT_FAILED, a.get("scheduler"), emit);
            return 1;
        }
        opt.scheduler = sched.get();
    }
    try {
        RunOutcome out = run_scenario(s, layout, opt, emit);
        if (sched) sched->stop();
        return out.exit_code;
    } catch (const Error &e) {
        int code = exit_code_of(e);
        emit_not_run(s, "run", DetailKind::Other, cat("scenario '", s.name, "' could not run: ", e.what()), code,
                     a.get("scheduler"), emit);
        return code;
    }
}

} // namespace

int run_scenario_job(const std::vector<std::string> &argv, const std::string &job_root, const EmitFn &emit) {
    cli::Args a = cli::parse(argv, job_options());
    // The run writes cgroups, sysctls and scheduling policies.  Only the guest's PID 1 (the
    // agent, which runs jobs in its own process) may default to the real ones; anywhere
    // else (unit tests run as root on a developer's host) both roots must be given.
    const bool in_guest = ::getpid() == 1;
    if (!in_guest && (!a.has("cgroup-root") || !a.has("proc-sys")))
        fail(ErrorKind::usage, "the scenario job runs inside the ktstr guest; elsewhere give --cgroup-root and "
                               "--proc-sys (a scratch directory, not the host's)");
    std::string root = job_root.empty() || job_root.back() == '/' ? job_root : job_root + "/";
    std::vector<std::string> files = a.all("file");
    if (files.empty()) files.push_back(JOB_SCENARIO_FILE);
    std::vector<Scenario> scenarios;
    for (auto &f : files) {
        std::string path = f.empty() || f[0] == '/' ? f : root + f;
        scenarios.push_back(load_scenario_text(read_file(path), path));
    }
    RunOptions opt;
    opt.ctx.duration_s = a.get_double("duration", opt.ctx.duration_s);
    opt.ctx.workers_per_cgroup = static_cast<uint32_t>(a.get_u64("workers", opt.ctx.workers_per_cgroup));
    opt.ctx.settle_ms = a.get_u64("settle", opt.ctx.settle_ms);
    opt.cgroup_root = a.get("cgroup-root", "/sys/fs/cgroup");
    opt.proc_sys = a.get("proc-sys", "/proc/sys");
    for (auto &c : a.all("check")) opt.check_overrides.set_from_text(c);

    // The agent (PID 1) ignores SIGCHLD; the scheduler's and the workers'
    // exit statuses are needed here.
    struct sigaction dfl{}, old{};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGCHLD, &dfl, &old);
    struct Restore {
        struct sigaction old;
        ~Restore() { sigaction(SIGCHLD, &old, nullptr); }
    } restore{old};

    CpuLayout layout = CpuLayout::from_sysfs(a.get("sys-root", "/sys"));
    // One scenario after the other, each with a fresh scheduler (a scenario may kill it);
    // the job's status is the worst of theirs.
    int worst = 0;
    for (const Scenario &s : scenarios) worst = std::max(worst, run_one(s, layout, opt, a, emit));
    return worst;
}

} // namespace ktstr::scenario
