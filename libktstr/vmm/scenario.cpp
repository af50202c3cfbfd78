// ktstr-vmm's scenario mode: see ktstr/vmm_scenario.h.
#include "ktstr/vmm_scenario.h"

#include <algorithm>
#include <unistd.h>

namespace ktstr::vmm {

void validate_scenario_request(const ScenarioRequest &req) {
    if (req.scenarios.empty()) fail(ErrorKind::usage, "no scenario to run");
    req.options.validate();
    if (!req.scheduler.empty()) {
        if (::access(req.scheduler.c_str(), X_OK) != 0) fail_errno(ErrorKind::input, cat("--scheduler ", req.scheduler));
        guest_scheduler_path(req.scheduler);   // names a file
    }
}

void preflight_scenarios(const ScenarioRequest &req, const Topology &topology) {
    validate_scenario_request(req);
    scenario::CpuLayout layout;
    try {
        layout = scenario::CpuLayout::uniform(topology.numa_nodes, topology.llcs, topology.cores_per_llc,
                                              topology.threads_per_core);
    } catch (const Error &e) {
        // An irregular JSON topology: the guest resolves against what it really sees.
        log::debug("scenario pre-flight skipped for ", topology.to_string(), ": ", e.what());
        return;
    }
    scenario::RunContext ctx;
    ctx.duration_s = req.options.duration_s;
    ctx.workers_per_cgroup = req.options.workers_per_cgroup;
    ctx.settle_ms = req.options.settle_ms;
    for (const auto &s : req.scenarios) {
        scenario::Plan p = scenario::make_plan(s, layout, ctx);
        if (!p.skip_reason.empty())
            log::info("scenario '", s.name, "' will be skipped on ", topology.to_string(), ": ", p.skip_reason);
    }
}

std::string guest_scheduler_path(const std::string &host_path) {
    std::string base = host_path.substr(host_path.rfind('/') + 1);
    if (base.empty()) fail(ErrorKind::usage, "--scheduler '", host_path, "': not a file name");
    return cat(scenario::GUEST_SCHED_DIR, "/", base);
}

initramfs::JobSpec scenario_job_spec(const ScenarioRequest &req) {
    scenario::ScenarioJobOptions o = req.options;
    o.scenario_count = req.scenarios.size();
    if (!req.scheduler.empty()) o.scheduler_guest_path = guest_scheduler_path(req.scheduler);
    initramfs::JobSpec job;
    job.kind = scenario::JOB_KIND;
    job.args = o.args();
    for (size_t i = 0; i < req.scenarios.size(); ++i)
        job.files.push_back({cat("/", scenario::job_scenario_file(i)), req.scenarios[i].to_json().dump() + "\n", 0644});
    return job;
}

std::vector<initramfs::Include> scenario_includes(const ScenarioRequest &req) {
    if (req.scheduler.empty()) return {};
    return {{req.scheduler, guest_scheduler_path(req.scheduler)}};
}

double scenario_default_timeout_s(const ScenarioRequest &req) {
    const auto &o = req.options;
    double per = o.duration_s + static_cast<double>(o.settle_ms) / 1000 + 30;
    if (!req.scheduler.empty()) per += o.enable_timeout_s;
    return 60 + static_cast<double>(req.scenarios.size()) * per;
}

// ---- the guest's events -> exit status ----------------------------------------------

void ScenarioTally::on_event(const ojson &ev) {
    const std::string name = ev.value("event", "");
    if (name == "scenario_start") ++started_;
    else if (name == "scenario_end") ends_.push_back(ev);
}

namespace {
bool flag(const ojson &ev, const char *key) {
    auto it = ev.find(key);
    return it != ev.end() && it->is_boolean() && it->get<bool>();
}
int end_code(const ojson &ev) {
    auto it = ev.find("exit_code");
    if (it != ev.end() && it->is_number_integer()) return it->get<int>();
    return flag(ev, "passed") ? EXIT_OK : EXIT_VERDICT_FAILED;
}
} // namespace

std::string ScenarioTally::problem(const ExitResult &r) const {
    if (!r.guest_exit_code) return cat("the guest ended without an exit code (", exit_reason_name(r.reason), ")");
    int g = *r.guest_exit_code;
    if (g != EXIT_OK && g != EXIT_VERDICT_FAILED && g != EXIT_USAGE)
        return cat("the scenario job ended with status ", g);
    if (ends_.size() < expected_)
        return cat(ends_.size(), " of ", expected_, " scenario_end events reached the host");
    return "";
}

int ScenarioTally::exit_code(const ExitResult &r) const {
    if (!problem(r).empty()) return EXIT_ENVIRONMENT;
    int worst = *r.guest_exit_code;
    for (const ojson &e : ends_) {
        int c = end_code(e);
        if (c != EXIT_OK && c != EXIT_VERDICT_FAILED && c != EXIT_USAGE) return EXIT_ENVIRONMENT;
        worst = std::max(worst, c);
    }
    return worst;
}

ojson ScenarioTally::summary() const {
    ojson list = ojson::array();
    for (const ojson &e : ends_)
        list.push_back({{"scenario", e.value("scenario", "")}, {"passed", flag(e, "passed")},
                        {"skipped", flag(e, "skipped")}});
    return list;
}

} // namespace ktstr::vmm
