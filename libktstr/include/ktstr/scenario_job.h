// libktstr/scenario: the agent's "scenario" job (guest) and the arguments the
// host gives it.  The host packs the scenario's canonical JSON as
// /scenario.json (more scenarios as /scenario-2.json ... named by --file) and,
// with --scheduler, the binary (and its shared-library closure) under /ktstr-sched/.
#pragma once

#include <string>
#include <vector>

#include "ktstr/scenario.h"
#include "ktstr/scenario_run.h"

namespace ktstr::scenario {

inline constexpr const char *JOB_KIND = "scenario";
inline constexpr const char *JOB_SCENARIO_FILE = "scenario.json";
inline constexpr const char *GUEST_SCHED_DIR = "/ktstr-sched";

// The job's exit status: 0 every scenario passed or skipped, 1 a check failed (or the
// scheduler under test never attached), 2 a scenario is invalid on this guest, 3 a
// scenario could not run (environment).  The worst of all scenarios wins.
inline constexpr int JOB_EXIT_FAILED = EXIT_VERDICT_FAILED;
inline constexpr int JOB_EXIT_BAD_INPUT = EXIT_USAGE;
inline constexpr int JOB_EXIT_ENVIRONMENT = EXIT_ENVIRONMENT;

// Job file name of the i-th scenario (0-based): scenario.json, scenario-2.json, ...
std::string job_scenario_file(size_t index);

// Host side: what goes into /args after the job kind.
struct ScenarioJobOptions {
    double duration_s = 2.0;
    uint32_t workers_per_cgroup = 2;
    uint64_t settle_ms = 500;
    std::vector<std::string> checks;          // "NAME=VALUE"
    std::string scheduler_guest_path;         // empty: EEVDF
    std::vector<std::string> sched_args;
    double enable_timeout_s = 10;
    size_t scenario_count = 1;                // --file for each beyond the first
    std::vector<std::string> args() const;
    void validate() const;                    // Error(usage) naming the option
};

// Guest side: run the job; returns the exit status above.  Outside the guest's PID 1,
// args must name --cgroup-root and --proc-sys (tests use scratch directories): the run
// never defaults to the real cgroup tree or sysctls of the machine it runs on.
int run_scenario_job(const std::vector<std::string> &args, const std::string &job_root, const EmitFn &emit);

} // namespace ktstr::scenario
