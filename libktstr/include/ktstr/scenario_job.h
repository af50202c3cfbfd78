// libktstr/scenario: the agent's "scenario" job (guest) and the arguments the
// host gives it.  The host packs the scenario's canonical JSON as
// /scenario.json and, with --scheduler, the binary (and its shared-library
// closure) under /ktstr-sched/.
#pragma once

#include <string>
#include <vector>

#include "ktstr/scenario.h"
#include "ktstr/scenario_run.h"

namespace ktstr::scenario {

inline constexpr const char *JOB_KIND = "scenario";
inline constexpr const char *JOB_SCENARIO_FILE = "scenario.json";
inline constexpr const char *GUEST_SCHED_DIR = "/ktstr-sched";

// Host side: what goes into /args after the job kind.
struct ScenarioJobOptions {
    double duration_s = 2.0;
    uint32_t workers_per_cgroup = 2;
    uint64_t settle_ms = 500;
    std::vector<std::string> checks;          // "NAME=VALUE"
    std::string scheduler_guest_path;         // empty: EEVDF
    std::vector<std::string> sched_args;
    double enable_timeout_s = 10;
    std::vector<std::string> args() const;
    void validate() const;                    // Error(usage) naming the option
};

// Guest side: run the job; returns the exit code (0 pass/skip, 1 a check failed).
int run_scenario_job(const std::vector<std::string> &args, const std::string &job_root, const EmitFn &emit);

} // namespace ktstr::scenario
