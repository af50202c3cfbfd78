// libktstr/scenario: the "scenario" job of the guest agent, and the host-side
// half that describes it (job arguments + the scenario document).
//
// The host validates the scenario before booting and ships its canonical
// JSON as /scenario.json; /args carries the run context:
//   scenario
//   --duration S   --workers N   --settle MS   --check NAME=VALUE ...
//   --scheduler /ktstr-sched/NAME   --sched-arg ARG ...   --enable-timeout S
// The scheduler is packed away from /scheduler so that the agent's own
// scheduler launch stays out of the way: this job owns its lifecycle.
#include "ktstr/scenario_job.h"

#include <csignal>

#include "ktstr/cli.h"
#include "ktstr/scenario_run.h"

namespace ktstr::scenario {

namespace {
const std::vector<cli::Option> &job_options() {
    static const std::vector<cli::Option> o = {
        {"file", 0, "PATH", "scenario document (default scenario.json beside the job files)"},
        {"duration", 0, "S", "run duration in seconds"},
        {"workers", 0, "N", "workers per cgroup"},
        {"settle", 0, "MS", "pause after cgroup creation"},
        {"check", 0, "NAME=VALUE", "check override", true},
        {"scheduler", 0, "PATH", "scheduler binary in the guest"},
        {"sched-arg", 0, "ARG", "scheduler argument", true},
        {"enable-timeout", 0, "S", "seconds for sched_ext to report the scheduler enabled"},
        {"cgroup-root", 0, "DIR", "cgroup2 mount"},
    };
    return o;
}
} // namespace

std::vector<std::string> ScenarioJobOptions::args() const {
    std::vector<std::string> a = {"--duration", cat(duration_s), "--workers", cat(workers_per_cgroup), "--settle",
                                  cat(settle_ms)};
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
    if (!(enable_timeout_s > 0)) fail(ErrorKind::usage, "--sched-timeout ", enable_timeout_s, ": expected seconds, more than 0");
    CheckConfig c;
    for (auto &s : checks) c.set_from_text(s);   // names the bad one
}

int run_scenario_job(const std::vector<std::string> &argv, const std::string &job_root, const EmitFn &emit) {
    cli::Args a = cli::parse(argv, job_options());
    std::string root = job_root.empty() || job_root.back() == '/' ? job_root : job_root + "/";
    std::string file = a.get("file", root + "scenario.json");
    Scenario s = load_scenario_text(read_file(file), file);
    RunOptions opt;
    opt.ctx.duration_s = a.get_double("duration", opt.ctx.duration_s);
    opt.ctx.workers_per_cgroup = static_cast<uint32_t>(a.get_u64("workers", opt.ctx.workers_per_cgroup));
    opt.ctx.settle_ms = a.get_u64("settle", opt.ctx.settle_ms);
    opt.cgroup_root = a.get("cgroup-root", opt.cgroup_root);
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

    CpuLayout layout = CpuLayout::from_sysfs("/sys");
    std::unique_ptr<Scheduler> sched;
    if (a.has("scheduler")) {
        SchedulerOptions so;
        so.path = a.get("scheduler");
        so.args = a.all("sched-arg");
        so.enable_timeout_s = a.get_double("enable-timeout", so.enable_timeout_s);
        try {
            sched = Scheduler::start(so);
        } catch (const Error &e) {
            // Not attached: the run cannot start; say so as a failed scenario.
            ojson end;
            end["event"] = "scenario_end";
            end["scenario"] = s.name;
            end["passed"] = false;
            end["skipped"] = false;
            end["details"] = ojson::array({{{"kind", "SchedulerDied"}, {"message", e.what()}}});
            end["exit_code"] = 1;
            if (emit) emit(end);
            log::error(e.what());
            return 1;
        }
        opt.scheduler = sched.get();
    }
    RunOutcome out = run_scenario(s, layout, opt, emit);
    if (sched) sched->stop();
    return out.exit_code;
}

} // namespace ktstr::scenario
