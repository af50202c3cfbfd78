// libktstr/report (internal): small formatting helpers shared by the renderers.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "ktstr/report.h"

namespace ktstr::report::detail {

// printf-style number formatting (no <format> in g++ 12).
inline std::string fmtd(const char *f, double v) {
    char b[64];
    std::snprintf(b, sizeof b, f, v);
    return b;
}

// {0,1,2,3,5,7,8,9} -> "0-3,5,7-9"
std::string cpulist(const std::vector<int> &cpus);

// "cgroup cg_0, cpu 1, lasted 2500ms, at +5.32s (step 1)"
std::string finding_context(const Finding &f);

// The scheduler under test: the boot event's, else the first scenario's, else "eevdf".
std::string run_scheduler(const Run &r);

// Run header fields: "kernel 6.12  topology 1n2l2c1t (4 cpus)  accel tcg  scheduler scx_simple"
std::string run_header(const Run &r);

std::string xml_escape(const std::string &s);

// "step 1 cpusets:  cg_0 0  cg_1 all" per step ("all": no cpuset), or nothing
// when no step gave any cgroup a cpuset.
std::vector<std::string> step_cpuset_lines(const std::vector<StepMark> &steps);

// Display name of a scenario: "steady [1n2l2c1t]" (plus flags when given).
std::string scenario_title(const ScenarioRun &s);

} // namespace ktstr::report::detail
